// Package api is Herd's admin HTTP API: the server side mounted by gateways
// and agents, the JSON types, and the client clusterctl uses.
package api

import (
	"github.com/herd-cluster/herd/pkg/balancer"
	"github.com/herd-cluster/herd/pkg/membership"
)

// Member is a cluster member as GET /v1/members shows it.
type Member struct {
	Name     string `json:"name"`
	Addr     string `json:"addr"`
	Status   string `json:"status"`
	Role     string `json:"role,omitempty"`
	Service  string `json:"service,omitempty"`
	Image    string `json:"image,omitempty"`
	State    string `json:"state,omitempty"`
	Backends int    `json:"backends"`
	// Problem says why a member's tags were rejected; it gets no traffic.
	Problem string `json:"problem,omitempty"`
}

// MemberOf converts a membership node.
func MemberOf(n membership.Node) Member {
	m := Member{
		Name: n.Name, Addr: n.Addr.String(), Status: string(n.Status),
		Role: string(n.Tags.Role), Service: n.Tags.Service, Image: n.Tags.Image,
		State: string(n.Tags.State), Backends: len(n.Tags.Ports),
	}
	if n.Err != nil {
		m.Problem = n.Err.Error()
	}
	return m
}

// Backend is a backend as GET /v1/backends shows it.
type Backend = balancer.BackendStatus

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
}

// MembersOf converts a member list.
func MembersOf(nodes []membership.Node) []Member {
	out := make([]Member, len(nodes))
	for i, n := range nodes {
		out[i] = MemberOf(n)
	}
	return out
}
