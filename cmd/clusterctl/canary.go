package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/herd-cluster/herd/pkg/api"
)

// canaryFlags are the rollout flags of a canary; each also reads
// HERD_ROLLOUT_<FLAG>.
func canaryFlags() []cli.Flag {
	env := func(name string) []string {
		return []string{"HERD_ROLLOUT_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))}
	}
	return []cli.Flag{
		&cli.BoolFlag{Name: "canary", EnvVars: env("canary"),
			Usage: "start with a canary judged by the gateways' measurements, then replace the hosts"},
		&cli.StringFlag{Name: "steps", Value: "5,25,50", EnvVars: env("steps"),
			Usage: "the canary's shares of the requests in percent, ascending, each 1-99"},
		&cli.DurationFlag{Name: "step-time", Value: 30 * time.Second, EnvVars: env("step-time"),
			Usage: "how long each canary step lasts at least"},
		&cli.DurationFlag{Name: "step-deadline", EnvVars: env("step-deadline"),
			Usage: "how long a step may wait for enough requests before it fails closed (default: step time + 2m)"},
		&cli.IntFlag{Name: "canary-replicas", Value: 1, EnvVars: env("canary-replicas"),
			Usage: "replicas of each arm (canary, baseline)"},
		&cli.StringFlag{Name: "canary-node", EnvVars: env("canary-node"),
			Usage: "the agent that runs the canary (default: the service's first by name)"},
		&cli.StringFlag{Name: "baseline", Value: api.BaselineFresh, EnvVars: env("baseline"),
			Usage: "what the canary is compared with: fresh (old-version replicas started with it) or stable"},
		&cli.StringFlag{Name: "max-error-rate", Value: "1%", EnvVars: env("max-error-rate"),
			Usage: "the canary's highest error rate (5xx and failed exchanges), as 1% or 0.01"},
		&cli.Float64Flag{Name: "max-p99-ratio", Value: 1.2, EnvVars: env("max-p99-ratio"),
			Usage: "the highest ratio of the canary's p99 latency to the baseline's, above 1"},
		&cli.DurationFlag{Name: "p99-slack", Value: 5 * time.Millisecond, EnvVars: env("p99-slack"),
			Usage: "how far the canary's p99 may be above the baseline's whatever the ratio"},
		&cli.IntFlag{Name: "min-requests", Value: 200, EnvVars: env("min-requests"),
			Usage: "requests each arm needs before a step can be judged, at least 50"},
	}
}

// canaryFlagNames are the flags that only mean something with --canary.
var canaryFlagNames = []string{"steps", "step-time", "step-deadline", "canary-replicas", "canary-node", "baseline",
	"max-error-rate", "max-p99-ratio", "p99-slack", "min-requests"}

// canaryOptionsFrom reads the canary flags: nil without --canary. Every
// problem is reported at once, before anything is sent.
func canaryOptionsFrom(c *cli.Context) (*api.CanaryOptions, error) {
	if !c.Bool("canary") {
		for _, name := range canaryFlagNames {
			if c.IsSet(name) {
				return nil, fmt.Errorf("--%s is a canary setting: add --canary", name)
			}
		}
		return nil, nil
	}
	var errs []error
	steps, err := parseSteps(c.String("steps"))
	if err != nil {
		errs = append(errs, err)
	}
	rate, err := parseRate(c.String("max-error-rate"))
	if err != nil {
		errs = append(errs, err)
	}
	o := &api.CanaryOptions{
		Steps: steps, StepTime: api.Duration(c.Duration("step-time")), StepDeadline: api.Duration(c.Duration("step-deadline")),
		Replicas: c.Int("canary-replicas"), Node: c.String("canary-node"), Baseline: c.String("baseline"),
		MaxErrorRate: rate, MaxP99Ratio: c.Float64("max-p99-ratio"), MinRequests: c.Int("min-requests"),
		P99Slack: api.Duration(c.Duration("p99-slack")),
	}
	if o.P99Slack <= 0 {
		errs = append(errs, fmt.Errorf("--p99-slack %s: must be positive (1ns for none)", time.Duration(o.P99Slack)))
	}
	switch {
	case o.StepTime <= 0:
		errs = append(errs, fmt.Errorf("--step-time %s: must be positive", time.Duration(o.StepTime)))
	case o.StepDeadline != 0 && o.StepDeadline < o.StepTime:
		errs = append(errs, fmt.Errorf("--step-deadline %s: must be at least --step-time %s", time.Duration(o.StepDeadline),
			time.Duration(o.StepTime)))
	}
	if o.Replicas < 1 || o.Replicas > 16 {
		errs = append(errs, fmt.Errorf("--canary-replicas %d: from 1 to 16", o.Replicas))
	}
	if o.Baseline != api.BaselineFresh && o.Baseline != api.BaselineStable {
		errs = append(errs, fmt.Errorf("--baseline %q: want fresh or stable", o.Baseline))
	}
	if !(o.MaxP99Ratio > 1) || math.IsInf(o.MaxP99Ratio, 0) {
		errs = append(errs, fmt.Errorf("--max-p99-ratio %g: must be above 1 (1.2 allows a p99 20 %% above the baseline's)",
			o.MaxP99Ratio))
	}
	if o.MinRequests < 50 {
		errs = append(errs, fmt.Errorf("--min-requests %d: at least 50 (fewer per arm cannot tell a version from noise)",
			o.MinRequests))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return o, nil
}

// parseSteps reads "5,25,50": ascending percentages from 1 to 99.
func parseSteps(s string) ([]int, error) {
	var steps []int
	for part := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(part), "%"))
		if err != nil {
			return nil, fmt.Errorf("--steps %q: want percentages such as 5,25,50", s)
		}
		if n < 1 || n > 99 {
			return nil, fmt.Errorf("--steps %q: each step is a share of the requests from 1 to 99 %%", s)
		}
		if len(steps) > 0 && n <= steps[len(steps)-1] {
			return nil, fmt.Errorf("--steps %q: must be ascending", s)
		}
		steps = append(steps, n)
	}
	return steps, nil
}

