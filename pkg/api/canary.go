package api

import (
	"context"
	"net/http"
	"time"
)

// Canary phases, as CanaryStatus.Phase shows them.
const (
	CanaryStarting  = "starting"  // the arms' replicas are starting, weight 0
	CanaryMeasuring = "measuring" // a step in progress
	CanaryEnding    = "ending"    // the arms are being removed; Outcome says why
	CanaryPassed    = "passed"    // every step passed; the hosts are being replaced
	CanaryPromoted  = "promoted"  // the operator skipped the remaining steps
	CanaryFailed    = "failed"    // a step failed; the rollout ended, no host changed
	CanaryAborted   = "aborted"   // the operator aborted
)

// Verdict results, as Verdict.Result shows them.
const (
	VerdictPass         = "pass"
	VerdictFail         = "fail"
	VerdictInconclusive = "inconclusive" // not enough data yet; fails closed at the step's deadline
)

// Canary baselines, as CanaryOptions.Baseline takes them.
const (
	BaselineFresh  = "fresh"  // replicas of the old version started with the canary (the default)
	BaselineStable = "stable" // the stable replicas
)

// CanaryOptions start a rollout with a canary (RolloutOptions.Canary). A
// zero field takes the gateway's default.
type CanaryOptions struct {
	// Steps are the canary arm's shares of the requests in percent,
	// ascending, each 1-99. Default 5, 25, 50.
	Steps []int `json:"steps,omitempty"`
	// StepTime is how long each step lasts at least. Default 30 s.
	StepTime Duration `json:"step_time,omitempty"`
	// StepDeadline is how long a step may wait for enough requests; an
	// inconclusive step fails then. Default StepTime + 2 min.
	StepDeadline Duration `json:"step_deadline,omitempty"`
	// Replicas is each arm's number of replicas. Default 1.
	Replicas int `json:"replicas,omitempty"`
	// Node is the agent that runs the canary. Default: the first alive
	// agent of the service by name.
	Node string `json:"node,omitempty"`
	// Baseline is BaselineFresh (default) or BaselineStable.
	Baseline string `json:"baseline,omitempty"`
	// MaxErrorRate is the canary's highest acceptable error rate, a
	// fraction (0.01 is 1 %). Zero: the default 1 %; use a tiny positive
	// value for "no errors".
	MaxErrorRate float64 `json:"max_error_rate,omitempty"`
	// MaxP99Ratio is the highest acceptable ratio of the canary's p99
	// latency to the baseline's, above 1. Default 1.2.
	MaxP99Ratio float64 `json:"max_p99_ratio,omitempty"`
	// P99Slack is how far the canary's p99 may be above the baseline's
	// whatever the ratio (a ratio of two latencies of a millisecond is
	// noise). Default 5 ms.
	P99Slack Duration `json:"p99_slack,omitempty"`
	// MinRequests is how many requests each arm needs for a step to be
	// judged. Default 200, at least 50.
	MinRequests int `json:"min_requests,omitempty"`
	// Alpha is the significance level of the tests. Default 0.01.
	Alpha float64 `json:"alpha,omitempty"`
}

// ArmFigures are one arm's figures in a step.
type ArmFigures struct {
	Requests  uint64  `json:"requests"`
	Errors    uint64  `json:"errors"`
	ErrorRate float64 `json:"error_rate"`
	// Latencies is how many latencies the percentiles were computed from.
	Latencies int      `json:"latencies"`
	P50       Duration `json:"p50"`
	P99       Duration `json:"p99"`
}

// Verdict is a step judged: its result, why, and the figures.
type Verdict struct {
	Result   string     `json:"result"`
	Reason   string     `json:"reason"`
	Canary   ArmFigures `json:"canary"`
	Baseline ArmFigures `json:"baseline"`
	// P99Ratio is the canary's p99 over the baseline's; 0 when unknown.
	P99Ratio float64 `json:"p99_ratio"`
	// ErrorP and LatencyP are the tests' one-sided p-values (1: no
	// evidence of a regression).
	ErrorP   float64 `json:"error_p"`
	LatencyP float64 `json:"latency_p"`
}

// CanaryStep is one judged step.
type CanaryStep struct {
	Weight  int       `json:"weight"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended"`
	Verdict Verdict   `json:"verdict"`
}

// CanaryStatus is a rollout's canary (Rollout.Canary).
type CanaryStatus struct {
	Node  string `json:"node"`
	Phase string `json:"phase"`
	// Step is the step in progress or last judged, from 1; 0 while starting.
	Step int `json:"step"`
	// Weight is the canary arm's share of the requests, in percent.
	Weight      int       `json:"weight"`
	Started     time.Time `json:"started"`
	StepStarted time.Time `json:"step_started,omitzero"`
	// Live is the step in progress judged on what was measured so far.
	Live *Verdict `json:"live,omitempty"`
	// Steps are the steps judged, in order.
	Steps []CanaryStep `json:"steps,omitempty"`
	// Outcome says why the canary ended, or is ending.
	Outcome string `json:"outcome,omitempty"`
}

// PromoteRollout skips the running canary's remaining steps of service
// (POST /v1/rollouts/promote): its arms are removed and the host-by-host
// rollout begins. 409 when no canary is running.
func (c *Client) PromoteRollout(ctx context.Context, service string) (Rollout, error) {
	var out Rollout
	body := struct {
		Service string `json:"service,omitempty"`
	}{service}
	return out, c.do(ctx, http.MethodPost, "/v1/rollouts/promote", body, &out)
}
