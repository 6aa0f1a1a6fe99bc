package canary

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recorded is measured through a Recorder: the same requests, errors and
// latencies, as Counts.
func recorded(requests, errors int, next func() time.Duration) Counts {
	var r Recorder
	for i := range requests {
		r.Record(next(), i < errors)
	}
	return r.Snapshot()
}

// maxRepError is the farthest a bucket's representative may be from a
// latency it stands for, relative to the latency, from 1 µs to the last
// bucket's bound.
const maxRepError = 0.05

// lastBound is where the last bucket ends: 2^31 units of 64 ns.
const lastBound = time.Duration(1) << 37

func relErr(rep, d time.Duration) float64 {
	return math.Abs(float64(rep-d)) / float64(d)
}

func TestBuckets(t *testing.T) {
	us, s := time.Microsecond, time.Second
	for _, tc := range []struct {
		d      time.Duration
		bucket int
	}{
		{-s, 0}, {0, 0}, {63, 0}, {64, 1}, {us, 15}, {1023, 15},
		{1024, 16}, {1087, 16}, {1088, 17}, {2047, 31}, {2048, 32}, {2048 + 127, 32}, {2048 + 128, 33},
		{10 * ms, 227}, {100 * s, 439}, {lastBound - 1, NumBuckets - 1},
		{lastBound, NumBuckets - 1}, {time.Hour, NumBuckets - 1}, {math.MaxInt64, NumBuckets - 1},
	} {
		assert.Equal(t, tc.bucket, bucketOf(tc.d), "bucket of %v", tc.d)
	}
	assert.Equal(t, 448, NumBuckets)

	// Every bucket from 1 µs on: contiguous with the next, its own bounds
	// map into it, and its midpoint is within 5 % of both.
	first := bucketOf(us)
	for i := first; i < NumBuckets; i++ {
		lo, width := bucketBounds(i)
		lod, hid := time.Duration(lo), time.Duration(lo+width-1)
		require.Equal(t, i, bucketOf(lod), "bucket %d's lower bound %v", i, lod)
		require.Equal(t, i, bucketOf(hid), "bucket %d's upper bound %v", i, hid)
		if i+1 < NumBuckets {
			next, _ := bucketBounds(i + 1)
			require.Equal(t, lo+width, next, "bucket %d ends where %d starts", i, i+1)
		} else {
			require.Equal(t, lastBound, time.Duration(lo+width))
		}
		rep := representative(i)
		assert.Equal(t, time.Duration(lo+width/2), rep)
		if lod >= us {
			assert.LessOrEqual(t, relErr(rep, lod), 1.0/32, "bucket %d [%v, %v]", i, lod, hid)
		}
		assert.LessOrEqual(t, relErr(rep, hid), 1.0/32, "bucket %d [%v, %v]", i, lod, hid)
	}
	assert.GreaterOrEqual(t, lastBound, 100*s, "the buckets reach 100 s")
}

// TestBucketsRepresentative: durations spread evenly in log scale from
// 1 µs to the last bound each map into a bucket whose representative is
// within 5 % of them (3.125 % in fact).
func TestBucketsRepresentative(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	lo, hi := math.Log(float64(time.Microsecond)), math.Log(float64(lastBound-1))
	worst := 0.0
	for range 200_000 {
		d := time.Duration(math.Exp(lo + r.Float64()*(hi-lo)))
		i := bucketOf(d)
		b, w := bucketBounds(i)
		require.True(t, uint64(d) >= b && uint64(d) < b+w, "%v in bucket %d [%d, %d)", d, i, b, b+w)
		e := relErr(representative(i), d)
		require.LessOrEqual(t, e, maxRepError, "%v's representative %v", d, representative(i))
		worst = max(worst, e)
	}
	assert.LessOrEqual(t, worst, 1.0/32)
}

func TestRecorder(t *testing.T) {
	var r Recorder
	assert.Equal(t, Counts{}, r.Snapshot(), "zero value ready")
	r.Record(30*ms, false)
	r.Record(30*ms, false)
	r.Record(10*ms, false)
	r.Record(time.Hour, true) // a failure's latency is not kept
	r.Record(-time.Second, false)
	c := r.Snapshot()
	assert.Equal(t, uint64(5), c.Requests)
	assert.Equal(t, uint64(1), c.Errors)
	var want [NumBuckets]uint64
	want[bucketOf(30*ms)] = 2
	want[bucketOf(10*ms)] = 1
	want[0] = 1
	assert.Equal(t, want, c.Buckets)

	r.Record(ms, false)
	assert.Equal(t, uint64(5), c.Requests, "a snapshot does not change")
	d := r.Snapshot().Sub(c)
	assert.Equal(t, uint64(1), d.Requests)
	assert.Equal(t, uint64(1), d.Buckets[bucketOf(ms)])
	assert.Equal(t, uint64(1), d.latencies())
}

func TestRecorderAllocates(t *testing.T) {
	var r Recorder
	allocs := testing.AllocsPerRun(1000, func() { r.Record(time.Millisecond, false) })
	assert.Zero(t, allocs)
}

