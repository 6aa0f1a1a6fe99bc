package gateway

import (
	"net/netip"

	"github.com/herd-cluster/herd/pkg/balancer"
	"github.com/herd-cluster/herd/pkg/membership"
)

// A canary lives on one agent of its service, which announces it in its
// tags (membership.Canary): the canary and baseline replicas' ports on its
// HostIP and the canary's weight. The gateway gives the service's balancer
// those replicas as the member's canary and baseline arms, and the split:
// the canary arm Weight %, the baseline arm as much while it fits
// (min(Weight, (100-Weight)/2) %: the stable replicas keep at least as
// much; none without baseline replicas), the stable
// arm the rest. A tag that disappears (the canary ended, the agent left or
// stopped being routed) takes the arms and the split with it. Should two
// agents of a service announce a canary, the first by name sets the split;
// both announce their arms.

// canaryKey is one member's canary in one service.
type canaryKey struct{ service, node string }

// setArms gives service's balancer the canary and baseline backends n
// announces (none unless n is up, routed to for service, and announces a
// canary), and the service its split (Run's goroutine, or before Run).
func (g *Gateway) setArms(service string, n membership.Node, up bool) {
	var c *membership.Canary
	if up && routable(n, service) {
		c = n.Tags.Canary
	}
	key := canaryKey{service, n.Name}
	_, had := g.canaries[key]
	if c == nil && !had {
		return // the common case: no canary before or now
	}
	s := g.bal.Service(service)
	var ports, baseline []uint16
	if c != nil {
		ports, baseline = c.Ports, c.Baseline
	}
	s.SetNodeArm(n.Name, balancer.ArmCanary, addrsOf(n.Tags.HostIP, ports))
	s.SetNodeArm(n.Name, balancer.ArmBaseline, addrsOf(n.Tags.HostIP, baseline))
	if c == nil {
		delete(g.canaries, key)
	} else {
		g.canaries[key] = splitOf(n.Tags, c)
	}
	g.resplit(service)
}

// routable reports whether n's backends are routed to for service: what
// membership.Node.Backends requires of a node.
func routable(n membership.Node, service string) bool {
	return n.Err == nil && n.Status == membership.StatusAlive && n.Tags.Role == membership.RoleAgent &&
		n.Tags.State == membership.StateActive && n.Tags.Service == service
}

func addrsOf(ip netip.Addr, ports []uint16) []netip.AddrPort {
	if len(ports) == 0 {
		return nil
	}
	out := make([]netip.AddrPort, len(ports))
	for i, p := range ports {
		out[i] = netip.AddrPortFrom(ip, p)
	}
	return out
}

// splitOf is the split a canary asks for: the baseline arm gets the
// canary's share while it fits, when it has replicas; the stable arm the
// rest. The baseline and stable arms run the agent's own image.
func splitOf(t membership.Tags, c *membership.Canary) balancer.Split {
	sp := balancer.Split{Canary: c.Weight, CanaryVersion: c.Image, BaselineVersion: t.Image, StableVersion: t.Image}
	if len(c.Baseline) > 0 {
		sp.Baseline = min(c.Weight, (100-c.Weight)/2)
	}
	return sp
}

// resplit sets service's split from the canary of the first member by name
// announcing one (none: no canary).
func (g *Gateway) resplit(service string) {
	var first string
	var sp balancer.Split
	for k, s := range g.canaries {
		if k.service == service && (first == "" || k.node < first) {
			first, sp = k.node, s
		}
	}
	g.bal.Service(service).SetSplit(sp)
}
