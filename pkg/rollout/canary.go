package rollout

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/herd-cluster/herd/pkg/canary"
	"github.com/herd-cluster/herd/pkg/membership"
)

// CanaryOptions make a rollout start with a canary: before any host is
// replaced, Replicas replicas of the new image (the canary arm) and as many
// of the old one started at the same moment (the baseline arm) run beside
// one agent's replicas, and every gateway sends each arm a share of the
// service's requests that grows step by step. Each step is judged on what
// the gateways measured of the two arms (pkg/canary.Judge); a failing step
// ends the rollout there, with the canary removed and no host touched.
type CanaryOptions struct {
	// Steps are the canary arm's shares of the requests, in percent,
	// ascending, each 1-99. Default 5, 25, 50.
	Steps []int `json:"steps"`
	// StepTime is how long each step lasts at least. Default 30 s.
	StepTime Duration `json:"step_time,omitempty"`
	// StepDeadline is how long a step may wait, counted from its start,
	// for enough requests to be judged; an inconclusive step fails then
	// (fail closed). Default StepTime + 2 min.
	StepDeadline Duration `json:"step_deadline,omitempty"`
	// Replicas is each arm's number of replicas. Default 1.
	Replicas int `json:"replicas,omitempty"`
	// Node is the agent that runs the canary; default: the first alive
	// agent of the service by name.
	Node string `json:"node,omitempty"`
	// Baseline is what the canary is compared with: BaselineFresh (default)
	// or BaselineStable.
	Baseline string `json:"baseline,omitempty"`
	// Criteria are the limits a step is judged by.
	Criteria canary.Criteria `json:"criteria"`
}

// The baselines a canary can be compared with.
const (
	// BaselineFresh: replicas of the old version started with the canary,
	// given the same share of requests (Kayenta's advice: a baseline warm
	// for days is not comparable with a canary started a minute ago).
	BaselineFresh = "fresh"
	// BaselineStable: the stable replicas, which take the rest.
	BaselineStable = "stable"
)

// DefaultSteps are the canary's steps when none are given.
var DefaultSteps = []int{5, 25, 50}

