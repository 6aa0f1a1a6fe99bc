// Package autoscale decides a service's replica count from the requests in
// flight at its gateways. It is a pure function of the settings, the
// samples, the current count and the time (Decide), with the little state
// it keeps between decisions (State) passed in and out: the caller
// samples, asks, and acts (clusterctl scale's orchestration), and the
// tests table-test the decisions with no cluster at all.
//
// The algorithm is Knative's KPA with the Kubernetes HPA's guards:
//
//   - The signal is the time-weighted average of the requests in flight,
//     summed over every gateway, over a stable window (60 s) and a panic
//     window (6 s). Desired = ceil(average / target per replica).
//   - Up fast: when the panic window's average asks for at least
//     PanicThreshold (2×) the current capacity, the service panics: it
//     scales up at once to the panic window's desire and does not scale
//     down until a stable window has passed without panic.
//   - Down slow: a scale-down takes the highest count recommended over the
//     last ScaleDownStabilization (5 min), so a dip does not remove
//     replicas a rise needs again.
//   - A tolerance band (10 %) around the current count: a signal within it
//     changes nothing.
//   - A cooldown per direction after a change in that direction (none by
//     default).
//   - A flap budget: at most FlapBudget changes of direction within
//     FlapWindow; past it the count holds, and Decide says so.
//   - The count stays within [Min, Max].
package autoscale

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Settings are one service's autoscaling parameters.
type Settings struct {
	// Min and Max bound the count (Min ≥ 0, Max ≥ Min, Max > 0).
	Min, Max int
	// TargetInFlight is the requests in flight per replica the count aims
	// at (> 0).
	TargetInFlight float64
	// StableWindow (60 s) and PanicWindow (6 s, shorter than StableWindow)
	// are the windows the signal is averaged over.
	StableWindow, PanicWindow time.Duration
	// PanicThreshold (2.0) is the ratio of the panic window's desire to the
	// current count that starts a panic.
	PanicThreshold float64
	// ScaleDownStabilization (5 min): a scale-down goes to the highest count
	// recommended within it.
	ScaleDownStabilization time.Duration
	// UpCooldown and DownCooldown (0 by default: the panic window leads
	// the way up, the stabilization the way down) follow a change in their
	// direction: no further change that way before they pass.
	UpCooldown, DownCooldown time.Duration
	// Tolerance (0.10) is the band around the current count's capacity in
	// which the signal changes nothing.
	Tolerance float64
	// FlapBudget (2) is how many changes of direction FlapWindow (10 min)
	// allows; 0: no budget.
	FlapBudget int
	FlapWindow time.Duration
}

// DefaultSettings are the defaults of every field but Min, Max and
// TargetInFlight.
func DefaultSettings() Settings {
	return Settings{
		StableWindow: 60 * time.Second, PanicWindow: 6 * time.Second, PanicThreshold: 2,
		ScaleDownStabilization: 5 * time.Minute,
		Tolerance:              0.10, FlapBudget: 2, FlapWindow: 10 * time.Minute,
	}
}

// Validate reports the first setting out of range.
func (s Settings) Validate() error {
	switch {
	case s.Min < 0:
		return fmt.Errorf("min %d: must not be negative", s.Min)
	case s.Max < 1 || s.Max < s.Min:
		return fmt.Errorf("max %d: want at least 1 and at least min %d", s.Max, s.Min)
	case !(s.TargetInFlight > 0) || math.IsInf(s.TargetInFlight, 0):
		return fmt.Errorf("target in flight %g: want more than 0", s.TargetInFlight)
	case s.PanicWindow <= 0 || s.StableWindow <= s.PanicWindow:
		return fmt.Errorf("windows: panic %s, stable %s: want 0 < panic < stable", s.PanicWindow, s.StableWindow)
	case !(s.PanicThreshold > 1):
		return fmt.Errorf("panic threshold %g: want more than 1", s.PanicThreshold)
	case s.ScaleDownStabilization < 0 || s.UpCooldown < 0 || s.DownCooldown < 0 || s.FlapWindow < 0:
		return errors.New("stabilization, cooldowns and flap window must not be negative")
	case s.Tolerance < 0 || s.Tolerance >= 1:
		return fmt.Errorf("tolerance %g: want 0 to less than 1", s.Tolerance)
	case s.FlapBudget < 0:
		return fmt.Errorf("flap budget %d: must not be negative", s.FlapBudget)
	}
	return nil
}

