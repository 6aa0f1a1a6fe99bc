package autoscale

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Meter turns a gateway's instant readings of each service's load
// (requests in flight plus queued, Balancer.Load) into averages over
// one-second buckets aligned on the clock's seconds, so that the buckets
// of several gateways add up second by second. It reads every Tick
// (10 ms): a burst shorter than a bucket still counts for its share of
// the second (an instant sample per second would miss it or count it
// whole: knative/serving#469). It keeps the last Keep of buckets.
type Meter struct {
	read func(into map[string]int64) map[string]int64
	tick time.Duration
	keep time.Duration

	mu      sync.Mutex
	series  map[string][]Sample // complete buckets by service, oldest first
	bucket  time.Time           // the end of the bucket being filled
	sums    map[string]int64    // readings summed in it
	n       int64               // readings taken in it
	reading map[string]int64
}

// MeterTick and MeterKeep are a Meter's reading interval and how much
// history it keeps.
const (
	MeterTick = 10 * time.Millisecond
	MeterKeep = 2 * time.Minute
)

// NewMeter returns a Meter of read (see Meter).
func NewMeter(read func(into map[string]int64) map[string]int64) *Meter {
	return &Meter{read: read, tick: MeterTick, keep: MeterKeep, series: map[string][]Sample{}, sums: map[string]int64{}}
}

// Run reads until ctx ends.
func (m *Meter) Run(ctx context.Context) {
	t := time.NewTicker(m.tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			m.observe(now)
		}
	}
}

// observe takes one reading at now, closing the bucket it passed.
func (m *Meter) observe(now time.Time) {
	m.reading = m.read(m.reading)
	m.mu.Lock()
	defer m.mu.Unlock()
	// A reading stands for the tick before it: one on a second's boundary
	// belongs to the bucket that ends there.
	if m.bucket.IsZero() {
		m.bucket = ceilSecond(now)
	}
	if now.After(m.bucket) {
		m.close()
		m.bucket = ceilSecond(now)
	}
	for svc, v := range m.reading {
		m.sums[svc] += v
	}
	m.n++
}

func ceilSecond(t time.Time) time.Time {
	if tr := t.Truncate(time.Second); !tr.Equal(t) {
		return tr.Add(time.Second)
	}
	return t
}

// close appends the bucket's averages; a service that had no reading in it
// gets 0 only if it has a series already (it is idle, not unknown).
func (m *Meter) close() {
	if m.n == 0 {
		return
	}
	for svc := range m.series {
		if _, ok := m.sums[svc]; !ok {
			m.sums[svc] = 0
		}
	}
	for svc, sum := range m.sums {
		s := append(m.series[svc], Sample{At: m.bucket, InFlight: float64(sum) / float64(m.n)})
		i := 0
		for i < len(s) && m.bucket.Sub(s[i].At) > m.keep {
			i++
		}
		m.series[svc] = s[i:]
	}
	clear(m.sums)
	m.n = 0
}

// Since is service's complete buckets that ended after t, oldest first.
func (m *Meter) Since(service string, t time.Time) []Sample {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Sample
	for _, s := range m.series[service] {
		if s.At.After(t) {
			out = append(out, s)
		}
	}
	return out
}

// Services are the services the Meter has buckets of.
func (m *Meter) Services() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.series))
	for svc := range m.series {
		out = append(out, svc)
	}
	return out
}

// Sum adds up several gateways' buckets second by second (the buckets end
// on the same seconds): the service's load at all of them.
func Sum(perGateway ...[]Sample) []Sample {
	by := map[int64]float64{}
	var ats []time.Time
	for _, g := range perGateway {
		for _, s := range g {
			k := s.At.Unix()
			if _, ok := by[k]; !ok {
				ats = append(ats, s.At)
			}
			by[k] += s.InFlight
		}
	}
	out := make([]Sample, 0, len(ats))
	for _, at := range ats {
		out = append(out, Sample{At: at, InFlight: by[at.Unix()]})
	}
	slices.SortFunc(out, func(a, b Sample) int { return a.At.Compare(b.At) })
	return out
}
