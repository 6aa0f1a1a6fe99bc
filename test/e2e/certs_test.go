package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/internal/testutil"
)

// tlsGateway is an upgradable gateway with a TLS listener on the
// certificates of dir, signed by ca.
type tlsGateway struct {
	*upgradable
	port   int
	dir    string
	ca     *testutil.CA
	caFile string
}

func startTLSGateway(t *testing.T, ca *testutil.CA, dir string, extra ...string) *tlsGateway {
	t.Helper()
	g := &tlsGateway{port: int(testutil.FreePort(t, "127.0.0.1")), dir: dir, ca: ca,
		caFile: filepath.Join(t.TempDir(), "ca.pem")}
	testutil.WriteFile(t, g.caFile, ca.PEM)
	g.upgradable = startUpgradable(t, append([]string{"--tls-listen", fmt.Sprintf("127.0.0.1:%d", g.port),
		"--tls-cert-dir", dir}, extra...)...)
	return g
}

// served is the certificate the TLS listener gives serverName, verified
// against the CA; with no name, the client sends no SNI and verifies
// nothing.
func (g *tlsGateway) served(t *testing.T, serverName string) (*x509.Certificate, error) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", fmt.Sprintf("127.0.0.1:%d", g.port),
		&tls.Config{ServerName: serverName, RootCAs: g.ca.Pool, InsecureSkipVerify: serverName == ""})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

// curl runs curl against the TLS listener for name (resolved to
// 127.0.0.1, verified against the CA) and returns its verbose output.
func (g *tlsGateway) curl(t *testing.T, name, path string, args ...string) string {
	t.Helper()
	cmd := exec.Command(testutil.RequireTool(t, "curl"), append([]string{"-sS", "-v", "--max-time", "10",
		"--resolve", fmt.Sprintf("%s:%d:127.0.0.1", name, g.port), "--cacert", g.caFile,
		fmt.Sprintf("https://%s:%d%s", name, g.port, path)}, args...)...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "curl %s: %s", name, out)
	return string(out)
}

// wrkResult is what one run of wrk reports.
type wrkResult struct {
	requests, non2xx, socketErrs int
	out                          string
}

var (
	wrkRequestsRe = regexp.MustCompile(`(\d+) requests in`)
	wrkErrorsRe   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)|Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// startWrk runs wrk against url for d on a few keep-alive connections;
// the channel gets its result.
func startWrk(t *testing.T, url string, d time.Duration) <-chan wrkResult {
	t.Helper()
	exe := testutil.RequireTool(t, "wrk")
	res := make(chan wrkResult, 1)
	go func() {
		out, err := exec.Command(exe, "-t1", "-c8", "-d"+d.String(), url).CombinedOutput()
		r := wrkResult{out: string(out), socketErrs: -1}
		if m := wrkRequestsRe.FindStringSubmatch(r.out); err == nil && m != nil {
			r.requests, _ = strconv.Atoi(m[1])
			r.socketErrs = 0
			for _, m := range wrkErrorsRe.FindAllStringSubmatch(r.out, -1) {
				for i, v := range m[1:] {
					n, _ := strconv.Atoi(v)
					if i == 0 {
						r.non2xx += n
					} else {
						r.socketErrs += n
					}
				}
			}
		}
		res <- r
	}()
	return res
}

