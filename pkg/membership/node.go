package membership

import (
	"net/netip"

	"github.com/hashicorp/serf/serf"
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