// TestRecorderConcurrent records from several goroutines while others take
// snapshots (run with -race): every snapshot is consistent and no counter
// goes back; the final counts are exact.
func TestRecorderConcurrent(t *testing.T) {
	const writers, each = 4, 20_000
	var r Recorder
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 2 {
		readers.Go(func() {
			var prev Counts
			for {
				select {
				case <-stop:
					return
				default:
				}
				c := r.Snapshot()
				assert.Equal(t, c.Requests, c.Errors+c.latencies())
				assert.GreaterOrEqual(t, c.Errors, prev.Errors, "no counter goes back")
				for i := range c.Buckets {
					assert.GreaterOrEqual(t, c.Buckets[i], prev.Buckets[i])
				}
				prev = c
			}
		})
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				r.Record(time.Duration(i%100)*ms, (w*each+i)%10 == 0)
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	c := r.Snapshot()
	assert.Equal(t, uint64(writers*each), c.Requests)
	assert.Equal(t, uint64(writers*each/10), c.Errors)
	var want [NumBuckets]uint64
	for w := range writers {
		for i := range each {
			if (w*each+i)%10 != 0 {
				want[bucketOf(time.Duration(i%100)*ms)]++
			}
		}
	}
	assert.Equal(t, want, c.Buckets)
}

func randomCounts(r *rand.Rand) Counts {
	var c Counts
	for range r.IntN(40) {
		c.Buckets[r.IntN(NumBuckets)] += r.Uint64N(1e6)
	}
	c.Errors = r.Uint64N(1e4)
	c.Requests = c.Errors + c.latencies()
	return c
}

func TestCountsAddSub(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var zero Counts
	for range 200 {
		a, b, c := randomCounts(r), randomCounts(r), randomCounts(r)
		assert.Equal(t, a.Add(b), b.Add(a), "commutative")
		assert.Equal(t, a.Add(b).Add(c), a.Add(b.Add(c)), "associative")
		assert.Equal(t, a, a.Add(zero), "zero adds nothing")
		assert.Equal(t, a, a.Add(b).Sub(b), "Sub undoes Add")
		assert.Equal(t, b, a.Add(b).Sub(a))
		assert.Equal(t, a, a.Sub(zero))
		assert.Equal(t, zero, a.Sub(a))
		assert.Equal(t, zero, zero.Sub(a), "saturates at 0")
		assert.Equal(t, a.Sub(b).Sub(c), a.Sub(b.Add(c)), "subtracting a sum")
		sum := a.Add(b)
		assert.Equal(t, sum.Requests, sum.Errors+sum.latencies(), "sums stay consistent")
	}
}

// TestCountsSubSaturates: a gateway that restarted between two snapshots
// has counters below the first snapshot's in some fields and above in
// others; each field saturates on its own.
func TestCountsSubSaturates(t *testing.T) {
	var before, after Counts
	before.Requests, before.Errors = 1000, 10
	before.Buckets[5], before.Buckets[6] = 900, 90
	after.Requests, after.Errors = 500, 20
	after.Buckets[5], after.Buckets[7] = 300, 180

	d := after.Sub(before)
	var want Counts
	want.Errors = 10
	want.Buckets[7] = 180
	assert.Equal(t, want, d)

	a := d.Arm()
	assert.Equal(t, uint64(0), a.Requests())
	assert.Equal(t, uint64(0), a.Errors(), "errors clamped to the requests")
	assert.Len(t, a.Latencies(), 180)
}

func TestCountsArm(t *testing.T) {
	a := Counts{}.Arm()
	assert.Zero(t, a.Requests())
	assert.Empty(t, a.Latencies())

	var r Recorder
	for _, d := range []time.Duration{30 * ms, 10 * ms, 10 * ms, 0} {
		r.Record(d, false)
	}
	r.Record(time.Hour, true)
	a = r.Snapshot().Arm()
	assert.Equal(t, uint64(5), a.Requests())
	assert.Equal(t, uint64(1), a.Errors())
	rep := func(d time.Duration) time.Duration { return representative(bucketOf(d)) }
	assert.Equal(t, []time.Duration{32, rep(10 * ms), rep(10 * ms), rep(30 * ms)}, a.Latencies())
}

// TestCountsArmScaled: past armPoints latencies each bucket is scaled down
// in proportion, none left out, the counts untouched.
func TestCountsArmScaled(t *testing.T) {
	var c Counts
	c.Buckets[100] = 1e9
	c.Buckets[200] = 3e9
	c.Buckets[300] = 1 // one in four billion: still one point
	c.Buckets[NumBuckets-1] = 2
	c.Errors = 7
	c.Requests = c.Errors + c.latencies()
	a := c.Arm()
	assert.Equal(t, c.Requests, a.Requests())
	assert.Equal(t, uint64(7), a.Errors())
	lat := a.Latencies()
	assert.True(t, slices.IsSorted(lat))
	per := map[time.Duration]int{}
	for _, d := range lat {
		per[d]++
	}
	// The two thin buckets' points are taken from the next one down.
	assert.Equal(t, map[time.Duration]int{
		representative(100): 5000, representative(200): 14998,
		representative(300): 1, representative(NumBuckets - 1): 1,
	}, per)
	assert.Len(t, lat, armPoints)

	// Every bucket full to the brim: bounded all the same.
	for i := range c.Buckets {
		c.Buckets[i] = math.MaxUint64
	}
	n := len(c.Arm().Latencies())
	assert.LessOrEqual(t, n, armPoints+NumBuckets)
	assert.GreaterOrEqual(t, n, NumBuckets)
}

// TestCountsArmQuantiles: the percentiles of a Counts-derived arm are
// within 5 % of the exact ones, for a log-normal distribution (median
// 20 ms, a long right tail), below the scaling threshold and well past it.
// Past it the p99.9 is not checked: it is the 20th point from the top, and
// a million latencies spread their top thousand over some 30 buckets, each
// of which keeps a point (see Arm).
func TestCountsArmQuantiles(t *testing.T) {
	for _, tc := range []struct {
		n  int
		qs []float64
	}{
		{5000, []float64{0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1}},
		{1_000_000, []float64{0.01, 0.25, 0.5, 0.75, 0.9, 0.99, 0.995}},
	} {
		r := rand.New(rand.NewPCG(uint64(tc.n), 5))
		raw := make([]time.Duration, tc.n)
		var rec Recorder
		for i := range raw {
			raw[i] = time.Duration(20e6 * math.Exp(0.6*r.NormFloat64()))
			rec.Record(raw[i], false)
		}
		slices.Sort(raw)
		a := rec.Snapshot().Arm()
		assert.LessOrEqual(t, len(a.Latencies()), armPoints+NumBuckets)
		for _, q := range tc.qs {
			exact, _ := quantile(raw, q)
			got, ok := a.Quantile(q)
			require.True(t, ok)
			t.Logf("n=%d q=%v: %v, exact %v (%+.2f %%)", tc.n, q, got, exact, 100*float64(got-exact)/float64(exact))
			assert.LessOrEqual(t, relErr(got, exact), 0.05, "n=%d q=%v: %v, exact %v", tc.n, q, got, exact)
		}
	}
}

// TestJudgeOnCounts: Judge gives the same verdict on arms expanded from
// Counts as on the exact latencies, for equal versions, a clear regression
// and the other kinds of case, below and past the scaling threshold.
func TestJudgeOnCounts(t *testing.T) {
	def := DefaultCriteria()
	for _, tc := range []struct {
		name             string
		requests         int
		canary, baseline func() time.Duration
		canaryErrors     int
		result           Result
	}{
		{"equal versions", 1000, latency(1, 10*ms, ms), latency(2, 10*ms, ms), 0, Pass},
		{"equal versions, many requests", 200_000, latency(3, 10*ms, ms), latency(4, 10*ms, ms), 0, Pass},
		{"equal versions, wide spread", 50_000, latency(5, 5*ms, 40*ms), latency(6, 5*ms, 40*ms), 0, Pass},
		{"50 ms slower", 1000, latency(1, 60*ms, ms), latency(2, 10*ms, ms), 0, Fail},
		{"50 ms slower, many requests", 200_000, latency(7, 60*ms, ms), latency(8, 10*ms, ms), 0, Fail},
		{"slower within the ratio", 5000, latency(9, 11*ms, ms), latency(10, 10*ms, ms), 0, Pass},
		{"errors", 1000, latency(1, 10*ms, ms), latency(2, 10*ms, ms), 52, Fail},
		{"slower tail only", 1000, tailed(latency(1, 10*ms, ms), 50, 10), latency(2, 10*ms, ms), 0, Inconclusive},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The same draws for both: generators are stateful.
			cl := draws(tc.requests, tc.canary)
			bl := draws(tc.requests, tc.baseline)
			exact := Judge(measured(tc.requests, tc.canaryErrors, replay(cl)), measured(tc.requests, 0, replay(bl)), def)
			fromCounts := Judge(
				recorded(tc.requests, tc.canaryErrors, replay(cl)).Arm(),
				recorded(tc.requests, 0, replay(bl)).Arm(), def)
			assert.Equal(t, tc.result, exact.Result, exact.Reason)
			assert.Equal(t, tc.result, fromCounts.Result, fromCounts.Reason)
			assert.InEpsilon(t, exact.Figures.P99Ratio, fromCounts.Figures.P99Ratio, 0.07,
				"exact: %s; counts: %s", exact.Reason, fromCounts.Reason)
		})
	}
}

func draws(n int, next func() time.Duration) []time.Duration {
	d := make([]time.Duration, n)
	for i := range d {
		d[i] = next()
	}
	return d
}

func replay(d []time.Duration) func() time.Duration {
	i := 0
	return func() time.Duration {
		i++
		return d[i-1]
	}
}

// latencies is Σ Buckets.
func (c *Counts) latencies() uint64 {
	var sum uint64
	for _, n := range c.Buckets {
		sum += n
	}
	return sum
}
