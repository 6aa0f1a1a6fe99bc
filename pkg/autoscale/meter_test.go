package autoscale

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMeterBuckets: readings every 10 ms become one average per second per
// service, on the clock's seconds; a burst of 300 ms counts for 0.3 of its
// second, and a service gone idle reads 0.
func TestMeterBuckets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var load atomic.Int64
		m := NewMeter(func(into map[string]int64) map[string]int64 {
			if into == nil {
				into = map[string]int64{}
			}
			into["a"] = load.Load()
			if load.Load() > 0 {
				into["b"] = 1
			} else {
				delete(into, "b")
			}
			return into
		})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		start := time.Now()
		require.Equal(t, start, start.Truncate(time.Second), "the bubble starts on a second")
		go m.Run(ctx)
		time.Sleep(5 * time.Millisecond) // the load changes between readings, not at one

		load.Store(10)
		time.Sleep(300 * time.Millisecond)
		load.Store(0)
		time.Sleep(700 * time.Millisecond) // the first second: 10 for 0.3 s
		load.Store(4)
		time.Sleep(time.Second) // the second: 4
		load.Store(0)
		time.Sleep(1010 * time.Millisecond) // the third: 0, and a reading in the fourth closes it
		synctest.Wait()

		a := m.Since("a", start)
		require.Len(t, a, 3)
		assert.Equal(t, start.Add(time.Second), a[0].At)
		assert.InDelta(t, 3, a[0].InFlight, 0.15, "10 in flight for 0.3 s of the second")
		assert.InDelta(t, 4, a[1].InFlight, 0.01)
		assert.InDelta(t, 0, a[2].InFlight, 0.01)
		b := m.Since("b", start)
		require.Len(t, b, 3)
		assert.InDelta(t, 0, b[2].InFlight, 0.01, "a service without readings reads 0 once it has a series")
		assert.Len(t, m.Since("a", start.Add(2*time.Second)), 1)
		assert.ElementsMatch(t, []string{"a", "b"}, m.Services())

		// Only the last MeterKeep is kept.
		time.Sleep(MeterKeep + 5*time.Second)
		synctest.Wait()
		assert.LessOrEqual(t, len(m.Since("a", start)), int(MeterKeep/time.Second)+1)
	})
}

func TestSum(t *testing.T) {
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	got := Sum(
		[]Sample{{at(1), 1}, {at(2), 2}, {at(3), 3}},
		[]Sample{{at(2), 10}, {at(3), 10}, {at(4), 10}},
		nil,
	)
	assert.Equal(t, []Sample{{at(1), 1}, {at(2), 12}, {at(3), 13}, {at(4), 10}}, got)
}
