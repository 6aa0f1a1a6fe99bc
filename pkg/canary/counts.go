package canary

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// The latency buckets are log-linear (as HdrHistogram's): every power of two
// of the unit, 64 ns, is split into subBuckets buckets of equal width, so a
// bucket is at most 1/16 of its lower bound wide and its midpoint, the value
// that stands for it, lies within 1/32 (3.1 %) of every latency in it. Below
// 16 units (1.024 µs) the buckets are 64 ns wide: there 64 ns is within 5 %
// of latencies from 640 ns, and the gateway's latencies under a microsecond
// are clock noise anyway (see p99Floor).
const (
	bucketUnitShift = 6 // a unit is 64 ns
	subBucketBits   = 4
	subBuckets      = 1 << subBucketBits
	// topExp is the highest power of two of units with buckets of its own:
	// 2^30 units to 2^31 units, 68.7 s to 137.4 s. Longer latencies count
	// in the last bucket.
	topExp = 30
)

// NumBuckets is how many latency buckets a Counts has: 64 ns wide up to
// 1.024 µs, then 16 per power of two up to 137.4 s, each of those at most
// 6.25 % of its lower bound wide; the last one also holds every longer
// latency. A bucket's midpoint is within 3.1 % of every latency from 1 µs to
// 137.4 s it stands for.
const NumBuckets = (topExp - subBucketBits + 2) * subBuckets // 448

// bucketOf is the bucket d counts in: negative durations in the first,
// those past the last bucket's bound in the last.
func bucketOf(d time.Duration) int {
	u := uint64(max(d, 0)) >> bucketUnitShift
	if u < subBuckets {
		return int(u)
	}
	// e is u's highest bit; the next subBucketBits bits pick the bucket
	// within the power of two. From e = subBucketBits on this continues the
	// linear buckets below without a gap: u in [16, 32) is bucket u.
	e := bits.Len64(u) - 1
	i := (e-subBucketBits+1)*subBuckets + int(u>>(e-subBucketBits)) - subBuckets
	return min(i, NumBuckets-1)
}

// bucketBounds is bucket i's range [lo, lo+width) in nanoseconds, for
// 0 <= i < NumBuckets.
func bucketBounds(i int) (lo, width uint64) {
	if i < subBuckets {
		return uint64(i) << bucketUnitShift, 1 << bucketUnitShift
	}
	shift := i/subBuckets - 1 // e - subBucketBits
	sub := uint64(i % subBuckets)
	return (subBuckets + sub) << shift << bucketUnitShift, 1 << shift << bucketUnitShift
}

// representative is the latency that stands for bucket i: its midpoint.
func representative(i int) time.Duration {
	lo, width := bucketBounds(i)
	return time.Duration(lo + width/2)
}

// Recorder counts one arm's requests, errors and latencies, cumulatively.
// Its zero value is ready to use. Record is safe for concurrent use,
// lock-free and allocation-free: one atomic add, meant for the proxy's
// request path. Snapshot may run beside it. A Recorder must not be copied.
//
// A Recorder is never reset: a step's figures are the difference of two
// snapshots (Counts.Sub), so that nothing races with a reset and the
// counters of several gateways add up (Counts.Add).
type Recorder struct {
	errors atomic.Uint64
	// buckets count the requests that did not fail, by latency. Requests
	// is not counted apart but derived in Snapshot, so that a snapshot
	// taken during Records is consistent: Requests = Errors + Σ Buckets.
	buckets [NumBuckets]atomic.Uint64
}

// Record counts one request: failed for a 5xx answer or a failed exchange
// (no answer at all), and latency from its start to the end of the answer.
// The latency of a failed request is not kept: failures are judged by the
// error rate, and their latencies (a refused connection in microseconds, a
// timeout at its limit) would pull the distribution either way. A negative
// latency counts as zero.
func (r *Recorder) Record(latency time.Duration, failed bool) {
	if failed {
		r.errors.Add(1)
		return
	}
	r.buckets[bucketOf(latency)].Add(1)
}

