package canary

import (
	"fmt"
	"math"
	"time"
)

// percent writes a rate as a percentage with one decimal, or two
// significant digits when it would read 0.0 without being zero.
func percent(rate float64) string {
	p := rate * 100
	if p > 0 && p < 0.05 {
		return fmt.Sprintf("%.2g %%", p)
	}
	return fmt.Sprintf("%.1f %%", p)
}

// short writes d rounded to three significant digits: 61.2ms, 1.23s.
func short(d time.Duration) string {
	if d < 1000 {
		return d.String()
	}
	unit := time.Duration(math.Pow10(int(math.Log10(float64(d))) - 2))
	return d.Round(unit).String()
}

// pText writes a p-value with two significant digits; below 1e-16, where
// float64 sums have no digits left to give, it says so.
func pText(p float64) string {
	if p < 1e-16 {
		return "p < 1e-16"
	}
	return fmt.Sprintf("p = %.2g", p)
}

// ratioText writes a ratio with three significant digits, without an
// exponent.
func ratioText(r float64) string {
	if r >= 1000 {
		return fmt.Sprintf("%.0f", r)
	}
	return fmt.Sprintf("%.3g", r)
}
