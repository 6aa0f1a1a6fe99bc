package membership

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/herd-cluster/herd/pkg/route"
	"github.com/herd-cluster/herd/pkg/runtime"
)

// Tag keys as they appear in Serf. They are short on purpose: memberlist
// limits all of a node's tags together to 512 bytes.
const (
	tagRole    = "role"
	tagService = "svc"
	tagImage   = "img"
	tagHostIP  = "ip"
	tagPorts   = "ports"
	tagGen     = "gen"
	tagState   = "state"
	tagWant    = "want"
	tagCount   = "n"
	tagFail    = "fail"
	tagRoutes  = "rt"  // the routes, inline
	tagRouteH  = "rth" // "hash:count" of routes too many for the tags
	tagStrip   = "sp"  // "1": the routes' prefixes are stripped
	tagProto   = "pr"  // "h2c" or "grpc"; absent: http
)

// MaxFailLen bounds Tags.Fail.
const MaxFailLen = 160

// MaxTagBytes is the encoded size limit of one node's tags (memberlist's
// MetaMaxSize). Encode refuses tags that would not fit.
const MaxTagBytes = 512

// MaxPorts bounds how many backend ports one node may announce. It matches the
// agent's replica limit; a member announcing more is treated as malformed.
const MaxPorts = 1000

// Role is what a node does in the cluster.
type Role string

// Roles a Herd node can have.
const (
	RoleGateway Role = "gateway"
	RoleAgent   Role = "agent"
)

// State is an agent's announced serving state.
type State string

// States an agent announces.
const (
	// StateActive means the announced ports may receive traffic.
	StateActive State = "active"
	// StateDraining means the node is going away: route nothing new to it.
	StateDraining State = "draining"
)

// Protocol is how a service's replicas are spoken to.
type Protocol string

// Protocols an agent announces.
const (
	// ProtoHTTP is HTTP/1.1. The default, and what a node announcing no
	// protocol (an agent older than the tag) speaks.
	ProtoHTTP Protocol = "http"
	// ProtoH2C is HTTP/2 in clear (prior knowledge).
	ProtoH2C Protocol = "h2c"
	// ProtoGRPC is gRPC: h2c, health checked with grpc.health.v1.
	ProtoGRPC Protocol = "grpc"
)

// ParseProtocol reads a protocol: http, h2c or grpc; "" is http.
func ParseProtocol(s string) (Protocol, error) {
	switch p := Protocol(s); p {
	case "":
		return ProtoHTTP, nil
	case ProtoHTTP, ProtoH2C, ProtoGRPC:
		return p, nil
	}
	return "", fmt.Errorf("protocol %q: want http, h2c or grpc", truncate(s, 10))
}

// ErrNotHerd is returned by DecodeTags for a member that carries no Herd role
// tag at all, such as a stock serf agent sharing the gossip pool.
var ErrNotHerd = errors.New("not a herd node: no role tag")

var serviceRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// ValidServiceName reports whether name can name a service: lower-case
// letters, digits, '.', '_', '-', at most 63, starting with a letter or
// digit.
func ValidServiceName(name string) bool { return serviceRe.MatchString(name) }

// Tags is the typed form of the Serf tags a Herd node announces.
type Tags struct {
	Role    Role
	Service string // agents: the service their replicas run
	Image   string // agents: the image their replicas run, as runtime.ParseImage reads it
	HostIP  netip.Addr
	// Ports are the healthy replicas' ports on HostIP, ascending, unique.
	Ports []uint16
	// Gen increases with every tag change a node makes. Gateways acknowledge a
	// sync query only once they have applied at least that generation.
	Gen   uint64
	State State
	// Want is the image the agent is converging to (a rollout in progress
	// when it differs from Image, which stays the image the node fully runs
	// until every replica runs Want and is healthy). Absent: Image.
	Want string
	// Count is how many replicas the agent runs when all is well. Absent:
	// len(Ports).
	Count int
	// Fail, if set, says why the agent gave up converging to Want (a
	// gateway that did not acknowledge a replica's withdrawal): a rollout
	// step fails at once and reverts, saying so. Printable ASCII, at most
	// MaxFailLen bytes.
	Fail string
	// Routes are the requests the agent's service takes. In gossip they
	// travel inline when they fit the tags' budget; otherwise only their
	// hash and count do (RoutesHash, RouteCount), and a gateway fetches the
	// list from the agent (FetchRoutes). After DecodeTags, Routes is nil
	// when only the hash came.
	Routes     []route.Route
	RoutesHash string
	RouteCount int
	// StripPrefix: the matched route's prefix is removed from the path the
	// replicas get.
	StripPrefix bool
	// Protocol is how the replicas are spoken to; "" is ProtoHTTP. Only
	// another travels in the tags (3 or 4 bytes and the key): an agent older
	// than the tag announces none, and is spoken to over HTTP/1.1 as before.
	Protocol Protocol
	// Canary is the canary this agent hosts for a rollout of its service;
	// nil when none (canary.go).
	Canary *Canary
}

