package canary

import (
	"testing"
	"time"
)

// BenchmarkRecord: one goroutine, the reservoir full (every Record draws a
// random slot), as for the most of a step.
func BenchmarkRecord(b *testing.B) {
	s := NewSample(0)
	for i := range DefaultReservoirSize {
		s.Record(time.Duration(i), false)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		s.Record(time.Duration(i), i%100 == 0)
	}
}

// BenchmarkRecordParallel: every P records into one Sample, as the proxy's
// goroutines or event loops do.
func BenchmarkRecordParallel(b *testing.B) {
	s := NewSample(0)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			s.Record(time.Duration(i), i%100 == 0)
		}
	})
}

// BenchmarkSnapshot: copying and sorting a full reservoir.
func BenchmarkSnapshot(b *testing.B) {
	s := NewSample(0)
	next := latency(1, 10*ms, ms)
	for range 100_000 {
		s.Record(next(), false)
	}
	b.ReportAllocs()
	for b.Loop() {
		s.Snapshot()
	}
}

// BenchmarkJudge: two full reservoirs, latency check on.
func BenchmarkJudge(b *testing.B) {
	canary := measured(100_000, 500, latency(1, 11*ms, ms))
	baseline := measured(100_000, 400, latency(2, 10*ms, ms))
	c := DefaultCriteria()
	b.ReportAllocs()
	for b.Loop() {
		Judge(canary, baseline, c)
	}
}

// BenchmarkRecorderRecord: one goroutine, latencies spread over a few
// dozen buckets, one request in 100 failed.
func BenchmarkRecorderRecord(b *testing.B) {
	var r Recorder
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		r.Record(time.Duration(i%64)*ms, i%100 == 0)
	}
}

// BenchmarkRecorderRecordParallel: every P records into one Recorder, as
// the proxy's goroutines or event loops do; they contend for the cache
// lines of the busiest buckets.
func BenchmarkRecorderRecordParallel(b *testing.B) {
	var r Recorder
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			r.Record(time.Duration(i%64)*ms, i%100 == 0)
		}
	})
}

// BenchmarkCountsArm: expanding 100,000 latencies, scaled to armPoints.
func BenchmarkCountsArm(b *testing.B) {
	c := recorded(100_000, 500, latency(1, 10*ms, ms))
	b.ReportAllocs()
	for b.Loop() {
		c.Arm()
	}
}
