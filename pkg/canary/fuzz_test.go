package canary

import (
	"encoding/binary"
	"math"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// maxFuzzLatencies bounds the latencies durations reads, which keeps each
// run, and the fuzzer's minimizing, fast.
const maxFuzzLatencies = 4096

// durations reads b as little-endian uint16 values shifted left by shift:
// small alphabets make ties, shifts reach hours. It reads no more than
// maxFuzzLatencies of them.
func durations(b []byte, shift uint8) []time.Duration {
	b = b[:min(len(b), 2*maxFuzzLatencies)]
	d := make([]time.Duration, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		d = append(d, time.Duration(binary.LittleEndian.Uint16(b[i:]))<<(shift%40))
	}
	return d
}

// repeat makes n copies of b: enough latencies for the rank test from a
// short input.
func repeat(b []byte, n uint8) []byte {
	return slices.Repeat(b, int(n%64)+1)
}

// FuzzJudge: whatever the arms and criteria, Judge does not panic, answers
// one of the three results with a reason, keeps every figure a finite
// probability or ratio, never passes an arm under MinRequests, and fails
// invalid criteria.
func FuzzJudge(f *testing.F) {
	f.Add(uint64(1000), uint64(2), uint64(1000), uint64(1), []byte{10, 0, 11, 0, 12, 0}, []byte{10, 0, 11, 0}, uint8(20), uint8(50), 0.01, 1.2, 200, 0.01)
	f.Add(uint64(1000), uint64(52), uint64(1000), uint64(0), []byte{1, 0}, []byte{1, 0}, uint8(0), uint8(63), 0.01, 0.0, 0, 0.0)
	f.Add(uint64(0), uint64(0), uint64(0), uint64(0), []byte{}, []byte{}, uint8(0), uint8(0), 0.0, 0.0, 0, 0.0)
	f.Add(uint64(300), uint64(0), uint64(300), uint64(0), []byte{0, 0}, []byte{0, 0}, uint8(0), uint8(60), 0.5, 1.5, 50, 0.2)
	f.Add(uint64(300), uint64(0), uint64(300), uint64(0), []byte{0, 1}, []byte{0, 0}, uint8(10), uint8(60), 0.5, 1.5, 50, 0.2)
	f.Add(uint64(math.MaxUint64), uint64(1<<63), uint64(math.MaxUint64), uint64(math.MaxUint64), []byte{255, 255}, []byte{0, 0}, uint8(39), uint8(60), 1.0, 1e308, 1<<62, 1e-300)
	f.Add(uint64(500), uint64(5), uint64(500), uint64(0), []byte{1, 0}, []byte{2, 0}, uint8(3), uint8(60), math.NaN(), math.Inf(1), -1, math.NaN())
	f.Fuzz(func(t *testing.T, cReq, cErr, bReq, bErr uint64, cLat, bLat []byte, shift, copies uint8,
		maxErr, maxRatio float64, minReq int, alpha float64) {
		wd := time.AfterFunc(2*time.Second, func() {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			os.WriteFile("/tmp/canary-stack.txt", buf[:n], 0o644)
		})
		defer wd.Stop()
		canary, err := NewArm(cReq, min(cErr, cReq), durations(repeat(cLat, copies), shift))
		require.NoError(t, err)
		baseline, err := NewArm(bReq, min(bErr, bReq), durations(repeat(bLat, copies/2), shift))
		require.NoError(t, err)
		c := Criteria{MaxErrorRate: maxErr, MaxP99Ratio: maxRatio, MinRequests: minReq, Alpha: alpha}

		v := Judge(canary, baseline, c)

		require.Contains(t, []Result{Pass, Fail, Inconclusive}, v.Result)
		require.NotEmpty(t, v.Reason)
		requireFinite(t, v.Figures)
		if c.Validate() != nil {
			require.Equal(t, Fail, v.Result, v.Reason)
			return
		}
		need := uint64(c.withDefaults().MinRequests)
		if cReq < need || bReq < need {
			require.Equal(t, Inconclusive, v.Result, v.Reason)
		}
		if v.Result == Pass {
			require.LessOrEqual(t, v.Figures.Canary.ErrorRate, maxErr)
			if maxRatio > 0 {
				require.LessOrEqual(t, v.Figures.P99Ratio, maxRatio)
				require.GreaterOrEqual(t, v.Figures.Canary.Latencies, MinPoints)
				require.GreaterOrEqual(t, v.Figures.Baseline.Latencies, MinPoints)
			}
		}
	})
}

// FuzzMannWhitney: any samples give a U within its range, symmetric
// between the sides, a finite z and a p-value that is a probability; or,
// exactly for empty samples and NaNs, ok = false.
func FuzzMannWhitney(f *testing.F) {
	f.Add([]byte{1, 2, 3}, []byte{4, 5, 6}, false)
	f.Add([]byte{5, 5, 5}, []byte{5, 5}, false)
	f.Add([]byte{}, []byte{1}, true)
	f.Add(slices.Repeat([]byte{7, 1}, 40), slices.Repeat([]byte{3}, 25), true)
	f.Fuzz(func(t *testing.T, ab, bb []byte, special bool) {
		a, b := floats(ab, special), floats(bb, special)
		u, z, p, ok := MannWhitney(a, b)
		bad := len(a) == 0 || len(b) == 0 || slices.ContainsFunc(a, math.IsNaN) || slices.ContainsFunc(b, math.IsNaN)
		require.Equal(t, !bad, ok)
		if !ok {
			return
		}
		pairs := float64(len(a) * len(b))
		require.True(t, u >= 0 && u <= pairs, "u = %v", u)
		require.False(t, math.IsNaN(z) || math.IsInf(z, 0), "z = %v", z)
		require.True(t, p >= 0 && p <= 1, "p = %v", p)
		u2, _, _, _ := MannWhitney(b, a)
		require.Equal(t, pairs, u+u2)
	})
}

// floats maps bytes to a few values, so that ties are common; with special,
// byte 255 is NaN and 254 and 253 are infinities.
func floats(b []byte, special bool) []float64 {
	s := make([]float64, len(b))
	for i, c := range b {
		s[i] = float64(c % 16)
		if special {
			switch c {
			case 255:
				s[i] = math.NaN()
			case 254:
				s[i] = math.Inf(1)
			case 253:
				s[i] = math.Inf(-1)
			}
		}
	}
	return s
}

// FuzzCountsUnmarshal: any bytes decode or are refused without a panic;
// what decodes encodes back to the same bytes (the encoding is unique) and
// expands into a bounded Arm; what is refused leaves the Counts as it was.
func FuzzCountsUnmarshal(f *testing.F) {
	var step Recorder
	next := latency(1, 10*ms, 5*ms)
	for i := range 2000 {
		step.Record(next(), i%50 == 0)
	}
	full := Counts{Requests: math.MaxUint64, Errors: math.MaxUint64}
	for i := range full.Buckets {
		full.Buckets[i] = math.MaxUint64
	}
	for _, c := range []Counts{{}, step.Snapshot(), full} {
		b, err := c.MarshalBinary()
		require.NoError(f, err)
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{2, 0, 0})
	f.Add([]byte{1, 0x80, 0x00, 0})
	f.Add([]byte{1, 5, 0, 0xc0, 0x03, 5})
	f.Add([]byte{1, 5, 0, 1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		c := Counts{Requests: 7}
		c.Buckets[3] = 9
		before := c
		if err := c.UnmarshalBinary(data); err != nil {
			require.Equal(t, before, c, "a refused encoding changes nothing")
			return
		}
		b, err := c.MarshalBinary()
		require.NoError(t, err)
		require.Equal(t, data, b)
		var again Counts
		require.NoError(t, again.UnmarshalBinary(b))
		require.Equal(t, c, again)
		a := c.Arm()
		require.LessOrEqual(t, a.Errors(), a.Requests())
		require.LessOrEqual(t, len(a.Latencies()), armPoints+NumBuckets)
		require.GreaterOrEqual(t, len(a.Latencies()), c.nonEmpty())
	})
}
