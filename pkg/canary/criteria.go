package canary

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Defaults of Criteria's zero fields.
const (
	// DefaultMinRequests is how many requests each arm needs before Judge
	// gives a verdict.
	DefaultMinRequests = 200
	// DefaultAlpha is the significance level of both tests: a canary over a
	// limit fails only if, had it been as good as the baseline, figures this
	// bad would have come up by chance less than 1 time in 100.
	DefaultAlpha = 0.01
	// DefaultMaxErrorRate is DefaultCriteria's error rate limit, 1 %.
	DefaultMaxErrorRate = 0.01
	// DefaultMaxP99Ratio is DefaultCriteria's p99 limit: the canary's p99
	// may be up to 1.2 times the baseline's.
	DefaultMaxP99Ratio = 1.2
	// DefaultP99Slack is what the rollout coordinator sets P99Slack to: a
	// p99 less than 5 ms above the baseline's passes whatever the ratio.
	// On a shared host, the p99 of two identical sub-millisecond services
	// differs by a millisecond or two at random (measured: 1.7 and 2.0 ×
	// for identical builds, 1 ms apart, in this project's e2e test).
	DefaultP99Slack = 5 * time.Millisecond
)

// MinPoints is the fewest values per arm either statistic is computed on:
// the least MinRequests may be set to, and the fewest latencies per arm the
// rank test runs on (a step of mostly failed requests has requests enough
// but few latencies). Spinnaker's canary guide asks for at least 50 data
// points per metric for its Mann–Whitney judge.
const MinPoints = 50

// Criteria is what a canary must meet. Its zero value checks errors only:
// the canary may not err more than the baseline beyond chance.
type Criteria struct {
	// MaxErrorRate is the highest acceptable fraction of canary requests
	// that fail, from 0 to 1 (0.01 is 1 %). At 0 any error puts the canary
	// over the limit; at 1 the error check never fails.
	MaxErrorRate float64 `json:"max_error_rate"`
	// MaxP99Ratio is the highest acceptable ratio of the canary's p99
	// latency to the baseline's, above 1 (1.2 allows 20 % slower). 0 turns
	// the latency check off.
	MaxP99Ratio float64 `json:"max_p99_ratio,omitempty"`
	// P99Slack is how far the canary's p99 may be above the baseline's
	// whatever the ratio: a ratio means little between two latencies of a
	// millisecond. 0: none.
	P99Slack time.Duration `json:"p99_slack,omitempty"`
	// MinRequests is how many requests each arm needs before a verdict;
	// below it Judge answers Inconclusive. 0 means DefaultMinRequests; else
	// at least MinPoints.
	MinRequests int `json:"min_requests,omitempty"`
	// Alpha is the significance level of the tests that confirm a canary
	// over a limit is worse than its baseline: the accepted chance, for one
	// judgement, of failing a version as good as the baseline on noise alone.
	// Above 0, at most 0.2; 0 means DefaultAlpha.
	Alpha float64 `json:"alpha,omitempty"`
}

// DefaultCriteria checks both errors (1 %) and latency (p99 up to 1.2 times
// the baseline's), from 200 requests per arm, at a 1 % significance level.
func DefaultCriteria() Criteria {
	return Criteria{
		MaxErrorRate: DefaultMaxErrorRate,
		MaxP99Ratio:  DefaultMaxP99Ratio,
		MinRequests:  DefaultMinRequests,
		Alpha:        DefaultAlpha,
	}
}

// maxAlpha bounds Alpha: a test that fails good versions one time in five
// confirms nothing.
const maxAlpha = 0.2

// Validate reports every field out of range, joined.
func (c Criteria) Validate() error {
	var errs []error
	if !(c.MaxErrorRate >= 0 && c.MaxErrorRate <= 1) {
		errs = append(errs, fmt.Errorf("max error rate %v out of range 0-1 (a fraction: 0.01 is 1 %%)", c.MaxErrorRate))
	}
	if c.MaxP99Ratio != 0 && !(c.MaxP99Ratio > 1 && !math.IsInf(c.MaxP99Ratio, 1)) {
		errs = append(errs, fmt.Errorf("max p99 ratio %v must be above 1 (1.2 allows a p99 20 %% above the baseline's), or 0 for no latency check", c.MaxP99Ratio))
	}
	if c.P99Slack < 0 {
		errs = append(errs, fmt.Errorf("p99 slack %s must not be negative", c.P99Slack))
	}
	if c.MinRequests != 0 && c.MinRequests < MinPoints {
		errs = append(errs, fmt.Errorf("min requests %d below %d: fewer per arm cannot tell a version from noise", c.MinRequests, MinPoints))
	}
	if c.Alpha != 0 && !(c.Alpha > 0 && c.Alpha <= maxAlpha) {
		errs = append(errs, fmt.Errorf("alpha %v out of range: above 0 and at most %v (0.01: noise alone confirms a regression 1 time in 100)", c.Alpha, maxAlpha))
	}
	return errors.Join(errs...)
}

// withDefaults fills the zero fields that have defaults.
func (c Criteria) withDefaults() Criteria {
	if c.MinRequests == 0 {
		c.MinRequests = DefaultMinRequests
	}
	if c.Alpha == 0 {
		c.Alpha = DefaultAlpha
	}
	return c
}
