package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// logBuf collects a logger's lines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// count is how many lines hold s.
func (l *logBuf) count(s string) int {
	n := 0
	for line := range strings.Lines(l.String()) {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// clock is a settable Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is a store under test with what observes it.
type env struct {
	dir  string
	logs *logBuf
	reg  *prometheus.Registry
	cfg  Config
}

func newEnv(t testing.TB) *env {
	e := &env{dir: t.TempDir(), logs: &logBuf{}, reg: prometheus.NewRegistry()}
	e.cfg = Config{Dir: e.dir, Registerer: e.reg,
		Logger: hclog.New(&hclog.LoggerOptions{Output: e.logs, Level: hclog.Debug})}
	return e
}

func (e *env) load(t testing.TB) *Store {
	t.Helper()
	s, err := Load(e.cfg)
	require.NoError(t, err)
	return s
}

// reloads is herd_gateway_tls_reloads_total{result}.
func (s *Store) reloads(result string) float64 {
	if result == "loaded" {
		return promtest.ToFloat64(s.metrics.loaded)
	}
	return promtest.ToFloat64(s.metrics.refused)
}

// serve starts a TLS server on loopback with s.TLSConfig: each connection
// is handshaken, answered "ok" (so that the client reads the session
// tickets sent after the handshake), and closed when the client closes.
func serve(t testing.TB, s *Store) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", s.TLSConfig())
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if c.(*tls.Conn).Handshake() != nil {
					return
				}
				if _, err := c.Write([]byte("ok")); err == nil {
					_, _ = io.Copy(io.Discard, c)
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// handshake connects to addr with cfg, reads the server's "ok", and returns
// the connection's state.
func handshake(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2)
	if _, err := io.ReadFull(c, buf); err != nil {
		return tls.ConnectionState{}, err
	}
	if string(buf) != "ok" {
		return tls.ConnectionState{}, errors.New("server said " + string(buf))
	}
	return c.ConnectionState(), nil
}

// served returns the certificate addr serves for serverName. With roots,
// the client verifies it for serverName as a browser would; without, it
// verifies nothing (for names no certificate covers).
func served(t testing.TB, addr, serverName string, roots *x509.CertPool) *x509.Certificate {
	t.Helper()
	st, err := handshake(addr, &tls.Config{ServerName: serverName, RootCAs: roots, InsecureSkipVerify: roots == nil})
	require.NoError(t, err, "handshake for %q", serverName)
	return st.PeerCertificates[0]
}
