package e2e

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
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/internal/testutil"
)

// selfSigned writes a certificate for 127.0.0.1 and its key as PEM files.
func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "herd test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "admin.pem"), filepath.Join(dir, "admin-key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600))
	return certFile, keyFile
}

// TestAdminTLS: the admin API served over TLS with a token; clusterctl
// reaches it with --ca-cert and the token, and not without them.
func TestAdminTLS(t *testing.T) {
	// Parallel, with TestAutoscale: see harness_test.go.
	t.Parallel()
	buildAll(t)
	cert, key := selfSigned(t)
	admin := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t, "127.0.0.1"))
	startProc(t, "gateway", "gateway", "run", "--node", "tls-gw", "--listen", "127.0.0.1:0", "--admin", admin,
		"--bind", fmt.Sprintf("127.0.0.1:%d", testutil.FreePortRange(t, 1, "127.0.0.1")), "--data-dir", t.TempDir(),
		"--gossip-profile", "local", "--token", "s3cret", "--admin-tls-cert", cert, "--admin-tls-key", key)
	addr := "https://" + admin
	require.Eventually(t, func() bool {
		out, code := runToEnd(t, os.Environ(), "clusterctl", "--addr", addr, "--ca-cert", cert, "--token", "s3cret", "members")
		return code == 0 && assert.Contains(t, out, "tls-gw")
	}, 15*time.Second, 100*time.Millisecond)

	out, code := runToEnd(t, os.Environ(), "clusterctl", "--addr", addr, "--token", "s3cret", "members")
	assert.NotZero(t, code)
	assert.Contains(t, out, "certificate", "an untrusted certificate is refused")
	out, code = runToEnd(t, os.Environ(), "clusterctl", "--addr", addr, "--ca-cert", cert, "members")
	assert.NotZero(t, code)
	assert.Contains(t, out, "unauthorized")
	resp, err := http.Get("http://" + admin + "/healthz")
	if err == nil {
		resp.Body.Close()
		assert.NotEqual(t, http.StatusOK, resp.StatusCode, "plain HTTP is not served")
	}

	code, last := runBinary(t, "gateway", "run", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--bind", "127.0.0.1:0",
		"--data-dir", t.TempDir(), "--admin-tls-cert", cert)
	assert.Equal(t, 1, code)
	assert.Equal(t, "gateway: --admin-tls-cert and --admin-tls-key go together", last)
}