// Converged reports whether an agent fully runs image: every replica on it,
// healthy, announced, and the node not draining.
func (t Tags) Converged(image string) bool {
	return t.Role == RoleAgent && t.State == StateActive && t.Image == image && t.Want == image &&
		len(t.Ports) == t.Count
}

// Encode validates t and returns the Serf tag map.
func (t Tags) Encode() (map[string]string, error) {
	t = t.withDefaults()
	if err := t.Validate(); err != nil {
		return nil, err
	}
	m := map[string]string{
		tagRole: string(t.Role),
		tagGen:  strconv.FormatUint(t.Gen, 10),
	}
	if t.Role == RoleAgent {
		m[tagService] = t.Service
		m[tagImage] = t.Image
		m[tagHostIP] = t.HostIP.String()
		m[tagPorts] = EncodePorts(t.Ports)
		m[tagState] = string(t.State)
		m[tagWant] = t.Want
		m[tagCount] = strconv.Itoa(t.Count)
		if t.Fail != "" {
			m[tagFail] = t.Fail
		}
		if t.StripPrefix {
			m[tagStrip] = "1"
		}
		if t.Protocol != "" && t.Protocol != ProtoHTTP {
			m[tagProto] = string(t.Protocol)
		}
		if t.Canary != nil {
			m[tagCanary] = t.Canary.encode()
		}
		switch {
		case len(t.Routes) > 0:
			m[tagRoutes] = route.Encode(t.Routes)
			if encodedSize(m) > MaxTagBytes { // too many to carry: their hash, and the list on demand
				delete(m, tagRoutes)
				m[tagRouteH] = route.Hash(t.Routes) + ":" + strconv.Itoa(len(t.Routes))
			}
		case t.RoutesHash != "":
			m[tagRouteH] = t.RoutesHash + ":" + strconv.Itoa(t.RouteCount)
		}
	}
	if n := encodedSize(m); n > MaxTagBytes {
		return nil, fmt.Errorf("tags take %d bytes, more than the %d gossip allows", n, MaxTagBytes)
	}
	return m, nil
}

// encodedSize bounds the size Serf's encoding takes: a magic byte, a map
// header, and at most 3 bytes of header per string.
func encodedSize(m map[string]string) int {
	n := 1 + 3
	for k, v := range m {
		n += len(k) + len(v) + 6
	}
	return n
}

// withDefaults fills Want and Count when the caller left them unset.
func (t Tags) withDefaults() Tags {
	if t.Want == "" {
		t.Want = t.Image
	}
	t.Count = max(t.Count, len(t.Ports))
	return t
}

// Validate reports the first problem with t.
func (t Tags) Validate() error {
	t = t.withDefaults()
	switch t.Role {
	case RoleGateway:
		return nil
	case RoleAgent:
	default:
		return fmt.Errorf("unknown role %q", t.Role)
	}
	if !serviceRe.MatchString(t.Service) {
		return fmt.Errorf("invalid service name %q", t.Service)
	}
	if _, err := runtime.ParseImage(t.Image); err != nil {
		return fmt.Errorf("tag %s: %w", tagImage, err)
	}
	if !t.HostIP.IsValid() || t.HostIP.IsUnspecified() {
		return fmt.Errorf("invalid host ip %q", t.HostIP)
	}
	if t.State != StateActive && t.State != StateDraining {
		return fmt.Errorf("invalid state %q", t.State)
	}
	if _, err := runtime.ParseImage(t.Want); err != nil {
		return fmt.Errorf("tag %s: %w", tagWant, err)
	}
	if _, err := ParseProtocol(string(t.Protocol)); err != nil {
		return err
	}
	if t.Count < 0 || t.Count > MaxPorts {
		return fmt.Errorf("replica count %d out of range 0-%d", t.Count, MaxPorts)
	}
	if len(t.Fail) > MaxFailLen || strings.ContainsFunc(t.Fail, func(r rune) bool { return r < ' ' || r > '~' }) {
		return fmt.Errorf("failure reason %q: want at most %d printable ASCII bytes", truncate(t.Fail, 40), MaxFailLen)
	}
	if t.Canary != nil {
		if err := t.Canary.Validate(); err != nil {
			return err
		}
		if t.Canary.overlaps(t.Ports) {
			return errors.New("a port announced twice among the replicas and the canary's")
		}
	}
	if len(t.Routes) > route.MaxPerService {
		return fmt.Errorf("%d routes: at most %d per service", len(t.Routes), route.MaxPerService)
	}
	if len(t.Ports) > MaxPorts {
		return fmt.Errorf("%d ports announced, more than %d", len(t.Ports), MaxPorts)
	}
	for i, p := range t.Ports {
		if p == 0 {
			return errors.New("port 0 announced")
		}
		if i > 0 && p <= t.Ports[i-1] {
			return fmt.Errorf("ports not ascending at %d", p)
		}
	}
	return nil
}