// Sample is the requests in flight for the service summed over every
// gateway, averaged over the bucket ending At (each gateway averages its
// own over time, in small buckets, so a burst between two reads counts).
type Sample struct {
	At       time.Time
	InFlight float64
}

// State is what Decide keeps between calls, for one service. The zero
// value is a service never scaled.
type State struct {
	// Panicked is the last time the panic window asked for PanicThreshold
	// times the capacity (zero: never); the panic lasts a stable window
	// after it.
	Panicked time.Time
	// LastUp and LastDown are the last changes in each direction.
	LastUp, LastDown time.Time
	// Recommendations are the counts recommended within the scale-down
	// stabilization, oldest first.
	Recommendations []Recommendation
	// Turns are the times the direction changed, within the flap window.
	Turns []time.Time
	// LastDirection is +1 after a scale-up, -1 after a scale-down, 0 before any.
	LastDirection int
	// Started, if set, is when this decider began: until a stabilization
	// has passed since, its recommendations do not cover the window, so it
	// does not scale down (a gateway taking over from a failed decider).
	Started time.Time
}

// Recommendation is a count recommended at a time.
type Recommendation struct {
	At    time.Time
	Count int
}

// Decision is what Decide concluded.
type Decision struct {
	// Desired is the count to run: the current one when nothing changes.
	Desired int
	// Stable and Panic are the signal averaged over each window (requests
	// in flight, every gateway summed); Panicking says the panic mode holds.
	Stable, Panic float64
	Panicking     bool
	// Held names the rule that kept the count from changing ("cooldown",
	// "flap budget"), if one did.
	Held string
	// Reason says why, in a sentence an operator reads in a log or a table.
	Reason string
}

// Changed reports whether the decision changes the count.
func (d Decision) Changed(current int) bool { return d.Desired != current }

// Decide returns the count the service should run now, given its samples
// (in time order; those older than the stable window are ignored) and its
// current count, and updates st. It does not act.
func Decide(s Settings, st *State, samples []Sample, current int, now time.Time) Decision {
	stable, okStable := average(samples, now, s.StableWindow)
	panicAvg, okPanic := average(samples, now, s.PanicWindow)
	d := Decision{Desired: current, Stable: stable, Panic: panicAvg}
	if !okStable {
		d.Desired = clamp(current, s)
		d.Reason = "no samples yet"
		if d.Desired != current {
			d.Reason = fmt.Sprintf("no samples yet; the count kept within min %d and max %d", s.Min, s.Max)
			st.record(now, d.Desired, current)
		}
		return d
	}
	if !okPanic {
		panicAvg = stable
	}
	wantStable := desire(stable, s.TargetInFlight)
	wantPanic := desire(panicAvg, s.TargetInFlight)

	// Panic: the short window asks for twice the capacity there is.
	capacity := max(current, 1)
	if float64(wantPanic)/float64(capacity) >= s.PanicThreshold {
		st.Panicked = now
	}
	d.Panicking = !st.Panicked.IsZero() && now.Sub(st.Panicked) < s.StableWindow

	want, why := wantStable, fmt.Sprintf("%.1f in flight over %s for %d replicas at %g each", stable, s.StableWindow, current, s.TargetInFlight)
	if d.Panicking {
		want = max(wantPanic, current) // never down while panicking
		why = fmt.Sprintf("panic: %.1f in flight over %s for %d replicas at %g each", panicAvg, s.PanicWindow, current, s.TargetInFlight)
	} else if within(stable, current, s) {
		want = current
	}
	st.recommend(now, want, s.ScaleDownStabilization)
	if want < current && !d.Panicking {
		// Down slow: the highest recommendation of the stabilization window.
		want = st.highest()
	}
	want = clamp(want, s)
	if want < current && !st.Started.IsZero() && now.Sub(st.Started) < s.ScaleDownStabilization {
		d.Held = "stabilization"
		d.Reason = fmt.Sprintf("down to %d held: deciding since %s only, less than the scale-down stabilization %s; %s",
			want, st.Started.Format(time.TimeOnly), s.ScaleDownStabilization, why)
		return d
	}

	switch {
	case want == current:
		d.Reason = "steady: " + why
		return d
	case want > current && now.Sub(st.LastUp) < s.UpCooldown && !st.LastUp.IsZero():
		d.Held = "cooldown"
		d.Reason = fmt.Sprintf("up to %d held: cooldown after the scale-up at %s; %s", want, st.LastUp.Format(time.TimeOnly), why)
		return d
	case want < current && now.Sub(st.LastDown) < s.DownCooldown && !st.LastDown.IsZero():
		d.Held = "cooldown"
		d.Reason = fmt.Sprintf("down to %d held: cooldown after the scale-down at %s; %s", want, st.LastDown.Format(time.TimeOnly), why)
		return d
	}
	dir := 1
	if want < current {
		dir = -1
	}
	st.forgetTurns(now, s.FlapWindow)
	if s.FlapBudget > 0 && st.LastDirection != 0 && dir != st.LastDirection && len(st.Turns) >= s.FlapBudget && !d.Panicking {
		d.Held = "flap budget"
		d.Reason = fmt.Sprintf("%d → %d held: flap budget spent (%d changes of direction within %s); %s",
			current, want, len(st.Turns), s.FlapWindow, why)
		return d
	}
	d.Desired = want
	d.Reason = fmt.Sprintf("%d → %d: %s", current, want, why)
	st.record(now, want, current)
	return d
}

