package canary

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestCriteriaValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Criteria
		err  string // "" when valid
	}{
		{"default", DefaultCriteria(), ""},
		{"zero value", Criteria{}, ""},
		{"bounds", Criteria{MaxErrorRate: 1, MaxP99Ratio: 1.0001, MinRequests: MinPoints, Alpha: 0.2}, ""},
		{"negative error rate", Criteria{MaxErrorRate: -0.01},
			"max error rate -0.01 out of range 0-1 (a fraction: 0.01 is 1 %)"},
		{"error rate as a percentage", Criteria{MaxErrorRate: 5},
			"max error rate 5 out of range 0-1 (a fraction: 0.01 is 1 %)"},
		{"NaN error rate", Criteria{MaxErrorRate: math.NaN()}, "max error rate NaN out of range"},
		{"ratio 1", Criteria{MaxP99Ratio: 1},
			"max p99 ratio 1 must be above 1 (1.2 allows a p99 20 % above the baseline's), or 0 for no latency check"},
		{"ratio below 1", Criteria{MaxP99Ratio: 0.5}, "max p99 ratio 0.5 must be above 1"},
		{"negative ratio", Criteria{MaxP99Ratio: -2}, "max p99 ratio -2 must be above 1"},
		{"infinite ratio", Criteria{MaxP99Ratio: math.Inf(1)}, "max p99 ratio +Inf must be above 1"},
		{"few requests", Criteria{MinRequests: 10},
			"min requests 10 below 50: fewer per arm cannot tell a version from noise"},
		{"negative requests", Criteria{MinRequests: -1}, "min requests -1 below 50"},
		{"negative alpha", Criteria{Alpha: -0.01}, "alpha -0.01 out of range: above 0 and at most 0.2"},
		{"alpha 0.5", Criteria{Alpha: 0.5}, "alpha 0.5 out of range"},
		{"NaN alpha", Criteria{Alpha: math.NaN()}, "alpha NaN out of range"},
		{"several", Criteria{MaxErrorRate: 2, Alpha: 1}, "max error rate 2 out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.Validate()
			if tc.err == "" {
				assert.NoError(t, err)
				return
			}
			assert.ErrorContains(t, err, tc.err)
		})
	}
	err := Criteria{MaxErrorRate: 2, Alpha: 1}.Validate()
	assert.ErrorContains(t, err, "alpha 1 out of range", "every field is reported")
}

func TestCriteriaDefaults(t *testing.T) {
	c := Criteria{}.withDefaults()
	assert.Equal(t, DefaultMinRequests, c.MinRequests)
	assert.Equal(t, DefaultAlpha, c.Alpha)
	assert.Zero(t, c.MaxP99Ratio, "latency stays off")
	assert.Zero(t, c.MaxErrorRate)
}
