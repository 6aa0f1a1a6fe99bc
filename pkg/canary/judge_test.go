package canary

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const ms = time.Millisecond

// latency draws from base plus an exponential jitter of the given mean,
// reproducibly from seed.
func latency(seed uint64, base, jitter time.Duration) func() time.Duration {
	r := rand.New(rand.NewPCG(seed, 0))
	return func() time.Duration { return base + time.Duration(r.ExpFloat64()*float64(jitter)) }
}

// constant always answers d.
func constant(d time.Duration) func() time.Duration { return func() time.Duration { return d } }

// measured is an arm of the given requests, the first errors of them
// failed, each answered in next(), the latencies of the others kept exactly.
func measured(requests, errors int, next func() time.Duration) Arm {
	lat := make([]time.Duration, 0, requests-errors)
	for i := range requests {
		if d := next(); i >= errors {
			lat = append(lat, d)
		}
	}
	slices.Sort(lat)
	return Arm{requests: uint64(requests), errors: uint64(errors), latencies: lat}
}

// tailed is next, but one request in every is slower by factor.
func tailed(next func() time.Duration, every int, factor time.Duration) func() time.Duration {
	i := 0
	return func() time.Duration {
		i++
		if i%every == 0 {
			return next() * factor
		}
		return next()
	}
}

