package autoscale

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLoadWire(t *testing.T) {
	at := func(s int64) time.Time { return time.Unix(1764676800+s, 0) }
	in := []Sample{{at(1), 3.14}, {at(2), 4}, {at(5), 0}, {at(6), 12345.67}}
	b := EncodeLoad(in)
	assert.Equal(t, "1764676801 3.1 4 - - 0 12345.7", string(b))
	out, err := DecodeLoad(b)
	require.NoError(t, err)
	assert.Equal(t, []Sample{{at(1), 3.1}, {at(2), 4}, {at(5), 0}, {at(6), 12345.7}}, out)

	full := make([]Sample, MaxLoadBuckets+10)
	for i := range full {
		full[i] = Sample{At: at(int64(i)), InFlight: 9999.9}
	}
	b = EncodeLoad(full)
	assert.Less(t, len(b), 1024, "an answer fits Serf's limit")
	out, err = DecodeLoad(b)
	require.NoError(t, err)
	assert.Len(t, out, MaxLoadBuckets, "the latest buckets")

	req := EncodeLoadRequest("predictor", at(0))
	svc, since, err := DecodeLoadRequest(req)
	require.NoError(t, err)
	assert.Equal(t, "predictor", svc)
	assert.True(t, since.Equal(at(0)))

	for _, bad := range []string{"x", "1 NaN", "1 -1", "1 +Inf", "1 a", "-5 1"} {
		_, err := DecodeLoad([]byte(bad))
		assert.Error(t, err, bad)
	}
	for _, bad := range []string{"", "predictor", " 1", "a b c", "a -1", "a x"} {
		_, _, err := DecodeLoadRequest([]byte(bad))
		assert.Error(t, err, bad)
	}
}

func FuzzDecodeLoad(f *testing.F) {
	f.Add([]byte("1764676801 3.1 4 - - 0 12345.7"))
	f.Add([]byte("0"))
	f.Add([]byte("1 1e308 -"))
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := DecodeLoad(b)
		if err != nil {
			return
		}
		require.LessOrEqual(t, len(out), MaxLoadBuckets)
		for i, s := range out {
			require.GreaterOrEqual(t, s.InFlight, 0.0)
			if i > 0 {
				require.True(t, s.At.After(out[i-1].At), "in time order")
			}
		}
		again, err := DecodeLoad(EncodeLoad(out))
		require.NoError(t, err)
		require.Len(t, again, len(out))
	})
}
