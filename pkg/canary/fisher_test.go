package canary

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestErrorTest checks Fisher's one-sided test against hypergeometric tails
// counted by hand.
func TestErrorTest(t *testing.T) {
	for _, tc := range []struct {
		name           string
		k1, n1, k2, n2 uint64
		p              float64
	}{
		// Fisher's lady tasting tea: 4 cups of each kind, 3 of her 4 picks
		// right. P(X >= 3) = (C(4,3)·C(4,1) + C(4,4)·C(4,0)) / C(8,4) = 17/70.
		{"tea", 3, 4, 1, 4, 17.0 / 70},
		// The lower branch: P(X >= 1) = 1 - C(4,0)·C(4,4)/C(8,4) = 69/70.
		{"lower tail", 1, 4, 3, 4, 69.0 / 70},
		// 3 errors, all on the canary, 200 requests each: every error landed
		// on the canary, C(200,3)/C(400,3) = 200·199·198/(400·399·398) = 33/266.
		{"3 of 200 against 0 of 200", 3, 200, 0, 200, 33.0 / 266},
		// 52 of 1000 against none: C(1000,52)/C(2000,52), by Python's exact
		// integers: 1.1242379366361543e-16.
		{"52 of 1000 against 0 of 1000", 52, 1000, 0, 1000, 1.1242379366361543e-16},
		{"no errors", 0, 200, 0, 200, 1},
		{"no canary errors", 0, 200, 5, 200, 1},
		{"no canary requests", 0, 0, 5, 200, 1},
		{"no baseline requests", 5, 200, 0, 0, 1},
		{"all failed", 200, 200, 300, 300, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.InEpsilon(t, tc.p, errorTest(tc.k1, tc.n1, tc.k2, tc.n2), 1e-9)
		})
	}
}

// TestErrorTestLarge: equal rates on 100,000 requests each sit in the middle
// (P(X >= mean) is a little over one half), and absurd counts stay a
// probability.
func TestErrorTestLarge(t *testing.T) {
	p := errorTest(1000, 100_000, 1000, 100_000)
	assert.True(t, p > 0.5 && p < 0.52, "p = %v", p)
	assert.Less(t, errorTest(1300, 100_000, 1000, 100_000), 1e-8)
	for _, k := range []uint64{0, 1, 1 << 40, 1<<63 - 1} {
		p := errorTest(k, 1<<63, 1<<62, 1<<63)
		assert.True(t, p >= 0 && p <= 1, "p = %v", p)
	}
}
