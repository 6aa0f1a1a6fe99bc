package runtime

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParseImage(t *testing.T) {
	good := map[string]Image{
		"predictor:1.0.0":           {Name: "predictor", Tag: "1.0.0"},
		"team/predictor:v2_rc-1":    {Name: "team/predictor", Tag: "v2_rc-1"},
		"registry.local/a/b:latest": {Name: "registry.local/a/b", Tag: "latest"}, // latest, when asked for
		"a__b-c---d:1":              {Name: "a__b-c---d", Tag: "1"},
		// Registry hosts with a port, which the old grammar read as a tag.
		"registry:5000/team/predictor:1.1.0": {Name: "registry:5000/team/predictor", Tag: "1.1.0"},
		"[::1]:5000/predictor:1":             {Name: "[::1]:5000/predictor", Tag: "1"},
		"Registry.Local:5000/predictor:1":    {Name: "Registry.Local:5000/predictor", Tag: "1"},
		"localhost:5000":                     {Name: "localhost", Tag: "5000"}, // as Docker reads it
		// Kept as written, not expanded to docker.io/library/….
		"docker.io/library/predictor:1": {Name: "docker.io/library/predictor", Tag: "1"},
		// Digests, alone or with a tag.
		"predictor@sha256:" + hex64:       {Name: "predictor", Digest: "sha256:" + hex64},
		"predictor:1.1.0@sha256:" + hex64: {Name: "predictor", Tag: "1.1.0", Digest: "sha256:" + hex64},
		"registry:5000/p@sha256:" + hex64: {Name: "registry:5000/p", Digest: "sha256:" + hex64},
		"p@sha512:" + hex64 + hex64:       {Name: "p", Digest: "sha512:" + hex64 + hex64},
	}
	for s, want := range good {
		got, err := ParseImage(s)
		require.NoError(t, err, s)
		assert.Equal(t, want, got, s)
		assert.Equal(t, s, got.String())
	}
	bad := map[string]string{
		"":                               "invalid",
		"predictor":                      "want name:tag",
		"registry:5000/team/predictor":   "want name:tag",
		"predictor:":                     "invalid reference format",
		":1.0":                           "invalid reference format",
		"Predictor:1.0":                  "must be lowercase",
		"team/Predictor:1.0":             "must be lowercase",
		"../x:1":                         "invalid reference format",
		"a/../b:1":                       "invalid reference format",
		"a//b:1":                         "invalid reference format",
		"a-:1":                           "invalid reference format",
		"/abs:1":                         "invalid reference format",
		"a:-x":                           "invalid reference format",
		"a:b c":                          "invalid reference format",
		"a:1:2":                          "invalid reference format",
		"a:" + strings.Repeat("t", 129):  "invalid reference format",
		strings.Repeat("n", 256) + ":1":  "must not be more than 255 characters",
		"predictor@sha256:0123":          "invalid",
		"predictor@md5:" + hex64[:32]:    "unsupported digest algorithm",
		"predictor@SHA256:" + hex64:      "invalid",
		"predictor@sha256:" + hex64[:63]: "invalid",
		"sha256:" + hex64:                "an image ID",
		hex64:                            "an image ID",
	}
	for s, want := range bad {
		_, err := ParseImage(s)
		assert.ErrorContains(t, err, want, "%q", s)
	}
}

func FuzzParseImage(f *testing.F) {
	for _, s := range []string{"predictor:1.0.0", "a/b:c", "../../etc:passwd", "x:", "registry:5000/team/predictor:1.1.0",
		"predictor@sha256:" + hex64, "predictor:1.1.0@sha256:" + hex64, "[::1]:5000/a:1", "localhost:5000", "sha256:" + hex64,
		"a/../b:1", "a/./b:1", "predictor:..", "docker.io/library/predictor:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		img, err := ParseImage(s)
		if err != nil {
			return
		}
		// A parsed image prints back as given, parses back to itself, has
		// a tag or a digest, and no part of it can name a path outside a
		// directory it is joined to.
		require.Equal(t, s, img.String())
		again, err := ParseImage(img.String())
		require.NoError(t, err)
		require.Equal(t, img, again)
		require.True(t, img.Tag != "" || img.Digest != "")
		for _, part := range strings.Split(img.Name, "/") {
			require.NotContains(t, []string{"", ".", ".."}, part, "name %q", img.Name)
		}
		require.NotContains(t, img.Tag, "/")
		require.NotContains(t, []string{".", ".."}, img.Tag)
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

func TestArmNames(t *testing.T) {
	for _, tc := range []struct {
		arm      Arm
		instance string
	}{{ArmStable, "n1/3"}, {ArmCanary, "n1/canary3"}, {ArmBaseline, "n1/baseline3"}} {
		assert.True(t, tc.arm.Valid())
		assert.Equal(t, tc.instance, Spec{Node: "n1", Arm: tc.arm, Index: 3}.Instance())
	}
	assert.False(t, Arm("blue").Valid())
}
