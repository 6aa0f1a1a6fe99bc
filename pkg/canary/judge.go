package canary

import (
	"fmt"
	"strings"
	"time"
)

// Result is a verdict's outcome.
type Result string

// The three outcomes of Judge.
const (
	// Pass: both arms have enough requests and the canary is within every
	// limit.
	Pass Result = "pass"
	// Fail: the canary is over a limit and worse than the baseline beyond
	// chance, or the criteria are invalid.
	Fail Result = "fail"
	// Inconclusive: not enough data yet. The caller keeps measuring and
	// judges again; at its deadline it fails the canary (fail closed).
	Inconclusive Result = "inconclusive"
)

// Verdict is Judge's answer: the outcome, why, and the figures it read.
type Verdict struct {
	Result Result `json:"result"`
	// Reason names each metric that decided the outcome, with its figures
	// and limit, e.g. "canary error rate 5.2 % (52 of 1000) above the 1 %
	// limit; baseline 0.0 % (0 of 1000); worse beyond chance (p = 1.1e-16,
	// alpha 0.01)".
	Reason  string  `json:"reason"`
	Figures Figures `json:"figures"`
}

// Figures are what Judge computed of the two arms. Every figure is a finite
// number: what cannot be computed is 0, or 1 for a p-value.
type Figures struct {
	Canary   ArmFigures `json:"canary"`
	Baseline ArmFigures `json:"baseline"`
	// P99Ratio is the canary's p99 over the baseline's, a baseline p99
	// under 1 µs counting as 1 µs; 0 when either arm has no latencies.
	P99Ratio float64 `json:"p99_ratio"`
	// ErrorP is the one-sided p-value of Fisher's exact test that the
	// canary errs more often than the baseline; 1 when either arm has no
	// requests.
	ErrorP float64 `json:"error_p"`
	// LatencyP is the one-sided p-value of the Mann–Whitney test that the
	// canary is slower; 1 when either arm has fewer than MinPoints
	// latencies.
	LatencyP float64 `json:"latency_p"`
}

// ArmFigures are one arm's figures.
type ArmFigures struct {
	Requests uint64 `json:"requests"`
	Errors   uint64 `json:"errors"`
	// ErrorRate is Errors/Requests; 0 when there were no requests.
	ErrorRate float64 `json:"error_rate"`
	// Latencies is how many latencies the percentiles and the rank test
	// were computed from.
	Latencies int `json:"latencies"`
	// P50 and P99 are latency percentiles; 0 when there are no latencies.
	P50 time.Duration `json:"p50"`
	P99 time.Duration `json:"p99"`
}

// p99Floor is the least baseline p99 the ratio divides by: below a
// microsecond a gateway's latencies are clock noise, and a zero p99 must not
// divide.
const p99Floor = time.Microsecond

// Judge compares a canary with its baseline under c; see the package
// comment for the rules. It is a pure function.
func Judge(canary, baseline Arm, c Criteria) Verdict {
	f := figures(canary, baseline)
	if err := c.Validate(); err != nil {
		msg := strings.ReplaceAll(err.Error(), "\n", "; ")
		return Verdict{Result: Fail, Reason: "invalid criteria: " + msg, Figures: f}
	}
	c = c.withDefaults()
	need := uint64(c.MinRequests)
	if canary.requests < need || baseline.requests < need {
		return Verdict{Result: Inconclusive, Figures: f, Reason: fmt.Sprintf(
			"too few requests to judge: canary %d, baseline %d; each arm needs %d",
			canary.requests, baseline.requests, need)}
	}
	checks := []check{judgeErrors(f, c)}
	if c.MaxP99Ratio > 0 {
		checks = append(checks, judgeLatency(f, c))
	}
	return combine(checks, f)
}

// check is one metric's outcome.
type check struct {
	result Result
	reason string
}

