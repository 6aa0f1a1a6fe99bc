package membership

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/runtime"
)

func agentTags() Tags {
	return Tags{
		Role: RoleAgent, Service: "predictor", Image: "predictor:1.0.0",
		HostIP: netip.MustParseAddr("127.0.0.2"), Ports: []uint16{8000, 8001, 8002, 8005},
		Gen: 7, State: StateActive, Want: "predictor:1.0.0", Count: 4,
	}
}

func TestTagsRolloutFields(t *testing.T) {
	// Mid-rollout: one replica withdrawn, converging to 1.1.0.
	tags := agentTags()
	tags.Want, tags.Count, tags.Ports = "predictor:1.1.0", 4, []uint16{8000, 8001, 8002}
	m, err := tags.Encode()
	require.NoError(t, err)
	got, err := DecodeTags(m)
	require.NoError(t, err)
	assert.Equal(t, tags, got)
	assert.False(t, got.Converged("predictor:1.1.0"))
	assert.False(t, got.Converged("predictor:1.0.0"), "a replica is missing")

	done := agentTags()
	done.Image, done.Want = "predictor:1.1.0", "predictor:1.1.0"
	assert.True(t, done.Converged("predictor:1.1.0"))
	done.State = StateDraining
	assert.False(t, done.Converged("predictor:1.1.0"))

	// Older agents without the fields: defaults from img and ports.
	delete(m, "want")
	delete(m, "n")
	got, err = DecodeTags(m)
	require.NoError(t, err)
	assert.Equal(t, "predictor:1.0.0", got.Want)
	assert.Equal(t, 3, got.Count)

	for _, bad := range []map[string]string{{"want": "nope"}, {"n": "-1"}, {"n": "x"}, {"n": "1001"}} {
		mm, _ := agentTags().Encode()
		for k, v := range bad {
			mm[k] = v
		}
		_, err := DecodeTags(mm)
		assert.Error(t, err, "%v", bad)
	}
}

func TestTagsRoundTrip(t *testing.T) {
	for _, tags := range []Tags{agentTags(), {Role: RoleGateway, Gen: 1}} {
		m, err := tags.Encode()
		require.NoError(t, err)
		got, err := DecodeTags(m)
		require.NoError(t, err)
		assert.Equal(t, tags, got)
	}
	m, err := agentTags().Encode()
	require.NoError(t, err)
	assert.Equal(t, "8000-8002,8005", m["ports"])
}

func TestTagsProtocol(t *testing.T) {
	for _, p := range []Protocol{ProtoH2C, ProtoGRPC} {
		tags := agentTags()
		tags.Protocol = p
		m, err := tags.Encode()
		require.NoError(t, err)
		assert.Equal(t, string(p), m["pr"])
		got, err := DecodeTags(m)
		require.NoError(t, err)
		assert.Equal(t, tags, got)
	}
	// http is the default: no tag, and an old agent's tags read as http.
	tags := agentTags()
	tags.Protocol = ProtoHTTP
	m, err := tags.Encode()
	require.NoError(t, err)
	assert.NotContains(t, m, "pr")
	got, err := DecodeTags(m)
	require.NoError(t, err)
	assert.Equal(t, Protocol(""), got.Protocol)
	m["pr"] = "http"
	_, err = DecodeTags(m)
	assert.NoError(t, err, "http said explicitly")

	for _, bad := range []string{"HTTP", "grpc2", "h2", strings.Repeat("x", 300)} {
		m["pr"] = bad
		_, err := DecodeTags(m)
		assert.ErrorContains(t, err, "tag pr: protocol", "%q", bad)
	}
	tags.Protocol = "spdy"
	_, err = tags.Encode()
	assert.Error(t, err)
	p, err := ParseProtocol("")
	require.NoError(t, err)
	assert.Equal(t, ProtoHTTP, p)
}

