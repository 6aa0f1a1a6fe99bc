// Package runtime holds what the replica drivers share: image references,
// the description of a replica to start and of one running, and the errors
// callers branch on. The drivers live in subpackages (process, docker).
package runtime

import (
	// Digests are checked with the hash their algorithm names; the parser
	// refuses algorithms whose hash is not linked in.
	_ "crypto/sha256"
	_ "crypto/sha512"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/distribution/reference"
)

// Errors drivers return, wrapped with detail.
var (
	// ErrImageNotFound: the image is not in the engine / images dir.
	ErrImageNotFound = errors.New("image not found")
	// ErrPortInUse: the replica's host port is taken by something else.
	ErrPortInUse = errors.New("port already in use")
	// ErrImageUnsupported: a valid reference of a kind the driver cannot
	// run, such as a digest for the process driver.
	ErrImageUnsupported = errors.New("image reference not supported by this runtime")
)

// Image is a reference to what replicas run, in Docker's grammar
// (github.com/distribution/reference, the parser the Docker CLI uses):
//
//	[host[:port]/]path[:tag][@digest]
//
// for example predictor:1.0.0, registry:5000/team/predictor:1.1.0,
// predictor@sha256:<64 hex> or predictor:1.1.0@sha256:<64 hex>. Herd requires
// a tag or a digest: it never assumes "latest".
//
// An Image is kept as written: predictor:1.0.0 and
// docker.io/library/predictor:1.0.0 name the same image to Docker but are
// different Images to Herd (use one spelling per cluster). For the docker
// driver it names an image in the engine; for the process driver an
// executable in its images dir (see package process).
type Image struct {
	// Name is the repository as written, with its registry host if one was
	// given: "predictor", "team/predictor", "registry:5000/team/predictor".
	Name string
	// Tag is the tag, such as "1.0.0"; empty when only a digest was given.
	Tag string
	// Digest pins the content, such as "sha256:<64 hex>"; empty if none
	// was given.
	Digest string
}

// ParseImage parses an image reference with Docker's parser. A tag or a
// digest is required: deploying "latest" by accident is how clusters end up
// running two versions. A bare digest or 64-hex string (an image ID to
// Docker) is refused: it names no repository.
func ParseImage(s string) (Image, error) {
	ref, err := reference.ParseAnyReference(s)
	if err != nil {
		return Image{}, fmt.Errorf("image %q: %w (want [host[:port]/]name:tag or name@sha256:<digest>)", s, err)
	}
	named, ok := ref.(reference.Named)
	if !ok {
		return Image{}, fmt.Errorf("image %q: an image ID, not a reference: want name@sha256:<digest>", s)
	}
	var img Image
	if t, ok := named.(reference.Tagged); ok {
		img.Tag = t.Tag()
	}
	if d, ok := named.(reference.Digested); ok {
		img.Digest = d.Digest().String()
	}
	if img.Tag == "" && img.Digest == "" {
		return Image{}, fmt.Errorf("image %q: no tag: want name:tag, for example predictor:1.0.0, or name@sha256:<digest> "+
			"(Herd never assumes latest)", s)
	}
	// The name as written: Docker's parser would spell it in full
	// (docker.io/library/…).
	img.Name = s
	if img.Digest != "" {
		img.Name = strings.TrimSuffix(img.Name, "@"+img.Digest)
	}
	if img.Tag != "" {
		img.Name = strings.TrimSuffix(img.Name, ":"+img.Tag)
	}
	return img, nil
}

// String is the reference as ParseImage read it: name[:tag][@digest].
func (i Image) String() string {
	s := i.Name
	if i.Tag != "" {
		s += ":" + i.Tag
	}
	if i.Digest != "" {
		s += "@" + i.Digest
	}
	return s
}

// Arm says what a replica is to its agent: one of its own replicas
// (ArmStable, the zero value) or one of a canary's, which the agent runs
// beside them for a while and never adopts. Drivers name and label the
// replicas of each arm apart, so that an agent restarted after a crash
// tells its own replicas, which it keeps, from a canary's, which it stops.
type Arm string

// The arms.
const (
	// ArmStable: the agent's own replicas, index i on base port + i.
	ArmStable Arm = ""
	// ArmCanary: a canary's replicas of the new version, index 0 to n-1
	// within the arm, on ports after the agent's own.
	ArmCanary Arm = "canary"
	// ArmBaseline: a canary's fresh replicas of the agent's current
	// version, started with the canary arm for a fair comparison.
	ArmBaseline Arm = "baseline"
)

// Valid reports whether a is one of the arms.
func (a Arm) Valid() bool { return a == ArmStable || a == ArmCanary || a == ArmBaseline }

// Name is replica index's name within arm a, as drivers put it in file and
// container names and the instance name: "3" for a stable replica,
// "canary3" or "baseline3" for a canary's. No stable replica's name ends
// the way a canary's does (a '-' then letters), so names built as
// "<service>-<name>" never collide across arms.
func (a Arm) Name(index int) string { return string(a) + strconv.Itoa(index) }

// Spec describes a replica to start.
type Spec struct {
	Service string
	Node    string // the agent's node name, for labels and the instance name
	// Arm is ArmStable for the agent's own replicas, or a canary's arm.
	Arm    Arm
	Index  int // replica index within its arm: for ArmStable, port = base port + index
	Image  Image
	HostIP netip.Addr
	Port   uint16 // host port the replica serves on
}

// Instance names the replica uniquely in the cluster: "node/index", or
// "node/canary<index>" and "node/baseline<index>" for a canary's.
func (s Spec) Instance() string { return s.Node + "/" + s.Arm.Name(s.Index) }

// Replica is a replica a driver knows about, running or not.
type Replica struct {
	ID        string // driver-specific: a container id, a process id
	Service   string
	Node      string
	Arm       Arm // ArmStable, or the canary arm the replica belongs to
	Index     int // within its arm
	Image     Image
	HostIP    netip.Addr
	Port      uint16
	Running   bool
	StartedAt time.Time
	// PID is the main process id, where the driver knows it.
	PID int
}

// Addr is where the replica serves.
func (r Replica) Addr() netip.AddrPort { return netip.AddrPortFrom(r.HostIP, r.Port) }

// CheckPortFree reports ErrPortInUse when something listens on ip:port.
func CheckPortFree(ip netip.Addr, port uint16) error {
	addr := netip.AddrPortFrom(ip, port).String()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("port %d on %s: %w", port, ip, ErrPortInUse)
		}
		return fmt.Errorf("port %d on %s: %w", port, ip, err)
	}
	return l.Close()
}
