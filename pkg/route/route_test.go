package route

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]Route{
		"api.example.com/predict": {Host: "api.example.com", Prefix: "/predict"},
		"/predict":                {Prefix: "/predict"},
		"/predict/":               {Prefix: "/predict"},
		"/":                       {Prefix: "/"},
		"tone.example.com":        {Host: "tone.example.com", Prefix: "/"},
		"*.Tone.example.com":      {Host: "*.tone.example.com", Prefix: "/"},
		"api.example.com/a%20b":   {Host: "api.example.com", Prefix: "/a%20b"},
	} {
		got, err := Parse(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for in, says := range map[string]string{
		"":                         "empty",
		"http://api.example.com/":  "no scheme",
		"/predict?x=1":             "no query",
		"/a#b":                     "no query or fragment",
		"api.example.com:8080/x":   "without a port",
		"*.*.example.com":          "want a name",
		"a*.example.com":           "want a name",
		"/a b":                     "not a valid path",
		"api example.com":          "want a name",
		"/a//b":                    "not a valid path",
		"[::1]/x":                  "without a port",
		strings.Repeat("a", 300):   "longer than",
		"/a%zz":                    "not a valid path",
		"api.example.com/caf\xc3é": "not a valid path",
	} {
		_, err := Parse(in)
		require.Error(t, err, in)
		assert.Contains(t, err.Error(), says, in)
	}
}

func TestParseAllEncodeDecodeHash(t *testing.T) {
	rs, err := ParseAll([]string{"api.example.com/predict", "/predict", "/predict/"})
	require.NoError(t, err)
	assert.Len(t, rs, 2, "each once")
	enc := Encode(rs)
	assert.Equal(t, "api.example.com/predict /predict", enc)
	back, err := Decode(enc)
	require.NoError(t, err)
	assert.Equal(t, rs, back)
	assert.Len(t, Hash(rs), 24)
	assert.NotEqual(t, Hash(rs), Hash(rs[:1]))
	many := make([]string, MaxPerService+1)
	for i := range many {
		many[i] = "/r" + strings.Repeat("x", i%5)
	}
	_, err = ParseAll(many)
	assert.ErrorContains(t, err, "at most 100 per service")
	_, err = Decode("/ok http://x/")
	assert.Error(t, err)
}

// FuzzDecode: a route list from a member's tags or a fetched table either
// fails to decode or decodes to routes that encode back to a list decoding
// to the same routes; each route parses back to itself.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{"api.example.com/predict /predict", "*.example.com", "/", "a/b%2Fc/ /x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rs, err := Decode(s)
		if err != nil {
			return
		}
		again, err := Decode(Encode(rs))
		if err != nil || len(again) != len(rs) {
			t.Fatalf("%q → %v → %q → %v, %v", s, rs, Encode(rs), again, err)
		}
		for i, r := range rs {
			if again[i] != r {
				t.Fatalf("route %d: %+v → %+v", i, r, again[i])
			}
			if p, err := Parse(r.String()); err != nil || p != r {
				t.Fatalf("%+v does not parse back: %+v %v", r, p, err)
			}
		}
	})
}