// TestTLS: a gateway with a TLS listener and two names behind it, each
// served its own certificate (curl, HTTP/2 and HTTP/1.1); plain HTTP
// redirected, over HTTP/1.1 and HTTP/2 in clear (--h2c); a certificate
// replaced under wrk load, served within 2 s with no request failed; a bad replacement kept out and shown (clusterctl
// certs, the dashboard); an upgrade on SIGHUP is given up while a bad pair
// is on disk, then hands the TLS listener over under load and reads the
// certificates afresh.
func TestTLS(t *testing.T) {
	ca := testutil.NewCA(t)
	dir := t.TempDir()
	a := ca.Issue(t, testutil.Leaf{Names: []string{"a.test"}})
	a.Write(t, dir, "a")
	b := ca.Issue(t, testutil.Leaf{Names: []string{"b.test", "*.b.test"}})
	b.Write(t, dir, "b")
	soon := ca.Issue(t, testutil.Leaf{Names: []string{"soon.test"}, NotAfter: time.Now().Add(5*24*time.Hour + time.Hour)})
	soon.Write(t, dir, "soon")
	g := startTLSGateway(t, ca, dir, "--tls-default-cert", "a", "--redirect-https", "--hsts", "24h", "--h2c")
	startAgent(t, g.gatewayProc, "tls-a", "127.0.0.2", 2)
	g.waitBackends(t, 2, 30*time.Second)
	tlsURL := fmt.Sprintf("https://127.0.0.1:%d", g.port)

	t.Run("names", func(t *testing.T) {
		for name, want := range map[string]string{"a.test": "CN=a.test", "b.test": "CN=b.test", "x.b.test": "CN=b.test"} {
			out := g.curl(t, name, "/version", "--http2")
			assert.Contains(t, out, "subject: "+want, name)
			assert.Contains(t, out, "< HTTP/2 200", name)
			assert.Contains(t, out, "< strict-transport-security: max-age=86400", name)
			assert.Contains(t, out, `"version":"1.0.0"`, name)
			out = g.curl(t, name, "/version", "--http1.1")
			assert.Contains(t, out, "< HTTP/1.1 200", name)
		}
		cert, err := g.served(t, "")
		require.NoError(t, err, "no SNI")
		assert.Equal(t, a.Leaf.SerialNumber, cert.SerialNumber, "no SNI: the default, --tls-default-cert a")

		out, err := exec.Command("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", g.url+"/version?q=1").CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.Equal(t, fmt.Sprintf("308 https://127.0.0.1:%d/version?q=1", g.port), string(out))
		out, err = exec.Command("curl", "-sS", "-o", "/dev/null", "--http2-prior-knowledge", "-w", "%{http_version} %{http_code}", g.url+"/version").CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.Equal(t, "2 308", string(out), "--h2c: HTTP/2 in clear on --listen")
	})

	t.Run("replaced under load", func(t *testing.T) {
		res := startWrk(t, tlsURL+"/version", 5*time.Second) // no SNI: the default certificate, a
		time.Sleep(1500 * time.Millisecond)
		a2 := ca.Issue(t, testutil.Leaf{Names: []string{"a.test"}})
		written := time.Now()
		a2.Write(t, dir, "a")
		var took time.Duration
		require.Eventually(t, func() bool {
			cert, err := g.served(t, "a.test")
			took = time.Since(written)
			return err == nil && cert.SerialNumber.Cmp(a2.Leaf.SerialNumber) == 0
		}, 5*time.Second, 20*time.Millisecond, "the new certificate served")
		r := <-res
		t.Logf("MEASURE certificate replaced under wrk over TLS (8 keep-alive connections, 5 s): %d requests, %d non-2xx, "+
			"%d socket errors; the new certificate served %s after its files were written",
			r.requests, r.non2xx, r.socketErrs, took.Round(time.Millisecond))
		require.Positive(t, r.requests, "wrk ran:\n%s", r.out)
		assert.Zero(t, r.non2xx, "wrk:\n%s", r.out)
		assert.Zero(t, r.socketErrs, "wrk:\n%s", r.out)
		assert.Less(t, took, 2*time.Second)
		a = a2
	})

	t.Run("rollout over TLS, HTTP/1.1 and HTTP/2", func(t *testing.T) {
		// wrk (HTTP/1.1 over TLS, keep-alive) and h2load (HTTP/2 over TLS,
		// 2 connections × 20 streams) through a rollout: the replicas
		// withdrawn, acknowledged, replaced, with no request failed.
		h2 := make(chan string, 1)
		go func() {
			out, _ := exec.Command(testutil.RequireTool(t, "h2load"), "-c2", "-m20", "-D", "8", tlsURL+"/version").CombinedOutput()
			h2 <- string(out)
		}()
		res := startWrk(t, tlsURL+"/version", 8*time.Second)
		time.Sleep(time.Second)
		out, code := runToEnd(t, os.Environ(), "clusterctl", "--addr", "http://"+g.admin, "rollout", "predictor:1.1.0")
		require.Equal(t, 0, code, out)
		r := <-res
		h2out := <-h2
		m := regexp.MustCompile(`requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`).FindStringSubmatch(h2out)
		require.NotNil(t, m, "h2load:\n%s", h2out)
		t.Logf("MEASURE rollout under load over TLS: wrk (HTTP/1.1) %d requests, %d non-2xx, %d socket errors; "+
			"h2load (HTTP/2, 40 streams) %s succeeded, %s failed, %s errored, %s timed out", r.requests, r.non2xx, r.socketErrs, m[1], m[2], m[3], m[4])
		require.Positive(t, r.requests, "wrk ran:\n%s", r.out)
		assert.Zero(t, r.non2xx, "wrk:\n%s", r.out)
		assert.Zero(t, r.socketErrs, "wrk:\n%s", r.out)
		assert.NotEqual(t, "0", m[1], "h2load ran:\n%s", h2out)
		assert.Equal(t, []string{"0", "0", "0"}, m[2:], "h2load:\n%s", h2out)
		assert.Contains(t, h2out, "Application protocol: h2")
		assert.Contains(t, g.curl(t, "a.test", "/version", "--http2"), `"version":"1.1.0"`)
	})

	t.Run("bad replacement kept out", func(t *testing.T) {
		other := ca.Issue(t, testutil.Leaf{Names: []string{"b.test"}})
		testutil.WriteFile(t, filepath.Join(dir, "b.crt"), other.Cert) // with b's key: a mismatch
		var out string
		require.Eventually(t, func() bool {
			out, _ = runToEnd(t, os.Environ(), "clusterctl", "--addr", "http://"+g.admin, "certs")
			return strings.Contains(out, "private key does not match")
		}, 5*time.Second, 50*time.Millisecond, "clusterctl certs shows the refusal")
		assert.Contains(t, out, filepath.Join(dir, "b.key")+": private key does not match certificate "+filepath.Join(dir, "b.crt"))
		assert.Regexp(t, `(?m)^soon\s+soon.test\s+Herd Test CA\s+\S+\s+5\s+.*expires soon`, out)
		cert, err := g.served(t, "b.test")
		require.NoError(t, err)
		assert.Equal(t, b.Leaf.SerialNumber, cert.SerialNumber, "the old certificate still served")
		metrics := getMetrics(t, g.admin)
		assert.Contains(t, metrics, `herd_gateway_tls_reloads_total{result="refused"} 1`)
		assert.Contains(t, metrics, `herd_gateway_tls_cert_expiry_seconds{name="soon"}`)

		ctx, _ := chrome(t)
		var warnings string
		require.NoError(t, chromedp.Run(ctx, chromedp.Navigate("http://"+g.admin+"/")))
		require.Eventually(t, func() bool {
			err := chromedp.Run(ctx, chromedp.Evaluate(`document.getElementById("cert-warnings").hidden ? "" : document.getElementById("cert-warnings").innerText`, &warnings))
			return err == nil && strings.Contains(warnings, "private key does not match")
		}, 10*time.Second, 100*time.Millisecond, "the dashboard warns")
		assert.Contains(t, warnings, "Certificate soon expires in 5 days")
		assert.Contains(t, warnings, "Certificate b: "+filepath.Join(dir, "b.key")+": private key does not match")
		screenshot(t, ctx, "tls-warnings")

		b.Write(t, dir, "b") // back as served
		require.Eventually(t, func() bool {
			out, _ = runToEnd(t, os.Environ(), "clusterctl", "--addr", "http://"+g.admin, "certs", "--json")
			return !strings.Contains(out, "does not match")
		}, 5*time.Second, 50*time.Millisecond, "the problem cleared")
	})

	t.Run("upgrade hands the listener over", func(t *testing.T) {
		// A bad pair on disk: the new process refuses to start, the old
		// one keeps serving.
		old, err := g.pid()
		require.NoError(t, err)
		testutil.WriteFile(t, filepath.Join(dir, "b.crt"), ca.Issue(t, testutil.Leaf{Names: []string{"b.test"}}).Cert)
		require.NoError(t, syscall.Kill(old, syscall.SIGHUP))
		require.Eventually(t, func() bool { return strings.Contains(g.output(), "upgrade failed") }, 20*time.Second,
			20*time.Millisecond, "the upgrade is given up")
		assert.Contains(t, g.output(), "gateway: --tls-cert-dir: "+filepath.Join(dir, "b.key")+": private key does not match")
		pid, err := g.pid()
		require.NoError(t, err)
		assert.Equal(t, old, pid, "the old process serves on")
		_, err = g.served(t, "b.test")
		require.NoError(t, err)
		b.Write(t, dir, "b")

		res := startWrk(t, tlsURL+"/version", 4*time.Second)
		time.Sleep(time.Second)
		began := time.Now()
		took := g.upgrade(t)
		r := <-res
		t.Logf("MEASURE gateway upgrade (SIGHUP) under wrk over TLS: %d requests, %d non-2xx, %d socket errors; upgrade took %s",
			r.requests, r.non2xx, r.socketErrs, took.Round(time.Millisecond))
		require.Positive(t, r.requests, "wrk ran:\n%s", r.out)
		assert.Zero(t, r.non2xx, "wrk:\n%s", r.out)
		assert.Zero(t, r.socketErrs, "wrk:\n%s", r.out)
		list, err := g.client().Certs(context.Background())
		require.NoError(t, err)
		require.Len(t, list, 3)
		for _, c := range list {
			assert.True(t, c.LoadedAt.After(began), "%s read afresh by the new process", c.Name)
		}
		cert, err := g.served(t, "a.test")
		require.NoError(t, err)
		assert.Equal(t, a.Leaf.SerialNumber, cert.SerialNumber)
	})
}

