package certs

import (
	"crypto/tls"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/internal/testutil"
)

// TestTLSConfig: TLS 1.2 and 1.3 only, ECDHE with an AEAD in 1.2, h2 then
// http/1.1 by ALPN.
func TestTLSConfig(t *testing.T) {
	ca := testutil.NewCA(t)
	e := newEnv(t)
	ca.Issue(t, testutil.Leaf{Names: []string{"a.test"}}).Write(t, e.dir, "a")
	r := ca.Issue(t, testutil.Leaf{Names: []string{"rsa.test"}, RSA: true})
	r.Write(t, e.dir, "rsa")
	addr := serve(t, e.load(t))

	client := func(name string, mod func(*tls.Config)) (tls.ConnectionState, error) {
		cfg := &tls.Config{ServerName: name, RootCAs: ca.Pool}
		mod(cfg)
		return handshake(addr, cfg)
	}
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		_, err := client("a.test", func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS10, v })
		assert.Error(t, err, "%s refused", tls.VersionName(v))
	}
	for _, suite := range []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256} {
		_, err := client("a.test", func(c *tls.Config) { c.MaxVersion, c.CipherSuites = tls.VersionTLS12, []uint16{suite} })
		assert.Error(t, err, "%s refused", tls.CipherSuiteName(suite))
	}
	for _, suite := range []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA} {
		_, err := client("rsa.test", func(c *tls.Config) { c.MaxVersion, c.CipherSuites = tls.VersionTLS12, []uint16{suite} })
		assert.Error(t, err, "%s refused", tls.CipherSuiteName(suite))
	}
	for name, suite := range map[string]uint16{
		"a.test":   tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		"rsa.test": tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	} {
		st, err := client(name, func(c *tls.Config) { c.MaxVersion, c.CipherSuites = tls.VersionTLS12, []uint16{suite} })
		if assert.NoError(t, err) {
			assert.Equal(t, suite, st.CipherSuite)
		}
	}
	st, err := client("a.test", func(c *tls.Config) { c.NextProtos = []string{"http/1.1", "h2"} })
	require.NoError(t, err)
	assert.Equal(t, uint16(tls.VersionTLS13), st.Version)
	assert.Equal(t, "h2", st.NegotiatedProtocol, "the server's preference")
	st, err = client("a.test", func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	require.NoError(t, err)
	assert.Equal(t, "http/1.1", st.NegotiatedProtocol)
}

// TestSessionResumption: a client coming back resumes its session, in TLS
// 1.2 and 1.3, with the ticket keys crypto/tls keeps in the Config.
func TestSessionResumption(t *testing.T) {
	ca := testutil.NewCA(t)
	e := newEnv(t)
	ca.Issue(t, testutil.Leaf{Names: []string{"a.test"}}).Write(t, e.dir, "a")
	addr := serve(t, e.load(t))
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		cfg := &tls.Config{ServerName: "a.test", RootCAs: ca.Pool, MaxVersion: v, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
		st, err := handshake(addr, cfg)
		require.NoError(t, err)
		assert.False(t, st.DidResume)
		st, err = handshake(addr, cfg)
		require.NoError(t, err)
		assert.True(t, st.DidResume, "%s resumed", tls.VersionName(v))
	}
}
