package runtime

import (
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseImage(t *testing.T) {
	good := map[string]Image{
		"predictor:1.0.0":           {"predictor", "1.0.0"},
		"team/predictor:v2_rc-1":    {"team/predictor", "v2_rc-1"},
		"registry.local/a/b:latest": {"registry.local/a/b", "latest"},
	}
	for s, want := range good {
		got, err := ParseImage(s)
		require.NoError(t, err, s)
		assert.Equal(t, want, got)
		assert.Equal(t, s, got.String())
	}
	for _, s := range []string{"", "predictor", "predictor:", ":1.0", "Predictor:1.0", "../x:1", "a//b:1", "a:-x", "a:b c", "a:1:2", "/abs:1"} {
		_, err := ParseImage(s)
		assert.Error(t, err, s)
	}
}

func FuzzParseImage(f *testing.F) {
	for _, s := range []string{"predictor:1.0.0", "a/b:c", "../../etc:passwd", "x:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		img, err := ParseImage(s)
		if err != nil {
			return
		}
		// A parsed image never escapes its directory and prints back as given.
		assert.Equal(t, s, img.String())
		assert.NotContains(t, img.Name, "..")
		assert.NotContains(t, img.Tag, "/")
	})
}

func TestCheckPortFree(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	ap := netip.MustParseAddrPort(l.Addr().String())
	err = CheckPortFree(ap.Addr(), ap.Port())
	require.ErrorIs(t, err, ErrPortInUse)
	assert.Contains(t, err.Error(), "port ")
	l.Close()
	assert.NoError(t, CheckPortFree(ap.Addr(), ap.Port()))
}
