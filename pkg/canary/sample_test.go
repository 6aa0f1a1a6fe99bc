package canary

import (
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSampleCounts(t *testing.T) {
	s := NewSample(0)
	require.Len(t, s.slots, DefaultReservoirSize)
	a := s.Snapshot()
	assert.Zero(t, a.Requests())
	assert.Empty(t, a.Latencies())

	s.Record(30*time.Millisecond, false)
	s.Record(10*time.Millisecond, false)
	s.Record(time.Hour, true) // a failure's latency is not kept
	s.Record(-time.Second, false)
	a = s.Snapshot()
	assert.Equal(t, uint64(4), a.Requests())
	assert.Equal(t, uint64(1), a.Errors())
	assert.Equal(t, []time.Duration{0, 10 * time.Millisecond, 30 * time.Millisecond}, a.Latencies())

	s.Record(time.Millisecond, false)
	assert.Len(t, a.Latencies(), 3, "a snapshot does not change")
}

// TestSampleUniform records 0..99,999 µs in increasing order, the order that
// would show a bias towards early or late values, and checks the kept
// latencies' quantiles against the true ones. The q-quantile of a uniform
// sample of 4096 is off by sqrt(q(1-q)/4096) of the range, one standard
// deviation; the tolerance is 5 of them.
func TestSampleUniform(t *testing.T) {
	const n = 100_000
	s := NewSample(0)
	for i := range n {
		s.Record(time.Duration(i)*time.Microsecond, false)
	}
	a := s.Snapshot()
	require.Equal(t, uint64(n), a.Requests())
	require.Len(t, a.Latencies(), DefaultReservoirSize)
	for _, q := range []float64{0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99} {
		got, ok := a.Quantile(q)
		require.True(t, ok)
		sd := math.Sqrt(q*(1-q)/DefaultReservoirSize) * n
		assert.InDelta(t, q*n, got.Microseconds(), 5*sd, "q=%v", q)
	}
}

// TestSampleConcurrent records from several goroutines while others take
// snapshots (run with -race): counts are exact, snapshots consistent.
func TestSampleConcurrent(t *testing.T) {
	const writers, each = 8, 20_000
	s := NewSample(512)
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 2 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				a := s.Snapshot()
				lat := a.Latencies()
				assert.LessOrEqual(t, a.Errors(), a.Requests())
				assert.LessOrEqual(t, len(lat), 512)
				assert.LessOrEqual(t, uint64(len(lat)), a.Requests()-a.Errors())
				assert.True(t, slices.IsSorted(lat))
			}
		})
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				s.Record(time.Duration(w*each+i), i%10 == 0)
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	a := s.Snapshot()
	assert.Equal(t, uint64(writers*each), a.Requests())
	assert.Equal(t, uint64(writers*each/10), a.Errors())
	assert.Len(t, a.Latencies(), 512)
}

func TestRecordAllocates(t *testing.T) {
	s := NewSample(64)
	allocs := testing.AllocsPerRun(1000, func() { s.Record(time.Millisecond, false) })
	assert.Zero(t, allocs)
}
