package canary

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestQuantile(t *testing.T) {
	ms := time.Millisecond
	a, err := NewArm(4, 0, []time.Duration{40 * ms, 10 * ms, 30 * ms, 20 * ms})
	require.NoError(t, err)
	// Linear between ranks (numpy's default): h = q·(n-1).
	for q, want := range map[float64]time.Duration{
		0:    10 * ms,
		0.5:  25 * ms,                      // h = 1.5: halfway from 20 to 30
		0.99: 39*ms + 700*time.Microsecond, // h = 2.97: 30 + 0.97·10
		1:    40 * ms,
	} {
		got, ok := a.Quantile(q)
		assert.True(t, ok)
		assert.Equal(t, want, got, "q=%v", q)
	}
	for _, q := range []float64{-0.01, 1.01, math.NaN(), math.Inf(1)} {
		_, ok := a.Quantile(q)
		assert.False(t, ok, "q=%v", q)
	}
	_, ok := Arm{}.Quantile(0.5)
	assert.False(t, ok, "no latencies")

	one, err := NewArm(1, 0, []time.Duration{7})
	require.NoError(t, err)
	for _, q := range []float64{0, 0.5, 1} {
		got, _ := one.Quantile(q)
		assert.Equal(t, time.Duration(7), got)
	}

	huge, err := NewArm(2, 0, []time.Duration{0, math.MaxInt64})
	require.NoError(t, err)
	for _, q := range []float64{0.5, 0.999999999, 1} {
		got, ok := huge.Quantile(q)
		assert.True(t, ok)
		assert.GreaterOrEqual(t, got, time.Duration(0), "q=%v", q)
	}
}

func TestErrorRate(t *testing.T) {
	r, ok := Arm{}.ErrorRate()
	assert.False(t, ok)
	assert.Zero(t, r)

	a, err := NewArm(1000, 52, nil)
	require.NoError(t, err)
	r, ok = a.ErrorRate()
	assert.True(t, ok)
	assert.Equal(t, 0.052, r)
}

func TestNewArm(t *testing.T) {
	_, err := NewArm(3, 4, nil)
	assert.EqualError(t, err, "arm: 4 errors out of 3 requests")
	_, err = NewArm(3, 0, []time.Duration{5, -1})
	assert.EqualError(t, err, "arm: negative latency -1ns")

	in := []time.Duration{3, 1, 2}
	a, err := NewArm(3, 0, in)
	require.NoError(t, err)
	assert.Equal(t, []time.Duration{3, 1, 2}, in, "input left alone")
	out := a.Latencies()
	assert.Equal(t, []time.Duration{1, 2, 3}, out)
	out[0] = 99
	assert.Equal(t, []time.Duration{1, 2, 3}, a.Latencies(), "a copy")
	assert.Equal(t, uint64(3), a.Requests())
	assert.Equal(t, uint64(0), a.Errors())
}