// getMetrics is the gateway's /metrics page.
func getMetrics(t *testing.T, admin string) string {
	t.Helper()
	out, err := exec.Command("curl", "-sS", "--max-time", "5", "http://"+admin+"/metrics").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return string(out)
}

// TestTLSBadInput: the TLS flags without what they need are usage errors
// (exit 2); certificates that cannot be served stop the start (exit 1),
// each with one line naming the flag and the file.
func TestTLSBadInput(t *testing.T) {
	// Parallel, with TestAutoscale: see harness_test.go.
	t.Parallel()
	buildAll(t)
	ca := testutil.NewCA(t)
	base := []string{"gateway", "run", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--bind", "127.0.0.1:0",
		"--data-dir", t.TempDir()}
	tlsListen := []string{"--tls-listen", "127.0.0.1:0"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-cert-dir", "/etc/herd/certs"}, "--tls-cert-dir: only with --tls-listen"},
		{[]string{"--tls-cert", "a.crt", "--tls-key", "a.key"}, "--tls-cert: only with --tls-listen"},
		{[]string{"--redirect-https"}, "--redirect-https: only with --tls-listen"},
		{[]string{"--hsts", "24h"}, "--hsts: only with --tls-listen"},
		{tlsListen, "--tls-listen: the certificates too: --tls-cert-dir DIR, or --tls-cert FILE --tls-key FILE"},
		{append([]string{"--tls-cert", "a.crt"}, tlsListen...), "--tls-cert and --tls-key go in pairs (1 certificates, 0 keys)"},
		{[]string{"--tls-listen", "127.0.0.1", "--tls-cert-dir", "/x"}, `--tls-listen "127.0.0.1": want [host]:port`},
		{append([]string{"--tls-cert-dir", "/x", "--tls-handshake-timeout", "0s"}, tlsListen...), "--tls-handshake-timeout 0s: want more than 0"},
	} {
		code, last := runBinary(t, append(base, tc.args...)...)
		assert.Equal(t, 2, code, "%v", tc.args)
		assert.Equal(t, "gateway: "+tc.want, last, "%v", tc.args)
	}

	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.Mkdir(empty, 0o755))
	mismatched := filepath.Join(dir, "mismatched")
	ca.Issue(t, testutil.Leaf{Names: []string{"a.test"}}).Write(t, mismatched, "a")
	testutil.WriteFile(t, filepath.Join(mismatched, "a.key"), ca.Issue(t, testutil.Leaf{Names: []string{"b.test"}}).Key)
	expiredDir := filepath.Join(dir, "expired")
	expiredAt := time.Now().Add(-time.Hour).Truncate(time.Second)
	ca.Issue(t, testutil.Leaf{Names: []string{"a.test"}, NotBefore: expiredAt.Add(-time.Hour), NotAfter: expiredAt}).Write(t, expiredDir, "a")
	goodCert, goodKey := ca.Issue(t, testutil.Leaf{Names: []string{"g.test"}}).Write(t, filepath.Join(dir, "good"), "g")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-cert-dir", missing}, "--tls-cert-dir: " + missing + ": no such directory"},
		{[]string{"--tls-cert-dir", empty}, "--tls-cert-dir: " + empty + ": no certificate pair in it (want NAME.crt with NAME.key, or NAME/fullchain.pem with NAME/privkey.pem)"},
		{[]string{"--tls-cert-dir", mismatched}, "--tls-cert-dir: " + mismatched + "/a.key: private key does not match certificate " + mismatched + "/a.crt"},
		{[]string{"--tls-cert-dir", expiredDir}, "--tls-cert-dir: " + expiredDir + "/a.crt: certificate expired at " + expiredAt.UTC().Format(time.RFC3339)},
		{[]string{"--tls-cert", goodCert, "--tls-key", filepath.Join(mismatched, "a.key")},
			"--tls-cert: " + mismatched + "/a.key: private key does not match certificate " + goodCert},
		{[]string{"--tls-cert", goodCert, "--tls-key", goodKey, "--tls-default-cert", "x"},
			`--tls-cert: default certificate "x": no certificate of that name (loaded: g)`},
	} {
		code, last := runBinary(t, append(append(base, tlsListen...), tc.args...)...)
		assert.Equal(t, 1, code, "%v", tc.args)
		assert.Equal(t, "gateway: "+tc.want, last, "%v", tc.args)
	}
}
