package canary

import "math"

// errorTest is the one-sided p-value of Fisher's exact test that the canary's
// error probability is higher than the baseline's: with k1 errors in n1
// canary requests and k2 in n2 baseline requests, the chance that, if every
// request had the same chance of failing, at least k1 of the k1+k2 errors
// would have landed on the canary (a hypergeometric tail). It is exact for
// the handful of errors a healthy service makes, where the normal
// approximation of a two-proportion z-test is not. It is 1 when there are
// no requests or no errors.
func errorTest(k1, n1, k2, n2 uint64) float64 {
	if n1 == 0 || n2 == 0 {
		return 1
	}
	p := fisherTail(k1, n1, k2, n2)
	if !(p >= 0 && p <= 1) {
		// Counts past 2^53 requests, beyond float64's integers; no step
		// comes near, but a p-value must stay a probability.
		return 1
	}
	return p
}

// fisherTailSteps bounds the terms summed. Away from the mode they shrink
// ever faster, so the sum stops within a few tens of standard deviations,
// long before this even with requests in the billions; the bound only keeps
// absurd counts from looping.
const fisherTailSteps = 1 << 22

func fisherTail(k1, n1, k2, n2 uint64) float64 {
	x := float64(k1)
	draws := float64(n1)
	total := float64(n1) + float64(n2)
	bad := float64(k1) + float64(k2)
	good := total - bad
	lo := max(0, draws-good)
	if x <= lo {
		return 1
	}
	mode := math.Floor((draws + 1) * (bad + 1) / (total + 2))
	pmf := func(x float64) float64 {
		return math.Exp(lchoose(bad, x) + lchoose(good, draws-x) - lchoose(total, draws))
	}
	// Sum the tail that lies away from the mode, where the terms shrink
	// geometrically and the sum stops as soon as they are negligible.
	if x > mode {
		hi := min(bad, draws)
		var sum float64
		for term, i := pmf(x), 0; ; x, i = x+1, i+1 {
			sum += term
			if x >= hi || term < sum*1e-17 || i == fisherTailSteps {
				break
			}
			term *= (bad - x) * (draws - x) / ((x + 1) * (good - draws + x + 1))
		}
		return min(sum, 1)
	}
	var lower float64
	x--
	for term, i := pmf(x), 0; ; x, i = x-1, i+1 {
		lower += term
		if x <= lo || term < lower*1e-17 || i == fisherTailSteps {
			break
		}
		term *= x * (good - draws + x) / ((bad - x + 1) * (draws - x + 1))
	}
	return min(max(1-lower, 0), 1)
}

// lchoose is log(n choose k).
func lchoose(n, k float64) float64 {
	a, _ := math.Lgamma(n + 1)
	b, _ := math.Lgamma(k + 1)
	c, _ := math.Lgamma(n - k + 1)
	return a - b - c
}
