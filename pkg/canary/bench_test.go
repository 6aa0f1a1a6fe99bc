package canary

import (
	"testing"
	"time"
)

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

// BenchmarkJudge: two arms of 100,000 requests from Counts, latency check
// on.
func BenchmarkJudge(b *testing.B) {
	canary := recorded(100_000, 500, latency(1, 11*ms, ms)).Arm()
	baseline := recorded(100_000, 400, latency(2, 10*ms, ms)).Arm()
	c := DefaultCriteria()
	b.ReportAllocs()
	for b.Loop() {
		Judge(canary, baseline, c)
	}
}