// combine: any failed check fails the canary, else any inconclusive one
// makes the verdict inconclusive, else it passes. The reason lists the
// checks that decided it.
func combine(checks []check, f Figures) Verdict {
	result := Pass
	for _, ch := range checks {
		if ch.result == Fail || (ch.result == Inconclusive && result == Pass) {
			result = ch.result
		}
	}
	var reasons []string
	for _, ch := range checks {
		if ch.result == result {
			reasons = append(reasons, ch.reason)
		}
	}
	return Verdict{Result: result, Reason: strings.Join(reasons, "; "), Figures: f}
}

func judgeErrors(f Figures, c Criteria) check {
	cn, bl := f.Canary, f.Baseline
	rates := fmt.Sprintf("canary error rate %s (%d of %d)", percent(cn.ErrorRate), cn.Errors, cn.Requests)
	base := fmt.Sprintf("baseline %s (%d of %d)", percent(bl.ErrorRate), bl.Errors, bl.Requests)
	limit := fmt.Sprintf("the %.4g %% limit", c.MaxErrorRate*100)
	switch {
	case cn.ErrorRate <= c.MaxErrorRate:
		return check{Pass, fmt.Sprintf("%s within %s; %s", rates, limit, base)}
	case f.ErrorP < c.Alpha:
		return check{Fail, fmt.Sprintf("%s above %s; %s; worse beyond chance (%s, alpha %g)",
			rates, limit, base, pText(f.ErrorP), c.Alpha)}
	default:
		return check{Inconclusive, fmt.Sprintf("%s above %s; %s; not yet worse beyond chance (%s, alpha %g)",
			rates, limit, base, pText(f.ErrorP), c.Alpha)}
	}
}

func judgeLatency(f Figures, c Criteria) check {
	cn, bl := f.Canary, f.Baseline
	if cn.Latencies < MinPoints || bl.Latencies < MinPoints {
		return check{Inconclusive, fmt.Sprintf(
			"too few latencies of successful requests to compare: canary %d, baseline %d; each arm needs %d",
			cn.Latencies, bl.Latencies, MinPoints)}
	}
	ratio := fmt.Sprintf("canary p99 %s is %s × the baseline's %s", short(cn.P99), ratioText(f.P99Ratio), short(bl.P99))
	limit := fmt.Sprintf("the %g × limit", c.MaxP99Ratio)
	switch {
	case f.P99Ratio <= c.MaxP99Ratio:
		return check{Pass, fmt.Sprintf("%s, within %s", ratio, limit)}
	case cn.P99-bl.P99 <= c.P99Slack:
		return check{Pass, fmt.Sprintf("%s, above %s but only %s slower, within the %s slack", ratio, limit,
			short(cn.P99-bl.P99), short(c.P99Slack))}
	case f.LatencyP < c.Alpha:
		return check{Fail, fmt.Sprintf("%s, above %s; slower beyond chance (rank test %s, alpha %g)",
			ratio, limit, pText(f.LatencyP), c.Alpha)}
	default:
		return check{Inconclusive, fmt.Sprintf("%s, above %s; not yet slower beyond chance (rank test %s, alpha %g)",
			ratio, limit, pText(f.LatencyP), c.Alpha)}
	}
}

func figures(canary, baseline Arm) Figures {
	f := Figures{
		Canary:   armFigures(canary),
		Baseline: armFigures(baseline),
		ErrorP:   errorTest(canary.errors, canary.requests, baseline.errors, baseline.requests),
		LatencyP: 1,
	}
	if f.Canary.Latencies > 0 && f.Baseline.Latencies > 0 {
		f.P99Ratio = float64(f.Canary.P99) / float64(max(f.Baseline.P99, p99Floor))
	}
	if f.Canary.Latencies >= MinPoints && f.Baseline.Latencies >= MinPoints {
		f.LatencyP = rankTest(canary.latencies, baseline.latencies).p
	}
	return f
}

func armFigures(a Arm) ArmFigures {
	rate, _ := a.ErrorRate()
	p50, _ := a.Quantile(0.5)
	p99, _ := a.Quantile(0.99)
	return ArmFigures{
		Requests:  a.requests,
		Errors:    a.errors,
		ErrorRate: rate,
		Latencies: len(a.latencies),
		P50:       p50,
		P99:       p99,
	}
}