func TestJudge(t *testing.T) {
	def := DefaultCriteria()
	for _, tc := range []struct {
		name             string
		canary, baseline Arm
		c                Criteria
		result           Result
		reason           []string
	}{
		{
			name:     "pass: alike",
			canary:   measured(1000, 2, latency(1, 10*ms, ms)),
			baseline: measured(1000, 1, latency(2, 10*ms, ms)),
			c:        def, result: Pass,
			reason: []string{"canary error rate 0.2 % (2 of 1000) within the 1 % limit; baseline 0.1 % (1 of 1000)",
				"canary p99 ", "within the 1.2 × limit"},
		},
		{
			name:     "fail: errors",
			canary:   measured(1000, 52, latency(1, 10*ms, ms)),
			baseline: measured(1000, 0, latency(2, 10*ms, ms)),
			c:        def, result: Fail,
			reason: []string{"canary error rate 5.2 % (52 of 1000) above the 1 % limit; baseline 0.0 % (0 of 1000); " +
				"worse beyond chance (p = 1.1e-16, alpha 0.01)"},
		},
		{
			name:     "fail: 50 ms slower on 10 ms",
			canary:   measured(1000, 0, latency(1, 60*ms, ms)),
			baseline: measured(1000, 0, latency(2, 10*ms, ms)),
			c:        def, result: Fail,
			reason: []string{"canary p99 6", "above the 1.2 × limit; slower beyond chance (rank test p < 1e-16, alpha 0.01)"},
		},
		{
			name:     "pass: slower but within the ratio",
			canary:   measured(1000, 0, latency(1, 11*ms, ms)),
			baseline: measured(1000, 0, latency(2, 10*ms, ms)),
			c:        def, result: Pass,
		},
		{
			name:     "pass: twice as slow at a millisecond, within the slack",
			canary:   measured(1000, 0, latency(1, 2*ms, ms/10)),
			baseline: measured(1000, 0, latency(2, ms, ms/10)),
			c:        Criteria{MaxErrorRate: 0.01, MaxP99Ratio: 1.2, P99Slack: 5 * ms}, result: Pass,
			reason: []string{"above the 1.2 × limit but only 985µs slower, within the 5ms slack"},
		},
		{
			name:     "fail: twice as slow at a millisecond, no slack",
			canary:   measured(1000, 0, latency(1, 2*ms, ms/10)),
			baseline: measured(1000, 0, latency(2, ms, ms/10)),
			c:        Criteria{MaxErrorRate: 0.01, MaxP99Ratio: 1.2}, result: Fail,
		},
		{
			name:     "fail: 50 ms slower on 10 ms, beyond the slack",
			canary:   measured(1000, 0, latency(1, 60*ms, ms)),
			baseline: measured(1000, 0, latency(2, 10*ms, ms)),
			c:        Criteria{MaxErrorRate: 0.01, MaxP99Ratio: 1.2, P99Slack: 5 * ms}, result: Fail,
		},
		{
			name:     "pass: latency off",
			canary:   measured(1000, 0, latency(1, 60*ms, ms)),
			baseline: measured(1000, 0, latency(2, 10*ms, ms)),
			c:        Criteria{MaxErrorRate: 0.01}, result: Pass,
		},
		{
			name:     "inconclusive: few canary requests",
			canary:   measured(12, 0, constant(ms)),
			baseline: measured(340, 0, constant(ms)),
			c:        def, result: Inconclusive,
			reason: []string{"too few requests to judge: canary 12, baseline 340; each arm needs 200"},
		},
		{
			name:     "inconclusive: no canary traffic, even all errors on the baseline",
			baseline: measured(1000, 1000, constant(ms)),
			c:        def, result: Inconclusive,
			reason: []string{"too few requests to judge: canary 0, baseline 1000"},
		},
		{
			name: "inconclusive: no requests at all", c: def, result: Inconclusive,
		},
		{
			name:     "inconclusive: zero criteria default to 200 requests",
			canary:   measured(150, 0, constant(ms)),
			baseline: measured(150, 0, constant(ms)),
			result:   Inconclusive, reason: []string{"each arm needs 200"},
		},
		{
			name:     "inconclusive: over the error limit, not yet significant",
			canary:   measured(200, 3, latency(1, 10*ms, ms)),
			baseline: measured(200, 0, latency(2, 10*ms, ms)),
			c:        def, result: Inconclusive,
			reason: []string{"canary error rate 1.5 % (3 of 200) above the 1 % limit; baseline 0.0 % (0 of 200); " +
				"not yet worse beyond chance (p = 0.12, alpha 0.01)"},
		},
		{
			name:     "inconclusive: the baseline errs as much",
			canary:   measured(5000, 250, latency(1, 10*ms, ms)),
			baseline: measured(5000, 260, latency(2, 10*ms, ms)),
			c:        def, result: Inconclusive,
			reason: []string{"canary error rate 5.0 % (250 of 5000) above the 1 % limit; baseline 5.2 % (260 of 5000)"},
		},
		{
			// 1 request in 50 ten times slower: the p99 triples, but the
			// ranks barely move. Not a pass.
			name:     "inconclusive: slower tail only",
			canary:   measured(1000, 0, tailed(latency(1, 10*ms, ms), 50, 10)),
			baseline: measured(1000, 0, latency(2, 10*ms, ms)),
			c:        def, result: Inconclusive,
			reason: []string{"canary p99 109ms is 7.56 × the baseline's 14.4ms, above the 1.2 × limit; not yet slower beyond chance (rank test p = 0.27, alpha 0.01)"},
		},
		{
			name:     "inconclusive: errors allowed, too few latencies",
			canary:   measured(1000, 980, constant(ms)),
			baseline: measured(1000, 980, constant(ms)),
			c:        Criteria{MaxErrorRate: 1, MaxP99Ratio: 1.2}, result: Inconclusive,
			reason: []string{"too few latencies of successful requests to compare: canary 20, baseline 20; each arm needs 50"},
		},
		{
			name:     "fail: mostly errors, latency not needed",
			canary:   measured(1000, 990, constant(ms)),
			baseline: measured(1000, 0, constant(ms)),
			c:        def, result: Fail,
			reason: []string{"canary error rate 99.0 % (990 of 1000) above the 1 % limit"},
		},
		{
			name:     "fail: both errors and latency",
			canary:   measured(1000, 100, latency(1, 60*ms, ms)),
			baseline: measured(1000, 0, latency(2, 10*ms, ms)),
			c:        def, result: Fail,
			reason: []string{"canary error rate 10.0 %", "; canary p99 "},
		},
		{
			name:     "pass: all latencies equal",
			canary:   measured(1000, 0, constant(10*ms)),
			baseline: measured(1000, 0, constant(10*ms)),
			c:        def, result: Pass,
			reason: []string{"canary p99 10ms is 1 × the baseline's 10ms, within the 1.2 × limit"},
		},
		{
			name:     "pass: zero latencies on both arms",
			canary:   measured(1000, 0, constant(0)),
			baseline: measured(1000, 0, constant(0)),
			c:        def, result: Pass,
			reason: []string{"canary p99 0s is 0 × the baseline's 0s"},
		},
		{
			name:     "fail: baseline p99 zero, canary slower",
			canary:   measured(1000, 0, constant(10*ms)),
			baseline: measured(1000, 0, constant(0)),
			c:        def, result: Fail,
			reason: []string{"canary p99 10ms is 10000 × the baseline's 0s"},
		},
		{
			name:     "fail: any error when the limit is 0 and the baseline has none",
			canary:   measured(5000, 12, constant(ms)),
			baseline: measured(5000, 0, constant(ms)),
			c:        Criteria{}, result: Fail,
			reason: []string{"(12 of 5000) above the 0 % limit"},
		},
		{
			name:     "fail: invalid criteria",
			canary:   measured(1000, 0, constant(ms)),
			baseline: measured(1000, 0, constant(ms)),
			c:        Criteria{MaxErrorRate: 5, MaxP99Ratio: 0.5}, result: Fail,
			reason: []string{"invalid criteria: max error rate 5 out of range 0-1 (a fraction: 0.01 is 1 %); " +
				"max p99 ratio 0.5 must be above 1"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := Judge(tc.canary, tc.baseline, tc.c)
			assert.Equal(t, tc.result, v.Result, v.Reason)
			for _, r := range tc.reason {
				assert.Contains(t, v.Reason, r)
			}
			requireFinite(t, v.Figures)
		})
	}
}

