// Package rollout is the deploy coordinator: it moves a service's agents to
// a new image a batch of hosts at a time, gated on health, and reverts a
// batch that does not become healthy in time.
//
// The coordinator only sets each agent's desired image (a Serf query) and
// watches the agents' tags; the agent does the per-replica work in the order
// that makes zero downtime true: withdraw a replica, wait until every gateway
// acknowledges, stop it, start its successor, announce it once healthy.
//
// Decisions are made by step, a pure function from the rollout's progress
// and an observation (the time, what membership says of the hosts, an
// abort) to the next progress and what to do: send deploy requests, save,
// log, when to look again. A loop feeds it: it wakes on membership changes,
// on an abort, on the answers to its deploy requests and on the next
// deadline, never on a fixed poll.
//
// The state is saved, atomically, only when it changes: the rollout in
// progress in a small file of its own at every step, the history (the last
// MaxHistory rollouts) when a rollout starts or ends. A coordinator
// restarted mid-rollout resumes it where the files say it stood: the hosts
// already healthy stay done, the batch in progress (or its revert) keeps its
// original deadline.
package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/herd-cluster/herd/pkg/membership"
)

// Duration is a time.Duration that reads and writes as "5s" in JSON.
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

// Options is what the operator chooses for a rollout.
type Options struct {
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
	// Canary, if set, starts the rollout with a canary (canary.go).
	Canary *CanaryOptions `json:"canary,omitempty"`
}

func (o *Options) defaults() {
	if o.Batch == 0 {
		o.Batch = 1
	}
	if o.MinHealthy == 0 {
		o.MinHealthy = Duration(5 * time.Second)
	}
	if o.Deadline == 0 {
		o.Deadline = Duration(2 * time.Minute)
	}
	if o.Canary != nil {
		c := *o.Canary
		c.defaults()
		o.Canary = &c
	}
}

// Validate reports the first bad option.
func (o Options) Validate() error {
	switch {
	case o.Batch < 1:
		return fmt.Errorf("batch %d: must be at least 1", o.Batch)
	case o.MinHealthy < 0:
		return fmt.Errorf("min healthy %s: must not be negative", time.Duration(o.MinHealthy))
	case o.Deadline <= 0:
		return fmt.Errorf("deadline %s: must be positive", time.Duration(o.Deadline))
	case o.Canary != nil:
		return o.Canary.Validate()
	}
	return nil
}

// Host is one host's progress in a rollout.
type Host struct {
	Node         string    `json:"node"`
	State        HostState `json:"state"`
	Batch        int       `json:"batch"`
	Started      time.Time `json:"started,omitzero"`
	HealthySince time.Time `json:"healthy_since,omitzero"`
	Finished     time.Time `json:"finished,omitzero"`
	Error        string    `json:"error,omitempty"`
}

// Rollout is one rollout, as the API shows and the state file keeps it.
type Rollout struct {
	ID string `json:"id"`
	// Service is the service rolled out (absent in the state files of
	// earlier versions: the coordinator's).
	Service string `json:"service,omitempty"`
	Options
	Previous string    `json:"previous"`
	State    State     `json:"state"`
	Message  string    `json:"message,omitempty"`
	Reverted bool      `json:"reverted,omitempty"`
	Created  time.Time `json:"created"`
	Finished time.Time `json:"finished,omitzero"`
	Hosts    []Host    `json:"hosts"`
	// Canary is the canary's progress, for a rollout with one.
	Canary *CanaryStatus `json:"canary_status,omitempty"`
}

// Done reports whether the rollout has ended.
func (r *Rollout) Done() bool { return r.State.Done() }

// Succeeded reports whether it ended on the new image everywhere.
func (r *Rollout) Succeeded() bool { return r.State == StateSucceeded }

// Members is what the coordinator needs of membership; *membership.Cluster
// has it.
type Members interface {
	Members() []membership.Node
	Deploy(ctx context.Context, nodes []string, req membership.DeployRequest, timeout time.Duration) map[string]error
}

// ErrBusy: a rollout is running; the error names it.
var ErrBusy = errors.New("a rollout is already running")

// ErrNotFound: no rollout with that id.
var ErrNotFound = errors.New("no such rollout")

// ErrNotRunning: there is no running rollout to abort.
var ErrNotRunning = errors.New("no rollout is running")

// ErrRefused: the rollout cannot start (bad image, no agents, an agent
// without the image, a failed agent); nothing was changed.
var ErrRefused = errors.New("rollout refused")

// ErrClosed: the coordinator was closed.
var ErrClosed = errors.New("rollout coordinator closed")

// FailedAgentsError refuses a rollout because agents of the service are
// marked failed and did not come back within Config.FailedGrace: a rollout
// without them would leave them on their old image when they return. They
// come back by themselves, or are removed for good with a force-leave. It
// matches ErrRefused.
type FailedAgentsError struct {
	Nodes []string      // sorted
	Grace time.Duration // how long the coordinator waited for them
}

func (e *FailedAgentsError) Error() string {
	verb := "is"
	if len(e.Nodes) > 1 {
		verb = "are"
	}
	return fmt.Sprintf("%s: %s %s failed and did not come back within %s: a rollout without it would leave it on "+
		"its old image when it returns", ErrRefused, strings.Join(e.Nodes, ", "), verb, e.Grace)
}

// Unwrap makes errors.Is(err, ErrRefused) true.
func (e *FailedAgentsError) Unwrap() error { return ErrRefused }
