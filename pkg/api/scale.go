package api

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// ScaleRequest is the body of POST /v1/services/{service}/scale (the
// service's total, spread evenly over its agents) and of
// POST /v1/nodes/{node}/scale (that agent's count).
type ScaleRequest struct {
	// Replicas is the service's total, or the node's count.
	Replicas int `json:"replicas"`
	// AllowZero must be set to scale to 0, which stops the service (or
	// every replica on the node).
	AllowZero bool `json:"allow_zero,omitempty"`
	// AfterRollout queues the scale behind a running rollout of the
	// service (answered 202) instead of having it refused (409).
	AfterRollout bool `json:"after_rollout,omitempty"`
	// Reason says who asks and why, for the gateway's and agents' logs.
	Reason string `json:"reason,omitempty"`
}

// ScaleResult is the answer to a scale: 200 once every agent was asked
// (each answers at once and converges in the background; see ScaleStatus),
// 202 when queued behind a rollout. An agent that did not take its count
// has Error set; the others' change stands.
type ScaleResult struct {
	Service string `json:"service"`
	// Node is the agent scaled, for POST /v1/nodes/{node}/scale.
	Node string `json:"node,omitempty"`
	// Replicas is the total asked, or the node's count.
	Replicas int `json:"replicas"`
	// Queued: the scale runs once the service's rollout has ended; Agents
	// is what it would ask now.
	Queued bool `json:"queued,omitempty"`
	// Agents are the agents asked, in name order.
	Agents []ScaleAgent `json:"agents"`
}

// ScaleAgent is one agent's part of a scale.
type ScaleAgent struct {
	Node string `json:"node"`
	// Previous is its count before; Replicas the count asked of it.
	Previous int `json:"previous"`
	Replicas int `json:"replicas"`
	// Error is why it did not take the count: its refusal, or that it did
	// not answer in time (NoAnswer).
	Error    string `json:"error,omitempty"`
	NoAnswer bool   `json:"no_answer,omitempty"`
}

// Failed returns the agents that did not take their count.
func (r ScaleResult) Failed() []ScaleAgent {
	var out []ScaleAgent
	for _, a := range r.Agents {
		if a.Error != "" {
			out = append(out, a)
		}
	}
	return out
}

// ScaleStatus is where a service's replica count stands (GET
// /v1/services/{service}/scale): what its agents converge to and announce,
// and what the gateway asked routes to.
type ScaleStatus struct {
	Service string `json:"service"`
	// Replicas is the alive agents' counts together (an agent scaling down
	// counts the replicas it still stops); Healthy the replicas they
	// announce healthy; Routed those the gateway has in rotation, -1 when
	// it does not route the service.
	Replicas int `json:"replicas"`
	Healthy  int `json:"healthy"`
	Routed   int `json:"routed"`
	// Agents are the service's agents, alive or not, in name order.
	Agents []ScaleAgentStatus `json:"agents"`
	// Rollout is the service's running rollout ("ID to IMAGE"), if any.
	Rollout string `json:"rollout,omitempty"`
	// Queued is the scale waiting for that rollout.
	Queued *QueuedScale `json:"queued,omitempty"`
	// LastQueued is how the last queued scale went once its rollout ended,
	// until the next scale of the service.
	LastQueued *QueuedScaleOutcome `json:"last_queued,omitempty"`
}

// ScaleAgentStatus is one agent's part of a ScaleStatus.
type ScaleAgentStatus struct {
	Node string `json:"node"`
	// Status is what gossip knows of it ("alive", "failed", …).
	Status string `json:"status"`
	// Replicas is the count it converges to, or while it scales down, the
	// count it had until the removed replicas have stopped; Healthy the
	// replicas it announces; Routed those in rotation at the gateway (-1:
	// the gateway does not route the service).
	Replicas int `json:"replicas"`
	Healthy  int `json:"healthy"`
	Routed   int `json:"routed"`
	// Problem is why it gave up (a scale-down a gateway did not
	// acknowledge, a failed deploy), or that it is not alive.
	Problem string `json:"problem,omitempty"`
}

// QueuedScale is a scale waiting for the service's rollout to end.
type QueuedScale struct {
	Node     string    `json:"node,omitempty"`
	Replicas int       `json:"replicas"`
	Rollout  string    `json:"rollout"`
	Since    time.Time `json:"since"`
}

// QueuedScaleOutcome is how a queued scale went: Error is empty when
// every agent took its count.
type QueuedScaleOutcome struct {
	Node     string    `json:"node,omitempty"`
	Replicas int       `json:"replicas"`
	Done     time.Time `json:"done"`
	Error    string    `json:"error,omitempty"`
}

// Reached reports whether the service's total (or with node, that agent's
// count) is replicas, every replica announced healthy and, where the
// gateway routes the service, in rotation there.
func (s ScaleStatus) Reached(node string, replicas int) bool {
	if node != "" {
		for _, a := range s.Agents {
			if a.Node == node {
				return a.reached(a.Replicas) && a.Replicas == replicas
			}
		}
		return false
	}
	for _, a := range s.Agents {
		if a.Status == "alive" && !a.reached(a.Replicas) {
			return false
		}
	}
	return s.Replicas == replicas
}

func (a ScaleAgentStatus) reached(n int) bool {
	return a.Status == "alive" && a.Healthy == n && (a.Routed < 0 || a.Routed == n)
}

// scaleTimeout bounds a scale call: each agent is asked twice when it is
// silent, and a refused one is waited for.
const scaleTimeout = 2 * time.Minute

// Scale sets the service's total (POST /v1/services/{service}/scale). A
// refusal is a StatusError: 400 (bad count, no room, unknown service), 409
// (a rollout of the service runs; ask with AfterRollout to queue).
func (c *Client) Scale(ctx context.Context, service string, r ScaleRequest) (ScaleResult, error) {
	var out ScaleResult
	return out, c.doWithin(ctx, scaleTimeout, http.MethodPost, "/v1/services/"+url.PathEscape(service)+"/scale", r, &out)
}

// ScaleNode sets one agent's count (POST /v1/nodes/{node}/scale), refused
// as Scale is (400 also for an unknown node).
func (c *Client) ScaleNode(ctx context.Context, node string, r ScaleRequest) (ScaleResult, error) {
	var out ScaleResult
	return out, c.doWithin(ctx, scaleTimeout, http.MethodPost, "/v1/nodes/"+url.PathEscape(node)+"/scale", r, &out)
}

// ScaleStatus returns where the service's count stands (GET
// /v1/services/{service}/scale); 404 for a service with no agents.
func (c *Client) ScaleStatus(ctx context.Context, service string) (ScaleStatus, error) {
	var out ScaleStatus
	return out, c.do(ctx, http.MethodGet, "/v1/services/"+url.PathEscape(service)+"/scale", nil, &out)
}
