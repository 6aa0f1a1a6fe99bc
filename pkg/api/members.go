package api

import (
	"context"
	"net/http"
	"net/url"
)

// Member is a cluster member (a gateway or an agent) as GET /v1/members
// shows it.
type Member struct {
	// Name is the member's unique node name.
	Name string `json:"name"`
	// Addr is the member's gossip address, ip:port.
	Addr string `json:"addr"`
	// Status is what gossip knows of it: "alive", "leaving", "left",
	// "failed" or "unknown".
	Status string `json:"status"`
	// Role is "gateway" or "agent"; empty when its tags were rejected.
	Role string `json:"role,omitempty"`
	// Service is the service an agent's replicas serve.
	Service string `json:"service,omitempty"`
	// Image is what an agent's replicas run, name:tag.
	Image string `json:"image,omitempty"`
	// State is an agent's traffic state: "active" (its backends take
	// traffic) or "draining" (withdrawn, about to stop or be replaced).
	State string `json:"state,omitempty"`
	// Backends is how many replicas an agent announces.
	Backends int `json:"backends"`
	// Problem says why a member's tags were rejected; it gets no traffic.
	Problem string `json:"problem,omitempty"`
}

// Backend states, as Backend.State shows them.
const (
	BackendUp        = "up"
	BackendDown      = "down"       // failing its active health check
	BackendEjected   = "ejected"    // passive ejection after a refused or reset connection
	BackendSlowStart = "slow_start" // up, its share of traffic still ramping
)

// Backend is one of the gateway's backends (a replica it routes to) as
// GET /v1/backends shows it.
type Backend struct {
	// Service is the service it serves.
	Service string `json:"service"`
	// Addr is the replica's address, ip:port.
	Addr string `json:"addr"`
	// Node is the agent that announced it.
	Node string `json:"node"`
	// State is BackendUp, BackendDown, BackendEjected or BackendSlowStart.
	State string `json:"state"`
	// InFlight is the number of requests the gateway has sent it that have
	// not been answered yet.
	InFlight int64 `json:"in_flight"`
	// Requests is how many requests it has been sent since the gateway
	// started (a counter: compare two reads for a rate).
	Requests uint64 `json:"requests"`
	// Failures is how many of those failed at the backend (a connection
	// refused, reset or timed out, a broken answer) since the gateway started.
	Failures uint64 `json:"failures"`
}

// Replica states, as Replica.State shows them.
const (
	ReplicaStarting  = "starting"  // being started, not yet healthy
	ReplicaHealthy   = "healthy"   // announced to the gateways
	ReplicaUnhealthy = "unhealthy" // running but failing checks: withdrawn
	ReplicaBackoff   = "backoff"   // failed; waiting to be restarted
	ReplicaDraining  = "draining"  // withdrawn for replacement; gateways acknowledging
	ReplicaStopped   = "stopped"
)

// Replica is one of an agent's replicas as the agent's GET /v1/replicas
// shows it.
type Replica struct {
	// Index is the replica's slot, 0 to replicas-1; it listens on the
	// agent's base port + Index.
	Index int `json:"index"`
	// Addr is where it listens, ip:port.
	Addr string `json:"addr"`
	// Image is what it runs, name:tag.
	Image string `json:"image"`
	// State is one of the Replica* states.
	State string `json:"state"`
	// ID is the runtime's identifier (a container ID), when it has one.
	ID string `json:"id,omitempty"`
	// PID is its process ID, when the runtime knows it.
	PID int `json:"pid,omitempty"`
	// Restarts is how many times the agent has restarted it.
	Restarts int `json:"restarts"`
}

// ForceLeaveResult is the answer to POST /v1/members/{name}/force-leave.
type ForceLeaveResult struct {
	// Removed is the name of the member removed.
	Removed string `json:"removed"`
}

// Members lists the cluster's members (GET /v1/members, gateway or agent).
func (c *Client) Members(ctx context.Context) ([]Member, error) {
	var out []Member
	return out, c.get(ctx, "/v1/members", &out)
}

// Backends lists the gateway's backends (GET /v1/backends).
func (c *Client) Backends(ctx context.Context) ([]Backend, error) {
	var out []Backend
	return out, c.get(ctx, "/v1/backends", &out)
}

// Replicas lists an agent's replicas (GET /v1/replicas on an agent's admin
// address).
func (c *Client) Replicas(ctx context.Context) ([]Replica, error) {
	var out []Replica
	return out, c.get(ctx, "/v1/replicas", &out)
}

// ForceLeave removes a failed member for good. The server refuses an alive
// member (a StatusError with status 409) and an unknown one (404).
func (c *Client) ForceLeave(ctx context.Context, name string) (ForceLeaveResult, error) {
	var out ForceLeaveResult
	return out, c.do(ctx, http.MethodPost, "/v1/members/"+url.PathEscape(name)+"/force-leave", nil, &out)
}