func (c *CanaryOptions) defaults() {
	if len(c.Steps) == 0 {
		c.Steps = slices.Clone(DefaultSteps)
	}
	if c.StepTime == 0 {
		c.StepTime = Duration(30 * time.Second)
	}
	if c.StepDeadline == 0 {
		c.StepDeadline = c.StepTime + Duration(2*time.Minute)
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.Baseline == "" {
		c.Baseline = BaselineFresh
	}
	if c.Criteria.MaxErrorRate == 0 {
		c.Criteria.MaxErrorRate = canary.DefaultMaxErrorRate
	}
	if c.Criteria.MaxP99Ratio == 0 {
		c.Criteria.MaxP99Ratio = canary.DefaultMaxP99Ratio
	}
	if c.Criteria.P99Slack == 0 {
		c.Criteria.P99Slack = canary.DefaultP99Slack
	}
	if c.Criteria.MinRequests == 0 {
		c.Criteria.MinRequests = canary.DefaultMinRequests
	}
	if c.Criteria.Alpha == 0 {
		c.Criteria.Alpha = canary.DefaultAlpha
	}
}

// Validate reports every problem with c, one per line.
func (c *CanaryOptions) Validate() error {
	var errs []error
	if len(c.Steps) == 0 {
		errs = append(errs, errors.New("canary steps: none given"))
	}
	for i, s := range c.Steps {
		if s < 1 || s > 99 {
			errs = append(errs, fmt.Errorf("canary step %d %%: each step is a share of the requests from 1 to 99 %%", s))
		} else if i > 0 && s <= c.Steps[i-1] {
			errs = append(errs, fmt.Errorf("canary steps %v: must be ascending", c.Steps))
		}
	}
	if c.StepTime <= 0 {
		errs = append(errs, fmt.Errorf("canary step time %s: must be positive", time.Duration(c.StepTime)))
	}
	if c.StepDeadline < c.StepTime {
		errs = append(errs, fmt.Errorf("canary step deadline %s: must be at least the step time %s",
			time.Duration(c.StepDeadline), time.Duration(c.StepTime)))
	}
	if c.Replicas < 1 || c.Replicas > membership.MaxCanaryReplicas {
		errs = append(errs, fmt.Errorf("canary replicas %d: from 1 to %d per arm", c.Replicas, membership.MaxCanaryReplicas))
	}
	if c.Baseline != BaselineFresh && c.Baseline != BaselineStable {
		errs = append(errs, fmt.Errorf("canary baseline %q: want %s or %s", c.Baseline, BaselineFresh, BaselineStable))
	}
	if err := c.Criteria.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c *CanaryOptions) equal(o *CanaryOptions) bool {
	if c == nil || o == nil {
		return c == o
	}
	return slices.Equal(c.Steps, o.Steps) && c.StepTime == o.StepTime && c.StepDeadline == o.StepDeadline &&
		c.Replicas == o.Replicas && c.Node == o.Node && c.Baseline == o.Baseline && c.Criteria == o.Criteria
}

// request is the canary part of a deploy request for weight; replicas 0
// ends the canary.
func (c *CanaryOptions) request(replicas, weight int) *membership.CanaryRequest {
	return &membership.CanaryRequest{Replicas: replicas, Weight: weight, Baseline: replicas > 0 && c.Baseline == BaselineFresh}
}

// CanaryPhase is where a canary stands.
//
//	starting ──▶ measuring (step 1 … n) ──▶ ending ──▶ passed ──▶ the host-by-host rollout
//	                                               ──▶ failed / aborted: the rollout ends
//	                                               ──▶ promoted ──▶ the host-by-host rollout
type CanaryPhase string

// Canary phases.
const (
	CanaryStarting  CanaryPhase = "starting"  // the arms' replicas are starting, weight 0
	CanaryMeasuring CanaryPhase = "measuring" // a step in progress
	CanaryEnding    CanaryPhase = "ending"    // the arms are being removed; Outcome says why
	CanaryPassed    CanaryPhase = "passed"    // every step passed; the arms are gone
	CanaryPromoted  CanaryPhase = "promoted"  // the operator skipped the remaining steps
	CanaryFailed    CanaryPhase = "failed"    // a step failed; the arms are gone
	CanaryAborted   CanaryPhase = "aborted"   // the operator aborted; the arms are gone
)

// CanaryStatus is a canary's progress, as the API shows it and the state
// file keeps it.
type CanaryStatus struct {
	Node  string      `json:"node"`
	Phase CanaryPhase `json:"phase"`
	// Step is the step in progress or last judged, from 1; 0 while starting.
	Step int `json:"step"`
	// Weight is the canary arm's share of the requests asked of the agent.
	Weight  int       `json:"weight"`
	Started time.Time `json:"started"`
	// StepStarted is when the step in progress began to be measured: once
	// the agent announced its weight. Zero until then.
	StepStarted time.Time `json:"step_started,omitzero"`
	// EndStarted is when the arms began to be removed.
	EndStarted time.Time `json:"end_started,omitzero"`
	// Live is the step in progress judged on what was measured so far.
	Live *canary.Verdict `json:"live,omitempty"`
	// Steps are the steps judged, in order, with their figures.
	Steps []CanaryStep `json:"steps,omitempty"`
	// Outcome says why the canary ended (or is ending).
	Outcome string `json:"outcome,omitempty"`
	// ending is the phase the canary ends in once its arms are gone.
	Final CanaryPhase `json:"final,omitempty"`
}

// CanaryStep is one judged step.
type CanaryStep struct {
	Weight  int            `json:"weight"`
	Started time.Time      `json:"started"`
	Ended   time.Time      `json:"ended"`
	Verdict canary.Verdict `json:"verdict"`
}

func (s *CanaryStatus) clone() *CanaryStatus {
	if s == nil {
		return nil
	}
	out := *s
	out.Steps = slices.Clone(s.Steps)
	if s.Live != nil {
		v := *s.Live
		out.Live = &v
	}
	return &out
}

func (s *CanaryStatus) equal(o *CanaryStatus) bool {
	if s == nil || o == nil {
		return s == o
	}
	if s.Node != o.Node || s.Phase != o.Phase || s.Step != o.Step || s.Weight != o.Weight ||
		!s.Started.Equal(o.Started) || !s.StepStarted.Equal(o.StepStarted) || !s.EndStarted.Equal(o.EndStarted) ||
		s.Outcome != o.Outcome || s.Final != o.Final || len(s.Steps) != len(o.Steps) || (s.Live == nil) != (o.Live == nil) {
		return false
	}
	if s.Live != nil && *s.Live != *o.Live {
		return false
	}
	for i := range s.Steps {
		a, b := s.Steps[i], o.Steps[i]
		if a.Weight != b.Weight || !a.Started.Equal(b.Started) || !a.Ended.Equal(b.Ended) || a.Verdict != b.Verdict {
			return false
		}
	}
	return true
}

// GatewayCounts are one gateway's cumulative counts of a service's arms.
type GatewayCounts struct {
	Stable, Canary, Baseline canary.Counts
}

// Measure returns each gateway's cumulative counts of the service's arms,
// by gateway name: the rollout's own gateway's and those of the others that
// answered in time.
type Measure func(service string) map[string]GatewayCounts
