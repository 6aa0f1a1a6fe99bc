package canary

import (
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"
)

// DefaultReservoirSize is how many latencies a Sample keeps when NewSample is
// given no size: 4096, 32 KiB per arm. At that size the p99 is read among the
// ~41 kept values above it: its rank in the reservoir varies by about
// sqrt(4096·0.01·0.99) ≈ 6 values, so the estimate lies between the true p98.8
// and p99.2 two times in three. The rank test on 4096 against 4096 values
// costs a merge of two sorted slices, well under a millisecond, and has the
// power to see a shift of a few percent; the p99 ratio limit (see Judge)
// keeps such small shifts from failing a version.
const DefaultReservoirSize = 4096

// Sample is what the gateway records of one arm (canary or baseline) during
// one step: exact counts of requests and errors, and a bounded uniform sample
// of the latencies of the requests that did not fail.
//
// Record is safe for concurrent use, lock-free and allocation-free; it is
// meant for the proxy's request path. Snapshot may run beside it.
//
// A Sample covers one step and is never reset: at each step the caller makes
// a new pair of Samples and swaps the pointer the proxy loads
// (atomic.Pointer[Sample]). A request that loaded the old pointer just before
// the swap is counted in the step it started in, and no reset can race with
// a Record halfway through.
type Sample struct {
	ok     atomic.Uint64 // requests that did not fail: also the reservoir's clock
	failed atomic.Uint64 // requests that failed
	// slots holds latency+1 in nanoseconds; 0 marks a slot whose first
	// Record has claimed it but not yet stored it.
	slots []atomic.Int64
}

// NewSample returns an empty Sample that keeps up to size latencies;
// size <= 0 means DefaultReservoirSize.
func NewSample(size int) *Sample {
	if size <= 0 {
		size = DefaultReservoirSize
	}
	return &Sample{slots: make([]atomic.Int64, size)}
}

// Record counts one request: failed for a 5xx answer or a failed exchange
// (no answer at all), and latency from its start to the end of the answer.
// The latency of a failed request is not kept: failures are judged by the
// error rate, and their latencies (a refused connection in microseconds, a
// timeout at its limit) would pull the distribution either way. A negative
// latency counts as zero.
func (s *Sample) Record(latency time.Duration, failed bool) {
	if failed {
		s.failed.Add(1)
		return
	}
	// Algorithm R (Vitter 1985): the n-th value takes a slot with
	// probability size/n, so every value seen is kept with the same
	// probability. Concurrent Records each own their n.
	n := s.ok.Add(1)
	size := uint64(len(s.slots))
	i := n - 1
	if n > size {
		i = rand.Uint64N(n)
		if i >= size {
			return
		}
	}
	s.slots[i].Store(int64(max(latency, 0)) + 1)
}

// Snapshot returns the counts and kept latencies as they stand. It copies
// and sorts the reservoir (O(size·log size)); call it when judging, not per
// request.
func (s *Sample) Snapshot() Arm {
	failed := s.failed.Load()
	ok := s.ok.Load()
	n := min(ok, uint64(len(s.slots)))
	lat := make([]time.Duration, 0, n)
	for i := range n {
		if v := s.slots[i].Load(); v != 0 {
			lat = append(lat, time.Duration(v-1))
		}
	}
	slices.Sort(lat)
	return Arm{requests: ok + failed, errors: failed, latencies: lat}
}