func TestDecodeTagsRejectsMalformed(t *testing.T) {
	good, err := agentTags().Encode()
	require.NoError(t, err)
	cases := map[string]map[string]string{
		"unknown role":      {"role": "boss"},
		"bad gen":           {"gen": "x"},
		"negative gen":      {"gen": "-1"},
		"bad ip":            {"ip": "300.1.1.1"},
		"unspecified ip":    {"ip": "0.0.0.0"},
		"port zero":         {"ports": "0"},
		"port too big":      {"ports": "70000"},
		"port range back":   {"ports": "8005-8001"},
		"ports unordered":   {"ports": "8005,8001"},
		"ports overlapping": {"ports": "8000-8005,8003"},
		"too many ports":    {"ports": "1-2000"},
		"port junk":         {"ports": "80a"},
		"port long":         {"ports": "0000000080"},
		"empty part":        {"ports": "8000,,8001"},
		"bad service":       {"svc": "Has Spaces"},
		"bad image":         {"img": "predictor"},
		"bad state":         {"state": "dancing"},
	}
	for name, override := range cases {
		t.Run(name, func(t *testing.T) {
			m := map[string]string{}
			for k, v := range good {
				m[k] = v
			}
			for k, v := range override {
				m[k] = v
			}
			_, err := DecodeTags(m)
			assert.Error(t, err)
		})
	}
	_, err = DecodeTags(map[string]string{"foo": "bar"})
	assert.ErrorIs(t, err, ErrNotHerd)
}

// TestTagsImageGrammar: img and want are read by runtime.ParseImage, the
// grammar the agents run images with (Docker's), so registry hosts and
// digests are accepted, and names the agents could not run are refused.
func TestTagsImageGrammar(t *testing.T) {
	const digest = "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	accepted := []string{
		"predictor:1.1.0",
		"team/predictor:v2_rc-1",
		"registry:5000/team/predictor:1.1.0", // refused before: the port read as a tag
		"[::1]:5000/predictor:1",
		"predictor" + digest, // refused before: no digests
		"registry:5000/team/predictor:1.1.0" + digest,
		strings.Repeat("n", 200) + ":1", // refused before: names were at most 128 bytes
	}
	refused := []string{
		"predictor",     // no tag: Herd never assumes latest
		"Predictor:1.0", // upper case
		"a//b:1",        // accepted before, though no agent could run it
		"a/../b:1",      // accepted before: a path that climbs out of the images dir
		"a-:1",          // accepted before
		"predictor:1.0.0:x",
		"predictor@sha256:0123",
		"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	}
	for _, key := range []string{"img", "want"} {
		for _, img := range accepted {
			m, err := agentTags().Encode()
			require.NoError(t, err)
			m[key] = img
			tags, err := DecodeTags(m)
			require.NoError(t, err, "%s=%s", key, img)
			m2, err := tags.Encode()
			require.NoError(t, err, "%s=%s", key, img)
			assert.Equal(t, img, m2[key])
		}
		for _, img := range refused {
			m, err := agentTags().Encode()
			require.NoError(t, err)
			m[key] = img
			_, err = DecodeTags(m)
			assert.ErrorContains(t, err, "tag "+key+": image ", "%s=%s", key, img)

			tags := agentTags()
			if key == "img" {
				tags.Image = img
			} else {
				tags.Want = img
			}
			_, err = tags.Encode()
			assert.Error(t, err, "Encode %s=%s", key, img)
		}
	}
}

func TestEncodeRefusesOversizedImages(t *testing.T) {
	// Both valid, but an image and a wanted image this long do not fit in
	// the 512 bytes gossip allows a member's tags.
	tags := agentTags()
	tags.Image = "registry.example.com:5000/" + strings.Repeat("a", 200) + ":1.0.0"
	tags.Want = "registry.example.com:5000/" + strings.Repeat("a", 200) + ":1.1.0"
	_, err := tags.Encode()
	assert.ErrorContains(t, err, "more than the 512 gossip allows")
}

func TestEncodeRefusesOversizedTags(t *testing.T) {
	tags := agentTags()
	tags.Ports = nil
	for p := uint16(1000); p < 1400; p += 2 { // no ranges: every port spelled out
		tags.Ports = append(tags.Ports, p)
	}
	_, err := tags.Encode()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "bytes")
}