func TestJudgeFigures(t *testing.T) {
	canary, err := NewArm(400, 40, constRun(360, 30*ms))
	require.NoError(t, err)
	baseline, err := NewArm(400, 0, constRun(400, 10*ms))
	require.NoError(t, err)
	v := Judge(canary, baseline, DefaultCriteria())
	assert.Equal(t, Fail, v.Result)
	f := v.Figures
	assert.Equal(t, ArmFigures{Requests: 400, Errors: 40, ErrorRate: 0.1, Latencies: 360, P50: 30 * ms, P99: 30 * ms}, f.Canary)
	assert.Equal(t, ArmFigures{Requests: 400, Latencies: 400, P50: 10 * ms, P99: 10 * ms}, f.Baseline)
	assert.Equal(t, 3.0, f.P99Ratio)
	assert.Less(t, f.ErrorP, 1e-10)
	assert.Less(t, f.LatencyP, 1e-100)

	empty := Judge(Arm{}, Arm{}, DefaultCriteria()).Figures
	assert.Equal(t, Figures{ErrorP: 1, LatencyP: 1}, empty)
}

func constRun(n int, d time.Duration) []time.Duration {
	s := make([]time.Duration, n)
	for i := range s {
		s[i] = d
	}
	return s
}

func requireFinite(t *testing.T, f Figures) {
	t.Helper()
	for name, v := range map[string]float64{
		"canary error rate": f.Canary.ErrorRate, "baseline error rate": f.Baseline.ErrorRate,
		"p99 ratio": f.P99Ratio, "error p": f.ErrorP, "latency p": f.LatencyP,
	} {
		require.False(t, math.IsNaN(v) || math.IsInf(v, 0), "%s is %v", name, v)
		require.GreaterOrEqual(t, v, 0.0, name)
	}
	for name, p := range map[string]float64{
		"canary error rate": f.Canary.ErrorRate, "baseline error rate": f.Baseline.ErrorRate,
		"error p": f.ErrorP, "latency p": f.LatencyP,
	} {
		require.LessOrEqual(t, p, 1.0, name)
	}
}