// parseRate reads an error rate: "1%" or a fraction, "0.01".
func parseRate(s string) (float64, error) {
	t := strings.TrimSpace(s)
	pct := strings.HasSuffix(t, "%")
	v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(t, "%")), 64)
	if pct {
		v /= 100
	}
	if err != nil || math.IsNaN(v) || v <= 0 || v > 1 {
		return 0, fmt.Errorf("--max-error-rate %q: want a rate above 0 and at most 100 %%, as 1%% or 0.01", s)
	}
	return v, nil
}

// printCanary shows a canary: its phase and step, and the two arms' figures
// side by side.
func printCanary(w io.Writer, c *api.CanaryStatus) {
	fmt.Fprintf(w, "canary on %s: %s", c.Node, c.Phase)
	if c.Step > 0 && (c.Phase == api.CanaryMeasuring) {
		fmt.Fprintf(w, ", step %d at %d %%", c.Step, c.Weight)
		if !c.StepStarted.IsZero() {
			fmt.Fprintf(w, " for %s", time.Since(c.StepStarted).Round(time.Second))
		}
	}
	fmt.Fprintln(w)
	rows := [][]string{{"STEP", "WEIGHT", "ARM", "REQUESTS", "ERRORS", "P50", "P99", "VERDICT"}}
	add := func(step string, weight int, v api.Verdict) {
		for i, arm := range []struct {
			name string
			f    api.ArmFigures
		}{{"canary", v.Canary}, {"baseline", v.Baseline}} {
			verdict := ""
			if i == 0 {
				verdict = v.Result
			}
			rows = append(rows, []string{step, fmt.Sprintf("%d %%", weight), arm.name, fmt.Sprint(arm.f.Requests),
				fmt.Sprintf("%d (%.2f %%)", arm.f.Errors, arm.f.ErrorRate*100), durText(arm.f.P50), durText(arm.f.P99), verdict})
		}
	}
	for i, s := range c.Steps {
		add(strconv.Itoa(i+1), s.Weight, s.Verdict)
	}
	if c.Live != nil {
		add(fmt.Sprintf("%d (live)", c.Step), c.Weight, *c.Live)
	}
	if len(rows) > 1 {
		_ = printTable(w, rows)
	}
	last := c.Live
	if last == nil && len(c.Steps) > 0 {
		last = &c.Steps[len(c.Steps)-1].Verdict
	}
	if last != nil && last.Reason != "" {
		fmt.Fprintln(w, last.Reason)
	}
	if c.Outcome != "" {
		fmt.Fprintln(w, "canary: "+c.Outcome)
	}
}

func durText(d api.Duration) string {
	if d == 0 {
		return "-"
	}
	return time.Duration(d).Round(10 * time.Microsecond).String()
}

// canaryLines are the plain-output lines of a canary: one per phase, step
// and verdict (not the live figures, which change every second).
func canaryLines(r api.Rollout) []string {
	c := r.Canary
	if c == nil {
		return nil
	}
	var out []string
	for i, s := range c.Steps {
		out = append(out, fmt.Sprintf("%s canary step %d (%d %%): %s: %s", r.ID, i+1, s.Weight, s.Verdict.Result, s.Verdict.Reason))
	}
	l := fmt.Sprintf("%s canary on %s: %s", r.ID, c.Node, c.Phase)
	if c.Phase == api.CanaryMeasuring {
		l += fmt.Sprintf(" step %d (%d %%)", c.Step, c.Weight)
	}
	if c.Outcome != "" {
		l += ": " + c.Outcome
	}
	return append(out, l)
}
