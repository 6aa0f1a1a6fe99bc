package canary

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMannWhitneyReferences checks MannWhitney against values worked out by
// hand (the arithmetic in each comment) or published by another
// implementation.
func TestMannWhitneyReferences(t *testing.T) {
	for _, tc := range []struct {
		name    string
		a, b    []float64
		u, z, p float64
	}{
		{
			// Every a above every b: u = 3·3 = 9. Exact: 1 of the C(6,3) = 20
			// equally likely rankings puts a on top, p = 1/20. z: mean 4.5,
			// variance 3·3·7/12 = 5.25, z = (9-4.5-0.5)/√5.25.
			name: "a above b, exact", a: []float64{4, 5, 6}, b: []float64{1, 2, 3},
			u: 9, z: 1.7457431218879391, p: 1.0 / 20,
		},
		{
			// The mirror image: u = 0, and u >= 0 always, p = 1.
			name: "a below b, exact", a: []float64{1, 2, 3}, b: []float64{4, 5, 6},
			u: 0, z: -1.7457431218879391 - 2*0.5/math.Sqrt(5.25), p: 1,
		},
		{
			// Interleaved: 2 beats 1, 4 beats 1 and 3, 6 beats all three, u = 6.
			// The 20 rankings of 3+3 values give u = 0..9 with counts
			// 1,1,2,3,3,3,3,2,1,1, so P(u >= 6) = (3+2+1+1)/20.
			name: "interleaved, exact", a: []float64{2, 4, 6}, b: []float64{1, 3, 5},
			u: 6, z: (6 - 4.5 - 0.5) / math.Sqrt(5.25), p: 7.0 / 20,
		},
		{
			// Ties: 1 beats nothing; each 2 ties one b (2·0.5); 3 beats the
			// b 2 and ties two 3s (1+1): u = 3. Tie groups of 3 (the 2s and
			// the 3s): Σ(t³-t) = 48, N = 8, variance 16/12·(9 - 48/56) =
			// 10.857142857142856, z = (3-8-0.5)/√10.857…, p = 1-Φ(z).
			name: "ties, normal", a: []float64{1, 2, 2, 3}, b: []float64{2, 3, 3, 4},
			u: 3, z: -1.669186691333931, p: 0.9524598065992065,
		},
		{
			// 50 against 50, no overlap: u = 2500, variance 2500·101/12,
			// z = 1249.5/√21041.67 = 8.6138…, p = Φ(-z) = erfc(z/√2)/2.
			name: "50 above 50, normal", a: seq(101, 150), b: seq(1, 50),
			u: 2500, z: 8.613827934383663, p: 3.5330359651945145e-18,
		},
		{
			// ClickHouse's mannWhitneyUTest test (tests/queries/0_stateless/
			// 01560_mann_whitney.sql) expects, two-sided with continuity
			// correction as scipy, U = 223 and p = 0.5426959774289482; the
			// one-sided p of the larger U is half of it. By hand: ties 530,
			// 180 (within a), 111, 261 (within b), Σ(t³-t) = 24.
			name: "ClickHouse reference, ties, normal",
			a: []float64{310, 195, 530, 155, 530, 245, 385, 450, 465, 545,
				170, 180, 125, 180, 230, 75, 430, 480, 495, 295},
			b: []float64{116, 171, 176, 421, 111, 326, 481, 111, 346, 441,
				261, 411, 206, 521, 456, 446, 296, 51, 426, 261},
			u: 223, z: 0.6087412244775101, p: 0.5426959774289482 / 2,
		},
		{
			// All equal: u is the middle (3·2/2), no ordering, p = 1.
			name: "all equal", a: []float64{5, 5, 5}, b: []float64{5, 5},
			u: 3, z: 0, p: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, z, p, ok := MannWhitney(tc.a, tc.b)
			require.True(t, ok)
			assert.Equal(t, tc.u, u, "u")
			assert.InDelta(t, tc.z, z, 1e-12, "z")
			assert.InEpsilon(t, tc.p, p, 1e-9, "p")
		})
	}
}

func TestMannWhitneyRefuses(t *testing.T) {
	for name, in := range map[string][2][]float64{
		"a empty":  {nil, {1}},
		"b empty":  {{1}, {}},
		"NaN in a": {{1, math.NaN()}, {1, 2}},
		"NaN in b": {{1, 2}, {math.NaN()}},
	} {
		u, z, p, ok := MannWhitney(in[0], in[1])
		assert.False(t, ok, name)
		assert.Zero(t, u+z+p, name)
	}
}

func TestMannWhitneyLeavesInputs(t *testing.T) {
	a, b := []float64{3, 1, 2}, []float64{9, 7, 8}
	MannWhitney(a, b)
	assert.Equal(t, []float64{3, 1, 2}, a)
	assert.Equal(t, []float64{9, 7, 8}, b)
}

// TestExactDistribution checks the recurrence against the counts of the 20
// rankings of 3+3 values (listed by hand above) and against itself: the
// tail from 0 is 1, and P(u >= k) = P(u <= mn-k) by symmetry.
func TestExactDistribution(t *testing.T) {
	counts := []float64{1, 1, 2, 3, 3, 3, 3, 2, 1, 1}
	for u := range counts {
		var want float64
		for _, c := range counts[u:] {
			want += c / 20
		}
		assert.InDelta(t, want, exactUpperTail(3, 3, u), 1e-15, "u=%d", u)
	}
	for _, mn := range [][2]int{{1, 1}, {1, 7}, {5, 2}, {20, 20}, {13, 17}} {
		m, n := mn[0], mn[1]
		assert.InDelta(t, 1, exactUpperTail(m, n, 0), 1e-12)
		for k := 1; k <= m*n; k++ {
			assert.InDelta(t, 1-exactUpperTail(m, n, m*n-k+1), exactUpperTail(m, n, k), 1e-12, "m=%d n=%d k=%d", m, n, k)
		}
	}
}

// TestExactMeetsNormal: at 20 against 20, where the exact path ends, the
// normal approximation with continuity correction agrees within 0.005 over
// the whole range, so the switch makes no jump.
func TestExactMeetsNormal(t *testing.T) {
	for u := 0; u <= 400; u += 5 {
		z := (float64(u) - 200 - 0.5) / math.Sqrt(20*20*41/12.0)
		normal := 0.5 * math.Erfc(z/math.Sqrt2)
		assert.InDelta(t, normal, exactUpperTail(20, 20, u), 0.005, "u=%d", u)
	}
}

// TestMannWhitneyCalibrated: with both samples from one distribution, p is
// below 0.05 about 5 % of the time (one-sided, so not in both directions).
func TestMannWhitneyCalibrated(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const runs = 2000
	below := 0
	a, b := make([]float64, 60), make([]float64, 80)
	for range runs {
		for i := range a {
			a[i] = math.Round(r.ExpFloat64() * 20) // rounded: ties, as a clock makes
		}
		for i := range b {
			b[i] = math.Round(r.ExpFloat64() * 20)
		}
		if _, _, p, _ := MannWhitney(a, b); p < 0.05 {
			below++
		}
	}
	// Binomial(2000, 0.05): mean 100, sd 9.7.
	assert.InDelta(t, 100, below, 40)
}

func seq(from, to float64) []float64 {
	var s []float64
	for v := from; v <= to; v++ {
		s = append(s, v)
	}
	return s
}
