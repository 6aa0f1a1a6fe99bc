package canary

import (
	"cmp"
	"math"
	"slices"
)

// exactMax is the largest sample, on either side, for which MannWhitney
// computes an exact p-value (when there are no ties). Beyond it the normal
// approximation is within a fraction of a percent of the exact value, and
// the exact distribution's cost (n1²·n2²/4 steps) stops being negligible.
const exactMax = 20

// MannWhitney tests whether a is stochastically greater than b (for
// latencies: whether a is slower), by the Mann–Whitney U test (Mann and
// Whitney 1947; Wilcoxon's rank-sum test).
//
// u is the number of pairs (x from a, y from b) with x > y, ties counting one
// half: 0 when every value of a is below every value of b, len(a)·len(b) when
// above, half that when the samples are alike. z is u's distance from that
// middle in standard deviations, by the normal approximation with the tie
// correction and a continuity correction of 0.5 (as scipy.stats.mannwhitneyu
// with method="asymptotic", alternative="greater"). p is the one-sided
// p-value: the chance that u would be at least this large if a and b came from
// the same distribution. It is exact (the permutation distribution of u)
// when there are no ties and neither sample has more than 20 values, and
// from z otherwise. When all values are equal, u is the middle, z is 0 and p
// is 1: no ordering is evidence of nothing.
//
// ok is false, and the other results zero, when a or b is empty or holds a
// NaN. Judge does not use the test on fewer than MinPoints values per arm.
func MannWhitney(a, b []float64) (u, z, p float64, ok bool) {
	if len(a) == 0 || len(b) == 0 || slices.ContainsFunc(a, math.IsNaN) || slices.ContainsFunc(b, math.IsNaN) {
		return 0, 0, 0, false
	}
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	r := rankTest(a, b)
	return r.u, r.z, r.p, true
}

type rankResult struct{ u, z, p float64 }

// rankTest is MannWhitney on sorted, non-empty, NaN-free samples; it
// allocates nothing unless the exact distribution is used.
func rankTest[T cmp.Ordered](a, b []T) rankResult {
	n1, n2 := float64(len(a)), float64(len(b))
	var u, tieSum float64
	groups := 0
	i, j := 0, 0
	// Walk both sorted samples as one, a group of equal values at a time:
	// each value of a in the group beats the b's already passed and ties
	// with the b's in the group.
	for i < len(a) || j < len(b) {
		var v T
		if j == len(b) || (i < len(a) && a[i] <= b[j]) {
			v = a[i]
		} else {
			v = b[j]
		}
		below := float64(j)
		ca, cb := 0, 0
		for ; i < len(a) && a[i] == v; i++ {
			ca++
		}
		for ; j < len(b) && b[j] == v; j++ {
			cb++
		}
		u += float64(ca) * (below + float64(cb)/2)
		t := float64(ca + cb)
		tieSum += t*t*t - t
		groups++
	}
	if groups == 1 {
		return rankResult{u: u, z: 0, p: 1}
	}
	n := n1 + n2
	mean := n1 * n2 / 2
	variance := n1 * n2 / 12 * ((n + 1) - tieSum/(n*(n-1)))
	z := (u - mean - 0.5) / math.Sqrt(variance)
	p := 0.5 * math.Erfc(z/math.Sqrt2)
	if tieSum == 0 && len(a) <= exactMax && len(b) <= exactMax {
		p = exactUpperTail(len(a), len(b), int(u))
	}
	return rankResult{u: u, z: z, p: p}
}

// exactUpperTail is P(U >= u) for samples of m and n distinct values drawn
// from one distribution. With P[i][j] the distribution of U for i and j
// values, the largest of the i+j values belongs to the first sample with
// probability i/(i+j), and then beats all j others:
//
//	P[i][j](u) = i/(i+j)·P[i-1][j](u-j) + j/(i+j)·P[i][j-1](u)
//
// (Mann and Whitney 1947), kept as probabilities so that nothing overflows.
func exactUpperTail(m, n, u int) float64 {
	prev := make([][]float64, n+1) // P[i-1][j] for j = 0..n
	cur := make([][]float64, n+1)
	for j := range prev {
		prev[j] = []float64{1}
	}
	for i := 1; i <= m; i++ {
		cur[0] = []float64{1}
		for j := 1; j <= n; j++ {
			d := make([]float64, i*j+1)
			wi, wj := float64(i)/float64(i+j), float64(j)/float64(i+j)
			for v, q := range prev[j] {
				d[v+j] += wi * q
			}
			for v, q := range cur[j-1] {
				d[v] += wj * q
			}
			cur[j] = d
		}
		prev, cur = cur, prev
	}
	dist := prev[n]
	var p float64
	for v := max(u, 0); v < len(dist); v++ {
		p += dist[v]
	}
	return min(p, 1)
}
