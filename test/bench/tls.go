package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"time"
)

// tlsCompare compares the gateway and HAProxy terminating TLS with the
// same ECDSA P-256 certificate, both in front of the same 4 replicas:
// keep-alive HTTPS (wrk), a new TLS connection per request (wrk with
// Connection: close: handshakes per second), and HTTP/2 with 100 streams
// in flight on one connection (h2load).
func (c *cluster) tlsCompare() error {
	certFile, keyFile, both, err := writeBenchCert(c.dir)
	if err != nil {
		return err
	}
	port, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	_, gw, err := c.startGateway("gateway-tls", "--tls-listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--tls-cert", certFile, "--tls-key", keyFile)
	if err != nil {
		return err
	}
	defer c.stop(gw)
	gwURL := fmt.Sprintf("https://127.0.0.1:%d", port)
	haPort, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	tlsC := *c
	tlsC.haBind = fmt.Sprintf("  bind 127.0.0.1:%d ssl crt %s alpn h2,http/1.1\n", haPort, both)
	_, ha, err := tlsC.startHAProxy("roundrobin", "")
	if err != nil {
		return err
	}
	defer c.stop(ha)
	haURL := fmt.Sprintf("https://127.0.0.1:%d", haPort)
	for _, u := range []string{gwURL, haURL} {
		if err := waitHTTP(u + c.o.path); err != nil {
			return err
		}
	}
	targets := []target{{"haproxy", haURL, ha.Process.Pid}, {"gateway", gwURL, gw.Process.Pid}}
	fmt.Printf("\n# TLS: the same ECDSA P-256 certificate, TLS 1.3, HAProxy nbthread 1 (bind ... ssl crt), 4 replicas\n")
	for _, m := range []struct {
		title   string
		measure func(url string) (result, error)
	}{
		{"HTTPS keep-alive (wrk)", func(url string) (result, error) { return c.wrk(url) }},
		{"HTTPS, a new connection and full handshake per request (wrk, Connection: close)", func(url string) (result, error) {
			return c.wrk(url, "-H", "Connection: close")
		}},
		{"HTTP/2, 100 streams in flight on one connection (h2load -c1 -m100)", c.h2load},
	} {
		for _, t := range targets { // warm-up, not counted
			warm := *c
			warm.o.duration = 2 * time.Second
			if _, err := (&warm).wrk(t.url); err != nil {
				return err
			}
		}
		results, err := c.rounds(targets, m.measure)
		if err != nil {
			return err
		}
		c.report(m.title, results)
	}
	return nil
}

// report prints the medians of a comparison's rounds, and the median and
// spread of the per-round ratios.
func (c *cluster) report(title string, results map[string][]result) {
	var ratios, p99s []float64
	for i := range results["gateway"] {
		ratios = append(ratios, results["gateway"][i].rps/results["haproxy"][i].rps)
		if results["haproxy"][i].p99 > 0 {
			p99s = append(p99s, float64(results["gateway"][i].p99)/float64(results["haproxy"][i].p99))
		}
	}
	slices.Sort(ratios)
	slices.Sort(p99s)
	ha, gw := median(results["haproxy"]), median(results["gateway"])
	fmt.Printf("\n## %s (median of %d rounds)\n\n", title, c.o.rounds)
	fmt.Printf("  haproxy %.0f req/s p50 %s p99 %s errors %d\n  gateway %.0f req/s p50 %s p99 %s errors %d\n",
		ha.rps, ha.p50, ha.p99, ha.errors, gw.rps, gw.p50, gw.p99, gw.errors)
	fmt.Printf("  gateway/haproxy: req/s median of per-round ratios %.3f× (%.2f×–%.2f×)", ratios[len(ratios)/2], ratios[0], ratios[len(ratios)-1])
	if len(p99s) > 0 {
		fmt.Printf(", p99 %.3f× (%.2f×–%.2f×)", p99s[len(p99s)/2], p99s[0], p99s[len(p99s)-1])
	}
	fmt.Printf("\n  CPU per request: haproxy %.1f µs, gateway %.1f µs\n\n", ha.cost.proxyCPU, gw.cost.proxyCPU)
}

var (
	h2loadRPS  = regexp.MustCompile(`finished in [0-9.]+m?s, ([0-9.]+) req/s`)
	h2loadDone = regexp.MustCompile(`requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
	h2loadTime = regexp.MustCompile(`time for request:\s+([0-9.]+)(us|ms|s)\s+([0-9.]+)(us|ms|s)\s+([0-9.]+)(us|ms|s)`)
)

// h2load runs h2load for the bench's duration: one connection, 100
// streams in flight. It reports no percentiles: p50 is its mean time per
// request, p99 its longest.
func (c *cluster) h2load(url string) (result, error) {
	out, err := exec.Command("h2load", "-c1", "-m100", "-D", strconv.Itoa(int(c.o.duration.Seconds())),
		url+c.o.path).CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("h2load: %v: %s", err, out)
	}
	return parseH2load(string(out))
}

func parseH2load(out string) (result, error) {
	var r result
	m := h2loadRPS.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no req/s in h2load output:\n%s", out)
	}
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	if m := h2loadDone.FindStringSubmatch(out); m != nil {
		for _, s := range m[2:] {
			n, _ := strconv.Atoi(s)
			r.errors += n
		}
	}
	if m := h2loadTime.FindStringSubmatch(out); m != nil {
		r.p99 = h2loadDuration(m[3], m[4])
		r.p50 = h2loadDuration(m[5], m[6])
	}
	return r, nil
}

func h2loadDuration(v, unit string) time.Duration {
	f, _ := strconv.ParseFloat(v, 64)
	return time.Duration(f * float64(map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[unit]))
}

// writeBenchCert writes a self-signed ECDSA P-256 certificate for
// 127.0.0.1 and bench.test: its certificate and key files for the gateway,
// and both in one file for HAProxy's crt.
func writeBenchCert(dir string) (certFile, keyFile, both string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench.test"},
		DNSNames: []string{"bench.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", "", err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", "", err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	certFile, keyFile, both = filepath.Join(dir, "bench.crt"), filepath.Join(dir, "bench.key"), filepath.Join(dir, "bench.pem")
	for f, data := range map[string][]byte{certFile: certPEM, keyFile: keyPEM, both: append(slices.Clone(certPEM), keyPEM...)} {
		if err := os.WriteFile(f, data, 0o600); err != nil {
			return "", "", "", err
		}
	}
	return certFile, keyFile, both, nil
}
