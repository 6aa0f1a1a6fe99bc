// Package runtime holds what the replica drivers share: image references,
// the description of a replica to start and of one running, and the errors
// callers branch on. The drivers live in subpackages (process, docker).
package runtime

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Errors drivers return, wrapped with detail.
var (
	// ErrImageNotFound: the image is not in the engine / images dir.
	ErrImageNotFound = errors.New("image not found")
	// ErrPortInUse: the replica's host port is taken by something else.
	ErrPortInUse = errors.New("port already in use")
)

var (
	nameRe = regexp.MustCompile(`^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$`)
	tagRe  = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
)

// Image is a "name:tag" reference. For the docker driver it names an image
// in the engine; for the process driver an executable in its images dir.
type Image struct {
	Name string
	Tag  string
}

// ParseImage parses "name:tag". The tag is required: deploying "latest" by
// accident is how clusters end up running two versions.
func ParseImage(s string) (Image, error) {
	name, tag, ok := strings.Cut(s, ":")
	if !ok {
		return Image{}, fmt.Errorf("image %q: want name:tag, for example predictor:1.0.0", s)
	}
	if len(name) > 128 || !nameRe.MatchString(name) {
		return Image{}, fmt.Errorf("image %q: invalid name %q (lower-case letters, digits, '.', '_', '-', '/')", s, name)
	}
	if !tagRe.MatchString(tag) {
		return Image{}, fmt.Errorf("image %q: invalid tag %q", s, tag)
	}
	return Image{Name: name, Tag: tag}, nil
}

func (i Image) String() string { return i.Name + ":" + i.Tag }

// Spec describes a replica to start.
type Spec struct {
	Service string
	Node    string // the agent's node name, for labels and the instance name
	Index   int    // replica index: port = base port + index
	Image   Image
	HostIP  netip.Addr
	Port    uint16 // host port the replica serves on
}

// Instance names the replica uniquely in the cluster: "node/index".
func (s Spec) Instance() string { return s.Node + "/" + strconv.Itoa(s.Index) }

// Replica is a replica a driver knows about, running or not.
type Replica struct {
	ID        string // driver-specific: a container id, a process id
	Service   string
	Node      string
	Index     int
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
