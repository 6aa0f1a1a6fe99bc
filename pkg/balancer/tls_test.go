package balancer

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
)

// testCert is a self-signed ECDSA P-256 certificate for names, and a pool
// that trusts it.
func testCert(t testing.TB, names ...string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// serveTLS serves b over TLS on loopback and returns the address.
func serveTLS(t *testing.T, b *Balancer, cert tls.Certificate) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12}
	done := make(chan error, 1)
	go func() { done <- b.ServeTLS(ln, cfg) }()
	t.Cleanup(func() { // before serveBalancer's Shutdown
		b.StopAccepting()
		assert.ErrorIs(t, <-done, ErrServerClosed)
	})
	return ln.Addr().String()
}

func h1Client(pool *x509.CertPool) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "gw.test"},
		TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{}, // no h2
	}}
}

func h2Client(pool *x509.CertPool) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http2.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "gw.test"},
	}}
}

func h2cClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
}

// TestTLSAndHTTP2 serves the same backends over TLS to an HTTP/1.1 client
// and an HTTP/2 client: both reach them, X-Forwarded-Proto says https, the
// answers carry HSTS, the streams of one HTTP/2 connection spread over the
// backends, and the metrics count each protocol.
func TestTLSAndHTTP2(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		var mu sync.Mutex
		seen := map[string]string{}
		backends := startBackends(t, 3, func(i int) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				seen[r.Proto+" "+r.Header.Get("X-Forwarded-Proto")] = r.Host
				mu.Unlock()
				fmt.Fprintf(w, "%d %s", i, r.URL.Path)
			}
		})
		cfg := testConfig()
		cfg.HSTS = 24 * time.Hour
		reg := prometheus.NewRegistry()
		cfg.Registerer = reg
		b, _ := serveBalancer(t, rl, cfg)
		setBackends(b, backends)
		cert, pool := testCert(t, "gw.test")
		addr := serveTLS(t, b, cert)

		for name, client := range map[string]*http.Client{"HTTP/1.1": h1Client(pool), "HTTP/2.0": h2Client(pool)} {
			resp, err := client.Get("https://" + addr + "/x")
			require.NoError(t, err, name)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, http.StatusOK, resp.StatusCode, name)
			assert.Equal(t, name, resp.Proto)
			assert.Contains(t, string(body), " /x")
			assert.Equal(t, "max-age=86400", resp.Header.Get("Strict-Transport-Security"), name)
		}
		mu.Lock()
		assert.Equal(t, addr, seen["HTTP/1.1 https"], "the backend gets HTTP/1.1, X-Forwarded-Proto https, the Host kept")
		mu.Unlock()

		// 60 streams at once on one HTTP/2 connection reach every backend.
		client := h2Client(pool)
		var wg sync.WaitGroup
		var bmu sync.Mutex
		by := map[string]int{}
		for range 60 {
			wg.Go(func() {
				resp, err := client.Get("https://" + addr + "/")
				if !assert.NoError(t, err) {
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				bmu.Lock()
				by[strings.Fields(string(body))[0]]++
				bmu.Unlock()
			})
		}
		wg.Wait()
		assert.Len(t, by, 3, "one connection's streams spread over the backends: %v", by)
		assert.Equal(t, 1.0, gathered(t, reg, `herd_gateway_connections_total{proto="https"}`))
		assert.GreaterOrEqual(t, gathered(t, reg, `herd_gateway_connections_total{proto="h2"}`), 2.0)
		assert.Equal(t, 61.0, gathered(t, reg, `herd_gateway_request_duration_seconds{proto="h2",service="predictor"}`))
	})
}

// TestH2CAndRedirect: on a plain listener, a client that starts with the
// HTTP/2 preface is served HTTP/2 (H2C); with RedirectHTTPS, plain
// HTTP/1.1 and h2c requests are answered 308 to https, but the health
// path.
func TestH2CAndRedirect(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		backends := startBackends(t, 1, func(int) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "%s %s", r.Proto, r.URL.Path) }
		})
		cfg := testConfig()
		cfg.H2C = true
		b, f := serveBalancer(t, rl, cfg)
		setBackends(b, backends)
		resp, err := h2cClient().Get(f.URL + "/a")
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, "HTTP/2.0", resp.Proto)
		assert.Equal(t, "HTTP/1.1 /a", string(body))
		code, body1 := get(t, f.URL+"/b")
		assert.Equal(t, 200, code)
		assert.Equal(t, "HTTP/1.1 /b", body1, "HTTP/1.1 still served on the same listener")

		cfg.RedirectHTTPS, cfg.HTTPSPort = true, 8443
		b2, f2 := serveBalancer(t, rl, cfg)
		setBackends(b2, backends)
		noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err = noFollow.Get(f2.URL + "/p?q=1")
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusPermanentRedirect, resp.StatusCode)
		assert.Equal(t, "https://127.0.0.1:8443/p?q=1", resp.Header.Get("Location"))
		code, body1 = get(t, f2.URL+"/healthz")
		assert.Equal(t, 200, code, "the health path is served in clear")
		assert.Equal(t, "HTTP/1.1 /healthz", body1)
		h2c := h2cClient()
		h2c.CheckRedirect = noFollow.CheckRedirect
		resp, err = h2c.Get(f2.URL + "/p")
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusPermanentRedirect, resp.StatusCode)
	})
}