// Snapshot returns the counts as they stand. It reads each counter once, not
// all at one instant, but every counter only grows: a request recorded
// during a Snapshot is in this one or the next, and a later snapshot minus
// an earlier one counts every request recorded in between exactly once.
func (r *Recorder) Snapshot() Counts {
	var c Counts
	c.Errors = r.errors.Load()
	c.Requests = c.Errors
	for i := range r.buckets {
		c.Buckets[i] = r.buckets[i].Load()
		c.Requests += c.Buckets[i]
	}
	return c
}

// Counts are one arm's measurements: how many requests, how many of them
// failed, and the latencies of the others counted in NumBuckets log-linear
// buckets (Buckets[i] of them in bucket i). A Recorder's snapshot has
// Requests = Errors + Σ Buckets; a difference across a restart (see Sub)
// may not.
//
// Unlike a sample of latencies, Counts merge exactly: the counts of several
// gateways add up to what one gateway seeing all the requests would have
// counted, and a step is the difference of two snapshots.
type Counts struct {
	Requests, Errors uint64
	Buckets          [NumBuckets]uint64
}

// Add returns c + o, field by field: the counts of two gateways, or of two
// periods, together. Sums wrap past 2^64, which no count of requests reaches.
func (c Counts) Add(o Counts) Counts {
	c.Requests += o.Requests
	c.Errors += o.Errors
	for i := range c.Buckets {
		c.Buckets[i] += o.Buckets[i]
	}
	return c
}

// Sub returns c - o, field by field, each saturating at 0: what a Recorder
// counted between its snapshot o and its later snapshot c. When the
// Recorder was replaced in between (a restarted gateway), a field whose new
// count is below the old one gives 0 rather than wrapping to 2^64, and the
// result is then only a lower bound, possibly with more Errors than
// Requests (Arm clamps them).
func (c Counts) Sub(o Counts) Counts {
	c.Requests = subSat(c.Requests, o.Requests)
	c.Errors = subSat(c.Errors, o.Errors)
	for i := range c.Buckets {
		c.Buckets[i] = subSat(c.Buckets[i], o.Buckets[i])
	}
	return c
}

func subSat(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// armPoints is about how many latencies Arm expands Counts into at most.
// 20,000 per arm keep Judge's rank test (a merge of two sorted slices) and
// Arm's allocation (160 KB) cheap whatever the traffic, while the rank test
// still sees a shift of a bucket's width.
const armPoints = 20_000

// Arm returns the arm Judge reads: Requests and Errors as they are (Errors
// at most Requests), and for every latency counted in a bucket the bucket's
// midpoint, which is within 3.1 % of it from 1 µs to 137.4 s.
//
// When the buckets hold more than 20,000 latencies, they are scaled down in
// proportion to 20,000 points, and every non-empty bucket keeps at least
// one point, so the extremes stay visible. The rounding goes from the
// slowest bucket down, keeping the number of points at or above each bucket
// the rounded share of the latencies at or above it; the far tail's buckets
// that hold less than a point's share still get one each, and the buckets
// below give that excess back. So the p99 is read from the right rank
// unless the tail above it is all such thin buckets, and the percentiles
// within the thin tail itself read high. Thin buckets at the fast end add
// their points to the total: at most NumBuckets more than 20,000. Judge's
// rank test is computed on the points, so its p-values are those of about
// 20,000 latencies per arm, still enough to confirm a difference of a
// bucket's width.
func (c Counts) Arm() Arm {
	var total float64
	for i := NumBuckets - 1; i >= 0; i-- { // in the order of the loop below
		total += float64(c.Buckets[i])
	}
	scale := 1.0
	if total > armPoints {
		scale = armPoints / total
	}
	var points [NumBuckets]uint64
	var above float64 // the latencies in the buckets from i up
	var given uint64  // the points given to them
	for i := NumBuckets - 1; i >= 0; i-- {
		n := c.Buckets[i]
		if n == 0 {
			continue
		}
		above += float64(n)
		// Without scaling, want - given is n: the counts exactly.
		want := uint64(math.Round(above * scale))
		points[i] = max(1, want-min(want, given))
		given += points[i]
	}
	lat := make([]time.Duration, 0, given)
	for i, p := range points {
		rep := representative(i)
		for range p {
			lat = append(lat, rep)
		}
	}
	// Sorted already: the buckets are in increasing order of latency.
	return Arm{requests: c.Requests, errors: min(c.Errors, c.Requests), latencies: lat}
}