// DecodeTags parses and validates the tags of a member. Anything malformed is
// an error: callers log it and route nothing to that member.
func DecodeTags(m map[string]string) (Tags, error) {
	role, ok := m[tagRole]
	if !ok {
		return Tags{}, ErrNotHerd
	}
	t := Tags{Role: Role(role)}
	gen, err := strconv.ParseUint(m[tagGen], 10, 64)
	if err != nil {
		return Tags{}, fmt.Errorf("tag %s=%q: not a generation number", tagGen, m[tagGen])
	}
	t.Gen = gen
	if t.Role == RoleAgent {
		t.Service = m[tagService]
		t.Image = m[tagImage]
		t.State = State(m[tagState])
		ip, err := netip.ParseAddr(m[tagHostIP])
		if err != nil {
			return Tags{}, fmt.Errorf("tag %s=%q: %w", tagHostIP, m[tagHostIP], err)
		}
		t.HostIP = ip
		ports, err := DecodePorts(m[tagPorts])
		if err != nil {
			return Tags{}, fmt.Errorf("tag %s=%q: %w", tagPorts, truncate(m[tagPorts], 40), err)
		}
		t.Ports = ports
		t.Want, t.Count = t.Image, len(t.Ports)
		if w, ok := m[tagWant]; ok {
			t.Want = w
		}
		t.Fail = m[tagFail]
		if t.Routes, err = route.Decode(m[tagRoutes]); err != nil {
			return Tags{}, fmt.Errorf("tag %s: %w", tagRoutes, err)
		}
		if h, ok := m[tagRouteH]; ok {
			if t.RoutesHash, t.RouteCount, err = decodeRouteHash(h); err != nil {
				return Tags{}, fmt.Errorf("tag %s=%q: %w", tagRouteH, truncate(h, 40), err)
			}
		}
		switch s := m[tagStrip]; s {
		case "", "0":
		case "1":
			t.StripPrefix = true
		default:
			return Tags{}, fmt.Errorf("tag %s=%q: want 1 or nothing", tagStrip, truncate(s, 10))
		}
		if p, err := ParseProtocol(m[tagProto]); err != nil {
			return Tags{}, fmt.Errorf("tag %s: %w", tagProto, err)
		} else if p != ProtoHTTP { // http, said or not (an older agent), is left ""
			t.Protocol = p
		}
		if cy, ok := m[tagCanary]; ok {
			if t.Canary, err = decodeCanary(cy); err != nil {
				return Tags{}, fmt.Errorf("tag %s=%q: %w", tagCanary, truncate(cy, 40), err)
			}
		}
		if c, ok := m[tagCount]; ok {
			if t.Count, err = strconv.Atoi(c); err != nil || t.Count < len(t.Ports) {
				return Tags{}, fmt.Errorf("tag %s=%q: not a replica count", tagCount, truncate(c, 20))
			}
		}
	}
	if err := t.Validate(); err != nil {
		return Tags{}, err
	}
	return t, nil
}

// decodeRouteHash reads a route table's "hash:count".
func decodeRouteHash(s string) (string, int, error) {
	h, c, ok := strings.Cut(s, ":")
	n, err := strconv.Atoi(c)
	if !ok || len(h) != 24 || strings.Trim(h, "0123456789abcdef") != "" || err != nil || n < 1 || n > route.MaxPerService {
		return "", 0, errors.New("want the routes' hash and their count (1-100)")
	}
	return h, n, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// EncodePorts writes ascending unique ports as compact ranges: "8000-8003,8005".
func EncodePorts(ports []uint16) string {
	var b strings.Builder
	for i := 0; i < len(ports); {
		j := i
		for j+1 < len(ports) && ports[j+1] == ports[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(ports[i])))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(int(ports[j])))
		}
		i = j + 1
	}
	return b.String()
}

// DecodePorts parses the form EncodePorts writes. It rejects ports outside
// 1-65535, descending or overlapping ranges, and more than MaxPorts ports.
func DecodePorts(s string) ([]uint16, error) {
	if s == "" {
		return nil, nil
	}
	var ports []uint16
	last := 0
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		from, err := parsePort(lo)
		if err != nil {
			return nil, err
		}
		to := from
		if isRange {
			if to, err = parsePort(hi); err != nil {
				return nil, err
			}
		}
		if from <= last || to < from {
			return nil, fmt.Errorf("range %q out of order", part)
		}
		if len(ports)+to-from+1 > MaxPorts {
			return nil, fmt.Errorf("more than %d ports", MaxPorts)
		}
		for p := from; p <= to; p++ {
			ports = append(ports, uint16(p))
		}
		last = to
	}
	return ports, nil
}

func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 || len(s) > 5 {
		return 0, fmt.Errorf("bad port %q", truncate(s, 10))
	}
	return p, nil
}