// TestGRPCShapedStreamsThroughH2C: a service whose backends speak h2c gets
// HTTP/2 streams through: request and answer bodies streaming both ways at
// once (each line echoed before the next is sent), trailers, and the
// backend's grpc-status.
func TestGRPCShapedStreamsThroughH2C(t *testing.T) {
	h := h2c.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		sc := bufio.NewScanner(r.Body)
		for sc.Scan() {
			fmt.Fprintf(w, "echo %s %s\n", sc.Text(), r.Header.Get("Te"))
			w.(http.Flusher).Flush()
		}
		w.Header().Set("Grpc-Status", "0")
	}), &http2.Server{})
	backends := startBackends(t, 2, func(int) http.HandlerFunc { return h.ServeHTTP })
	b, f := serveBalancer(t, relays[0], testConfig())
	b.Service("predictor").SetProtocol(H2C)
	setBackends(b, backends)
	cert, pool := testCert(t, "gw.test")
	addr := serveTLS(t, b, cert)

	pr, pw := io.Pipe()
	req, err := http.NewRequest(http.MethodPost, "https://"+addr+"/pkg.Svc/Stream", pr)
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	resp, err := h2Client(pool).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	lines := bufio.NewReader(resp.Body)
	for i := range 3 { // each message answered before the next is sent: streaming both ways
		_, err := fmt.Fprintf(pw, "m%d\n", i)
		require.NoError(t, err)
		line, err := lines.ReadString('\n')
		require.NoError(t, err)
		assert.Equal(t, fmt.Sprintf("echo m%d trailers\n", i), line)
	}
	require.NoError(t, pw.Close())
	_, err = io.ReadAll(lines)
	require.NoError(t, err)
	assert.Equal(t, "0", resp.Trailer.Get("Grpc-Status"), "trailers pass through")

	// An HTTP/1.1 request cannot reach a service that speaks HTTP/2 only:
	// a clear 505, not a garbled exchange with the backend.
	code, body := get(t, f.URL+"/pkg.Svc/Unary")
	assert.Equal(t, http.StatusHTTPVersionNotSupported, code)
	assert.Contains(t, body, `service "predictor" speaks HTTP/2 only`)
}

// TestTLSHandshakeLimits: a client that offers only TLS 1.0 is refused; a
// handshake that stalls is cut at the timeout; neither disturbs others.
func TestTLSHandshakeLimits(t *testing.T) {
	cfg := testConfig()
	cfg.TLSHandshakeTimeout = 200 * time.Millisecond
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	b, _ := serveBalancer(t, relays[1], cfg)
	setBackends(b, startBackends(t, 1, nil))
	cert, pool := testCert(t, "gw.test")
	addr := serveTLS(t, b, cert)

	_, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "gw.test", MaxVersion: tls.VersionTLS10})
	require.Error(t, err, "TLS 1.0 is refused")

	stalled, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer stalled.Close()
	_ = stalled.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = stalled.Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF, "a silent client is cut at the handshake timeout")
	// crypto/tls closes the connection as the handshake's context ends, a
	// moment before the gateway counts it.
	handshakeErrors := func(reason string) func() bool {
		return func() bool {
			mfs, _ := reg.Gather()
			for _, mf := range mfs {
				for _, m := range mf.GetMetric() {
					if mf.GetName() == "herd_gateway_tls_handshake_errors_total" && m.GetLabel()[0].GetValue() == reason {
						return m.GetCounter().GetValue() == 1
					}
				}
			}
			return false
		}
	}
	assert.Eventually(t, handshakeErrors("timeout"), 5*time.Second, 10*time.Millisecond, "one handshake timed out")
	assert.Eventually(t, handshakeErrors("protocol"), 5*time.Second, 10*time.Millisecond, "one refused (TLS 1.0)")

	resp, err := h1Client(pool).Get("https://" + addr + "/")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
}
