package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Rollout states, as Rollout.State shows them.
const (
	RolloutRunning   = "running"
	RolloutSucceeded = "succeeded"
	RolloutFailed    = "failed"  // a batch missed its deadline; see Rollout.Reverted
	RolloutAborted   = "aborted" // stopped by the operator
)

// Host states in a rollout, as RolloutHost.State shows them.
const (
	HostPending   = "pending"   // not started yet
	HostReplacing = "replacing" // the agent is converging to the image
	HostVerifying = "verifying" // healthy, waiting out MinHealthy
	HostHealthy   = "healthy"   // done: on the new image and healthy
	HostReverting = "reverting" // going back to the previous image
	HostReverted  = "reverted"  // back on the previous image
	HostFailed    = "failed"    // did not become healthy in time
)

// Duration is a time.Duration that reads and writes as a Go duration string
// ("5s", "1m30s") in JSON.
type Duration time.Duration

// MarshalJSON writes d as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string such as \"5s\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// RolloutOptions is what the operator chooses for a rollout: the body of
// POST /v1/rollouts and, without Image, of POST /v1/rollback. A zero field
// takes the gateway's default.
type RolloutOptions struct {
	// Service is the service rolled out; empty: the only one the cluster
	// runs (the gateway refuses it when there are several).
	Service string `json:"service,omitempty"`
	// Image is the image to roll out, name:tag. Empty for a rollback.
	Image string `json:"image"`
	// Batch is how many hosts are replaced at a time. Default 1.
	Batch int `json:"batch,omitempty"`
	// MinHealthy is how long a batch must stay healthy, counted from its
	// first passing state, before the next starts. Default 5 s.
	MinHealthy Duration `json:"min_healthy,omitempty"`
	// Deadline is how long a batch has to become healthy. Default 2 min.
	Deadline Duration `json:"deadline,omitempty"`
	// NoAutoRevert leaves a failed batch as it is instead of putting it back
	// on the previous image.
	NoAutoRevert bool `json:"no_auto_revert,omitempty"`
	// Canary, if set, starts the rollout with a canary judged by the
	// gateways' measurements (docs/canary.md).
	Canary *CanaryOptions `json:"canary,omitempty"`
}

// RolloutHost is one host's progress in a rollout.
type RolloutHost struct {
	// Node is the agent's node name.
	Node string `json:"node"`
	// State is one of the Host* states.
	State string `json:"state"`
	// Batch is the batch the host is in, from 1.
	Batch int `json:"batch"`
	// Started is when its replacement began; zero (absent) until then.
	Started time.Time `json:"started,omitzero"`
	// HealthySince is since when it has run the image it is moving to,
	// healthy; zero while it does not.
	HealthySince time.Time `json:"healthy_since,omitzero"`
	// Finished is when its part ended (HostHealthy, HostReverted or
	// HostFailed).
	Finished time.Time `json:"finished,omitzero"`
	// Error is what went wrong on this host, if anything.
	Error string `json:"error,omitempty"`
}

// Rollout is one rollout, as the rollout endpoints answer it: its options
// (with the gateway's defaults filled in), its state and each host's
// progress.
type Rollout struct {
	// ID identifies the rollout in GET /v1/rollouts/{id}.
	ID string `json:"id"`
	RolloutOptions
	// Previous is the image the hosts ran before; a revert goes back to it.
	Previous string `json:"previous"`
	// State is one of the Rollout* states.
	State string `json:"state"`
	// Message says how the rollout ended, or why it failed.
	Message string `json:"message,omitempty"`
	// Reverted is set when a failed batch was put back on Previous.
	Reverted bool `json:"reverted,omitempty"`
	// Created is when the rollout started.
	Created time.Time `json:"created"`
	// Finished is when it ended; zero (absent) while it runs.
	Finished time.Time `json:"finished,omitzero"`
	// Hosts are the hosts in the order they are replaced.
	Hosts []RolloutHost `json:"hosts"`
	// Canary is the canary's progress, for a rollout with one.
	Canary *CanaryStatus `json:"canary_status,omitempty"`
}

// Done reports whether the rollout has ended.
func (r Rollout) Done() bool { return r.State != RolloutRunning }

// Succeeded reports whether it ended on the new image everywhere.
func (r Rollout) Succeeded() bool { return r.State == RolloutSucceeded }

// Starting a rollout waits for every agent's answer (is the image there?)
// and for a refused one; an abort answers once the batch in progress is
// reverted. Both get at least these, whatever Client.Timeout says.
const (
	startTimeout = 2 * time.Minute
	abortTimeout = 30 * time.Minute
)

// StartRollout starts a rollout (POST /v1/rollouts). The server refuses
// one while another runs (a StatusError with status 409) and one it cannot
// do (400: unknown image, no agents, ...).
func (c *Client) StartRollout(ctx context.Context, o RolloutOptions) (Rollout, error) {
	var out Rollout
	return out, c.doWithin(ctx, startTimeout, http.MethodPost, "/v1/rollouts", o, &out)
}

// Rollback starts a rollout back to the image before the last rollout's
// (POST /v1/rollback); o.Image is ignored.
func (c *Client) Rollback(ctx context.Context, o RolloutOptions) (Rollout, error) {
	var out Rollout
	return out, c.doWithin(ctx, startTimeout, http.MethodPost, "/v1/rollback", o, &out)
}

// Rollout returns one of service's rollouts; id "current" is the running
// or last one. Service "": the only service there is.
func (c *Client) Rollout(ctx context.Context, service, id string) (Rollout, error) {
	var out Rollout
	return out, c.do(ctx, http.MethodGet, "/v1/rollouts/"+url.PathEscape(id)+serviceQuery(service), nil, &out)
}

// Rollouts returns service's rollouts, newest first; service "": every
// service's.
func (c *Client) Rollouts(ctx context.Context, service string) ([]Rollout, error) {
	var out []Rollout
	return out, c.do(ctx, http.MethodGet, "/v1/rollouts"+serviceQuery(service), nil, &out)
}

// AbortRollout stops service's running rollout and answers once its batch
// in progress is back on the previous image.
func (c *Client) AbortRollout(ctx context.Context, service string) (Rollout, error) {
	var out Rollout
	body := struct {
		Service string `json:"service,omitempty"`
	}{service}
	return out, c.doWithin(ctx, abortTimeout, http.MethodPost, "/v1/rollouts/abort", body, &out)
}

func serviceQuery(service string) string {
	if service == "" {
		return ""
	}
	return "?service=" + url.QueryEscape(service)
}