// record notes a change from current to want.
func (st *State) record(now time.Time, want, current int) {
	dir := 1
	if want < current {
		dir = -1
		st.LastDown = now
	} else {
		st.LastUp = now
	}
	if st.LastDirection != 0 && dir != st.LastDirection {
		st.Turns = append(st.Turns, now)
	}
	st.LastDirection = dir
}

func (st *State) recommend(now time.Time, n int, keep time.Duration) {
	i := 0
	for i < len(st.Recommendations) && now.Sub(st.Recommendations[i].At) > keep {
		i++
	}
	st.Recommendations = append(st.Recommendations[i:], Recommendation{At: now, Count: n})
}

func (st *State) highest() int {
	n := 0
	for _, r := range st.Recommendations {
		n = max(n, r.Count)
	}
	return n
}

func (st *State) forgetTurns(now time.Time, window time.Duration) {
	i := 0
	for i < len(st.Turns) && now.Sub(st.Turns[i]) > window {
		i++
	}
	st.Turns = st.Turns[i:]
}

// average is the time-weighted average of the samples within window before
// now: each sample stands for the time since the one before it (the first
// for the bucket before it, as long as the next's). ok is false without a
// sample in the window.
func average(samples []Sample, now time.Time, window time.Duration) (avg float64, ok bool) {
	from := now.Add(-window)
	var sum, weight float64
	var prev time.Time
	for i, smp := range samples {
		if smp.At.After(now) {
			break
		}
		start := prev
		if i == 0 || start.IsZero() {
			start = smp.At.Add(-bucketOf(samples, i))
		}
		prev = smp.At
		if !smp.At.After(from) {
			continue
		}
		if start.Before(from) {
			start = from
		}
		w := smp.At.Sub(start).Seconds()
		if w <= 0 {
			continue
		}
		sum += smp.InFlight * w
		weight += w
	}
	if weight == 0 {
		return 0, false
	}
	return sum / weight, true
}

// bucketOf is how long sample i stands for when no sample precedes it: as
// long as the gap to the next one, or a second.
func bucketOf(samples []Sample, i int) time.Duration {
	if i+1 < len(samples) {
		if d := samples[i+1].At.Sub(samples[i].At); d > 0 {
			return d
		}
	}
	return time.Second
}

func desire(inflight, target float64) int {
	return int(math.Ceil(inflight/target - 1e-9))
}

// within reports whether the signal is within the tolerance band of the
// current count's capacity.
func within(inflight float64, current int, s Settings) bool {
	if current == 0 {
		return inflight == 0
	}
	ratio := inflight / (float64(current) * s.TargetInFlight)
	return math.Abs(ratio-1) <= s.Tolerance || desire(inflight, s.TargetInFlight) == current
}

func clamp(n int, s Settings) int {
	return min(max(n, s.Min), s.Max)
}