func TestPortsCodec(t *testing.T) {
	for _, s := range []string{"", "1", "8000-8011", "1,3,5-9,65535"} {
		ports, err := DecodePorts(s)
		require.NoError(t, err, s)
		assert.Equal(t, s, EncodePorts(ports))
	}
}

func FuzzDecodeTags(f *testing.F) {
	f.Add("agent", "predictor", "predictor:1.0.0", "127.0.0.2", "8000-8011", "3", "active", "", "", "", "")
	f.Add("gateway", "", "", "", "", "1", "", "", "", "", "")
	f.Add("agent", "x", "a:b", "::1", "1-1000", "18446744073709551615", "draining", "", "", "", "")
	f.Add("agent", "predictor", "registry:5000/team/predictor:1.1.0", "10.0.0.1", "8000", "2", "active", "", "", "", "")
	f.Add("agent", "predictor", "predictor:1.1.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"10.0.0.1", "8000", "2", "active", "", "", "", "")
	f.Add("agent", "predictor", "a/../b:1", "10.0.0.1", "8000", "2", "active", "", "", "", "")
	f.Add("agent", "web", "web:1", "127.0.0.2", "8000", "2", "active", "api.example.com/v1 /static *.example.org", "", "1", "")
	f.Add("agent", "web", "web:1", "127.0.0.2", "8000", "2", "active", "", "0123456789abcdef01234567:40", "", "")
	f.Add("agent", "web", "web:1", "127.0.0.2", "8000", "2", "active", "/a /a", "0123456789abcdef01234567:0", "2", "")
	f.Add("agent", "rpc", "rpc:1", "127.0.0.2", "8000", "2", "active", "", "", "", "grpc")
	f.Add("agent", "rpc", "rpc:1", "127.0.0.2", "8000", "2", "active", "", "", "", "http")
	f.Fuzz(func(t *testing.T, role, svc, img, ip, ports, gen, state, rt, rth, sp, pr string) {
		m := map[string]string{"role": role, "svc": svc, "img": img, "ip": ip, "ports": ports, "gen": gen, "state": state}
		for k, v := range map[string]string{"rt": rt, "rth": rth, "sp": sp, "pr": pr} {
			if v != "" {
				m[k] = v
			}
		}
		tags, err := DecodeTags(m)
		if err != nil {
			return
		}
		// Whatever decodes must be valid and encode back to the same meaning.
		require.NoError(t, tags.Validate())
		if len(EncodePorts(tags.Ports))+len(strings.Join([]string{role, svc, img, ip, gen, state, rt, rth}, "")) > MaxTagBytes-64 {
			return
		}
		m2, err := tags.Encode()
		require.NoError(t, err)
		again, err := DecodeTags(m2)
		require.NoError(t, err)
		require.Equal(t, tags, again)
	})
}

func FuzzDecodeSyncRequest(f *testing.F) {
	f.Add([]byte(`{"node":"host-1","gen":17}`))
	f.Add([]byte(`{"node":"","gen":1}`))
	f.Add([]byte(`{"node":"x","gen":1,"extra":true}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeSyncRequest(b)
		if err != nil {
			return
		}
		require.NotEmpty(t, r.Node)
		require.LessOrEqual(t, len(b), maxSyncPayload)
	})
}

func FuzzDecodeDeployRequest(f *testing.F) {
	f.Add([]byte(`{"rollout":"r1","image":"predictor:1.1.0"}`))
	f.Add([]byte(`{"rollout":"r1","image":"predictor:1.1.0","check_only":true}`))
	f.Add([]byte(`{"image":"predictor"}`))
	f.Add([]byte(`{"image":"a:b","x":1}`))
	f.Add([]byte(`{"rollout":"r1","image":"registry:5000/team/predictor:1.1.0"}`))
	f.Add([]byte(`{"rollout":"r1","image":"predictor@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}`))
	f.Add([]byte(`{"rollout":"r1","image":"a//b:1"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeDeployRequest(b)
		if err != nil {
			return
		}
		img, err := runtime.ParseImage(r.Image)
		require.NoError(t, err)
		require.Equal(t, r.Image, img.String())
		require.LessOrEqual(t, len(b), maxDeployPayload)
	})
}
