package gateway

import (
	"cmp"

	"github.com/herd-cluster/herd/pkg/balancer"
	"github.com/herd-cluster/herd/pkg/membership"
)

// A service's backends are spoken to in the protocol its agents announce
// (agent join --protocol). Agents of one service should agree; when they
// do not, the oldest agent's protocol wins: the one announcing the lowest
// tag generation (an agent's generation starts at its start time), then
// the lowest node name. The others are reported (one log line each time an
// agent starts disagreeing, and herd_gateway_protocol_conflicts) and their
// backends are spoken to in the winner's protocol, which fails for them
// until they agree: a mistake shows at once rather than depending on which
// backend a request lands on. A service no agent announces any more keeps
// the protocol it had.

// setProtocols sets the protocol of the services that nodes announce, or
// announced, from the agents in the view (Run's goroutine, or before Run;
// before the nodes' backends are set, so that their first health checks
// speak it).
func (g *Gateway) setProtocols(nodes []membership.Node) {
	g.mu.Lock()
	touched := make(map[string]bool)
	for _, n := range nodes {
		if n.Err == nil && n.Tags.Role == membership.RoleAgent {
			touched[n.Tags.Service] = true
		}
		if svc, ok := g.serviceOf[n.Name]; ok {
			touched[svc] = true
		}
	}
	chosen := make(map[string]membership.Node)
	for _, n := range g.nodes {
		svc := n.Tags.Service
		if n.Err != nil || n.Tags.Role != membership.RoleAgent || !touched[svc] {
			continue
		}
		if c, ok := chosen[svc]; !ok || cmp.Or(cmp.Compare(n.Tags.Gen, c.Tags.Gen), cmp.Compare(n.Name, c.Name)) < 0 {
			chosen[svc] = n
		}
	}
	for _, n := range g.nodes {
		if n.Err != nil || n.Tags.Role != membership.RoleAgent || !touched[n.Tags.Service] {
			continue
		}
		c := chosen[n.Tags.Service]
		if protocolOf(n) == protocolOf(c) {
			delete(g.protoConflicts, n.Name)
			continue
		}
		if g.protoConflicts[n.Name] != protocolOf(n) {
			g.logger.Warn("agent's protocol differs from its service's: the oldest agent's is kept",
				"node", n.Name, "service", n.Tags.Service, "protocol", protocolOf(n), "kept", protocolOf(c), "from", c.Name)
		}
		g.protoConflicts[n.Name] = protocolOf(n)
	}
	for name := range g.protoConflicts {
		if n, ok := g.nodes[name]; !ok || n.Err != nil || n.Tags.Role != membership.RoleAgent {
			delete(g.protoConflicts, name)
		}
	}
	conflicts := len(g.protoConflicts)
	g.mu.Unlock()
	g.protocolConflicts.Set(float64(conflicts))
	for svc, n := range chosen {
		if g.cfg.Service != "" && svc != g.cfg.Service {
			continue // a gateway of one service routes no other
		}
		p, err := balancer.ParseProtocol(string(protocolOf(n)))
		if err != nil { // validated with the tags: cannot happen
			g.logger.Error("agent's protocol", "node", n.Name, "error", err)
			continue
		}
		g.bal.Service(svc).SetProtocol(p)
	}
}

// protocolOf is the protocol n announces.
func protocolOf(n membership.Node) membership.Protocol {
	return cmp.Or(n.Tags.Protocol, membership.ProtoHTTP)
}
