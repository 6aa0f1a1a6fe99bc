package scale

import (
	"fmt"
	"slices"
	"strings"

	"github.com/herd-cluster/herd/pkg/membership"
)

// Status is where a service's replica count stands: what its agents want
// and announce (their tags), and what this gateway routes to.
type Status struct {
	Service string
	// Replicas is the alive agents' counts together (an agent scaling down
	// counts the replicas it still stops); Healthy the replicas they
	// announce; Routed those this gateway has in rotation, or -1 when it
	// does not route the service.
	Replicas, Healthy, Routed int
	// Agents are the service's agents, alive or not, in name order.
	Agents []AgentStatus
	// Rollout is the service's running rollout, if any.
	Rollout string
	// Queued is the scale waiting for that rollout; LastQueued how the
	// last one that waited went, until the next scale of the service.
	Queued     *Queued
	LastQueued *QueuedOutcome
}

// AgentStatus is one agent's part of a Status.
type AgentStatus struct {
	Node   string
	Status membership.Status
	// Replicas is the count it converges to, or while it scales down, the
	// count it had until the removed replicas have stopped; Healthy the
	// replicas it announces; Routed those this gateway has in rotation (-1:
	// the gateway does not route the service).
	Replicas, Healthy, Routed int
	// Problem is why the agent gave up (its Fail tag: a scale-down or
	// a deploy given up), or that it is not alive.
	Problem string
}

// Status returns where service's count stands.
func (s *Scaler) Status(service string) Status {
	var routed map[string]int
	routes := false
	if s.cfg.Routed != nil {
		routed, routes = s.cfg.Routed(service)
	}
	st := statusOf(service, s.cfg.Members.Members(), routed, routes)
	st.Rollout = s.cfg.Rollout(service)
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if q := s.queued[service]; q != nil {
		st.Queued = &Queued{Request: q.req, Rollout: q.rollout, Since: q.since}
	}
	if o, ok := s.lastQueued[service]; ok {
		st.LastQueued = &o
	}
	return st
}

// statusOf is service's status from the members' tags and what this
// gateway routes to by node (routes false: it does not route the service).
func statusOf(service string, nodes []membership.Node, routed map[string]int, routes bool) Status {
	st := Status{Service: service, Routed: -1}
	if routes {
		st.Routed = 0
	}
	for _, n := range nodes {
		if n.Err != nil || n.Tags.Role != membership.RoleAgent || n.Tags.Service != service {
			continue
		}
		if n.Status == membership.StatusLeft {
			continue // gone for good: no longer one of the service's agents
		}
		a := AgentStatus{Node: n.Name, Status: n.Status, Replicas: n.Tags.Count, Routed: -1}
		if n.Tags.State == membership.StateActive {
			a.Healthy = len(n.Tags.Ports)
		}
		switch {
		case n.Status != membership.StatusAlive:
			a.Problem = fmt.Sprintf("%s is %s", n.Name, n.Status)
			a.Healthy = 0
		case n.Tags.Fail != "":
			a.Problem = n.Tags.Fail
		case n.Tags.State != membership.StateActive:
			a.Problem = n.Name + " is " + string(n.Tags.State)
		}
		if routes {
			a.Routed = routed[n.Name]
			st.Routed += a.Routed
		}
		if n.Status == membership.StatusAlive {
			st.Replicas += a.Replicas
			st.Healthy += a.Healthy
		}
		st.Agents = append(st.Agents, a)
	}
	slices.SortFunc(st.Agents, func(a, b AgentStatus) int { return strings.Compare(a.Node, b.Node) })
	return st
}
