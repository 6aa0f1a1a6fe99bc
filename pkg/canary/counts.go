package canary

// A temporary stand-in for counts.go of the canary-counts branch, with the
// API the design gives, so that pkg/balancer builds against it until that
// branch is merged; it is deleted then. Buckets here are powers of two of
// microseconds, not the real ones.

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// NumBuckets is the number of latency buckets.
const NumBuckets = 28

// Recorder counts one arm's requests, errors and latencies; the zero value
// is ready and safe for concurrent use.
type Recorder struct {
	requests, errors atomic.Uint64
	buckets          [NumBuckets]atomic.Uint64
}

// Record counts one request: failed, or answered after latency.
func (r *Recorder) Record(latency time.Duration, failed bool) {
	r.requests.Add(1)
	if failed {
		r.errors.Add(1)
		return
	}
	i := min(bits.Len64(uint64(max(latency/time.Microsecond, 0))), NumBuckets-1)
	r.buckets[i].Add(1)
}

// Snapshot returns the counts so far.
func (r *Recorder) Snapshot() Counts {
	var c Counts
	c.Requests, c.Errors = r.requests.Load(), r.errors.Load()
	for i := range c.Buckets {
		c.Buckets[i] = r.buckets[i].Load()
	}
	return c
}

// Counts are cumulative counts of one arm.
type Counts struct {
	Requests, Errors uint64
	Buckets          [NumBuckets]uint64
}
