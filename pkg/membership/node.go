package membership

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/hashicorp/serf/serf"

	"github.com/herd-cluster/herd/pkg/route"
)

// Status is a member's liveness as the failure detector sees it.
type Status string

// Member statuses, mirroring Serf's.
const (
	StatusAlive   Status = "alive"
	StatusLeaving Status = "leaving"
	StatusLeft    Status = "left"
	StatusFailed  Status = "failed"
	StatusUnknown Status = "unknown"
)

// Node is one cluster member with its decoded tags. When its tags are
// malformed, Err says why and Tags is zero: such a node is never routed to.
type Node struct {
	Name   string
	Addr   netip.AddrPort // gossip address
	Status Status
	Tags   Tags
	Err    error
}

// Backends returns the addresses that may receive traffic for service: none
// unless the node is a valid, alive, active agent of that service.
func (n Node) Backends(service string) []netip.AddrPort {
	if n.Err != nil || n.Status != StatusAlive || n.Tags.Role != RoleAgent ||
		n.Tags.State != StateActive || n.Tags.Service != service {
		return nil
	}
	out := make([]netip.AddrPort, len(n.Tags.Ports))
	for i, p := range n.Tags.Ports {
		out[i] = netip.AddrPortFrom(n.Tags.HostIP, p)
	}
	return out
}

func nodeFromMember(m serf.Member) Node {
	n := Node{Name: m.Name, Status: statusOf(m.Status)}
	if ip, ok := netip.AddrFromSlice(m.Addr); ok {
		n.Addr = netip.AddrPortFrom(ip.Unmap(), m.Port)
	}
	n.Tags, n.Err = DecodeTags(m.Tags)
	return n
}

func statusOf(s serf.MemberStatus) Status {
	switch s {
	case serf.StatusAlive:
		return StatusAlive
	case serf.StatusLeaving:
		return StatusLeaving
	case serf.StatusLeft:
		return StatusLeft
	case serf.StatusFailed:
		return StatusFailed
	default:
		return StatusUnknown
	}
}

// EncodedNode is a Node as it travels outside gossip (a gateway's saved
// view, the view handed to the process replacing it): its tags in their
// gossip encoding, so that decoding validates them exactly as gossip does.
type EncodedNode struct {
	Name   string            `json:"name"`
	Addr   string            `json:"addr"`
	Status Status            `json:"status"`
	Tags   map[string]string `json:"tags"`
	// Routes are the node's routes, encoded as in the tags, when the tags
	// carry only their hash (Tags.RoutesHash) and they were fetched.
	Routes string `json:"routes,omitempty"`
}

// Encode returns n's encoded form. A node with malformed tags has none to
// encode: it is refused.
func (n Node) Encode() (EncodedNode, error) {
	if n.Err != nil {
		return EncodedNode{}, n.Err
	}
	tags, err := n.Tags.Encode()
	if err != nil {
		return EncodedNode{}, err
	}
	e := EncodedNode{Name: n.Name, Addr: n.Addr.String(), Status: n.Status, Tags: tags}
	if _, inline := tags[tagRoutes]; !inline && len(n.Tags.Routes) > 0 {
		e.Routes = route.Encode(n.Tags.Routes)
	}
	return e, nil
}

// DecodeNode validates an encoded node, as DecodeTags does a member's tags:
// a problem is in the returned Node's Err.
func DecodeNode(e EncodedNode) Node {
	n := Node{Name: e.Name, Status: e.Status}
	addr, err := netip.ParseAddrPort(e.Addr)
	switch {
	case e.Name == "":
		n.Err = errors.New("node without a name")
	case err != nil:
		n.Err = fmt.Errorf("node %s: address %q: %w", e.Name, e.Addr, err)
	}
	if n.Err != nil {
		return n
	}
	n.Addr = addr
	switch e.Status {
	case StatusAlive, StatusLeaving, StatusLeft, StatusFailed:
	default:
		n.Status = StatusUnknown
	}
	if n.Tags, n.Err = DecodeTags(e.Tags); n.Err != nil || e.Routes == "" {
		return n
	}
	routes, err := route.Decode(e.Routes)
	switch {
	case err != nil:
		n.Err = fmt.Errorf("node %s: routes: %w", e.Name, err)
	case n.Tags.RoutesHash == "" || route.Hash(routes) != n.Tags.RoutesHash:
		n.Err = fmt.Errorf("node %s: routes that do not match its tags' hash", e.Name)
	default:
		n.Tags.Routes = routes
	}
	return n
}
