package canary

import (
	"bytes"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCountsEncoding(t *testing.T) {
	var small Counts
	small.Requests, small.Errors = 300, 2
	small.Buckets[0] = 1
	small.Buckets[2] = 200
	small.Buckets[NumBuckets-1] = 97
	full := Counts{Requests: math.MaxUint64, Errors: math.MaxUint64}
	for i := range full.Buckets {
		full.Buckets[i] = math.MaxUint64
	}
	for _, tc := range []struct {
		name string
		c    Counts
		want []byte
	}{
		{"zero", Counts{}, []byte{1, 0, 0}},
		{"small", small, []byte{1, 0xac, 0x02, 2, 1, 1, 2, 0xc8, 0x01, 0xbd, 0x03, 97}},
		{"full", full, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.c.MarshalBinary()
			require.NoError(t, err)
			if tc.want != nil {
				assert.Equal(t, tc.want, b)
			}
			var got Counts
			require.NoError(t, got.UnmarshalBinary(b))
			assert.Equal(t, tc.c, got)
		})
	}
	b, _ := full.MarshalBinary()
	assert.Len(t, b, 1+10+10+NumBuckets*(1+10), "the largest encoding")
}

// TestCountsEncodingSize: a step's counts of an arm encode in a few hundred
// bytes at most.
func TestCountsEncodingSize(t *testing.T) {
	for _, tc := range []struct {
		name     string
		requests int
		next     func() time.Duration
		max      int
	}{
		// A canary at 5 % of 1,000 requests a second for 30 s.
		{"1,500 requests, 10 ms + 5 ms exponential", 1500, latency(1, 10*ms, 5*ms), 150},
		// At 25 % of 2,000 requests a second.
		{"15,000 requests, 10 ms + 5 ms exponential", 15_000, latency(2, 10*ms, 5*ms), 200},
		{"15,000 requests, 3 ms + 20 ms exponential", 15_000, latency(3, 3*ms, 20*ms), 300},
		{"100,000 requests, 3 ms + 20 ms exponential", 100_000, latency(4, 3*ms, 20*ms), 300},
	} {
		c := recorded(tc.requests, tc.requests/100, tc.next)
		b, err := c.MarshalBinary()
		require.NoError(t, err)
		t.Logf("%s: %d non-empty buckets, %d bytes", tc.name, c.nonEmpty(), len(b))
		assert.LessOrEqual(t, len(b), tc.max, tc.name)
	}
}

func TestCountsDecodeErrors(t *testing.T) {
	over := append([]byte{1}, bytes.Repeat([]byte{0xff}, 10)...)
	over = append(over, 0x7f)
	for _, tc := range []struct {
		name, data, err string
	}{
		{"empty", "", "counts: empty encoding"},
		{"unknown version", "\x02\x00\x00", "counts: encoding version 2, want 1"},
		{"version 0", "\x00", "counts: encoding version 0, want 1"},
		{"no requests", "\x01", "counts: byte 1: requests cut short"},
		{"requests cut", "\x01\x80", "counts: byte 1: requests cut short"},
		{"no errors", "\x01\x05", "counts: byte 2: errors cut short"},
		{"requests overflow", string(over), "counts: byte 1: requests overflows 64 bits"},
		{"long form", "\x01\x80\x00\x00", "counts: byte 1: requests not in its shortest form"},
		{"long form of a count", "\x01\x05\x00\x01\x85\x00", "counts: byte 4: bucket count not in its shortest form"},
		{"bucket step 0", "\x01\x05\x00\x00\x05", "counts: byte 3: bucket index step 0 after bucket -1 out of range 1-448"},
		{"bucket repeated", "\x01\x05\x00\x01\x02\x00\x03", "counts: byte 5: bucket index step 0 after bucket 0 out of range 1-447"},
		{"bucket past the last", "\x01\x05\x00\xc1\x03\x01", "counts: byte 3: bucket index step 449 after bucket -1 out of range 1-448"},
		{"count missing", "\x01\x05\x00\x01", "counts: byte 4: bucket count cut short"},
		{"count 0", "\x01\x05\x00\x01\x00", "counts: byte 4: bucket 0 with a count of 0 (empty buckets are left out)"},
		{"a byte after the last pair", "\x01\x05\x00\x01\x05\x02", "counts: byte 6: bucket count cut short"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Counts{Requests: 7}
			c.Buckets[3] = 9
			before := c
			err := c.UnmarshalBinary([]byte(tc.data))
			assert.EqualError(t, err, tc.err)
			assert.Equal(t, before, c, "left as it was")
		})
	}

	// The last bucket is in range; a step to it from the one before too.
	var c Counts
	require.NoError(t, c.UnmarshalBinary([]byte("\x01\x05\x00\xc0\x03\x05")))
	assert.Equal(t, uint64(5), c.Buckets[NumBuckets-1])
	require.NoError(t, c.UnmarshalBinary([]byte("\x01\x05\x00\xbf\x03\x02\x01\x03")))
	assert.Equal(t, uint64(2), c.Buckets[NumBuckets-2])
	assert.Equal(t, uint64(3), c.Buckets[NumBuckets-1])
}
