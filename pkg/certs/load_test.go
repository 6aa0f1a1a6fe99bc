package certs

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herd-cluster/herd/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLoadRefuses checks that Load refuses each kind of bad setup with one
// line naming the file at fault.
func TestLoadRefuses(t *testing.T) {
	ca := testutil.NewCA(t)
	good := ca.Issue(t, testutil.Leaf{Names: []string{"a.example.com"}})
	other := ca.Issue(t, testutil.Leaf{Names: []string{"b.example.com"}})
	expiredAt := time.Now().Add(-24 * time.Hour).Truncate(time.Second)
	expired := ca.Issue(t, testutil.Leaf{Names: []string{"a.example.com"}, NotBefore: expiredAt.Add(-48 * time.Hour), NotAfter: expiredAt})
	validFrom := time.Now().Add(24 * time.Hour).Truncate(time.Second)
	future := ca.Issue(t, testutil.Leaf{Names: []string{"a.example.com"}, NotBefore: validFrom})
	badDER := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")})
	_, derErr := x509.ParseCertificate([]byte("not DER"))
	encrypted := pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte("x")})

	for _, tc := range []struct {
		name  string
		setup func(dir string, cfg *Config)
		want  string // with D for the directory
	}{
		{"no directory", func(dir string, cfg *Config) { cfg.Dir = filepath.Join(dir, "missing") },
			"D/missing: no such directory"},
		{"not a directory", func(dir string, cfg *Config) { testutil.WriteFile(t, dir+"/f", nil); cfg.Dir = dir + "/f" },
			"D/f: not a directory"},
		{"empty directory", func(dir string, cfg *Config) { testutil.WriteFile(t, dir+"/README", []byte("hi")) },
			"D: no certificate pair in it (want NAME.crt with NAME.key, or NAME/fullchain.pem with NAME/privkey.pem)"},
		{"no pair at all", func(dir string, cfg *Config) { cfg.Dir = "" },
			"no certificate pair configured"},
		{"certificate without key", func(dir string, cfg *Config) { testutil.WriteFile(t, dir+"/a.crt", good.Cert) },
			"D/a.crt: no matching key file D/a.key"},
		{"key without certificate", func(dir string, cfg *Config) { good.Write(t, dir, "b"); testutil.WriteFile(t, dir+"/a.key", good.Key) },
			"D/a.key: no matching certificate file D/a.crt"},
		{"fullchain without privkey", func(dir string, cfg *Config) { testutil.WriteFile(t, dir+"/a/fullchain.pem", good.Cert) },
			"D/a/fullchain.pem: no matching key file D/a/privkey.pem"},
		{"mismatched key", func(dir string, cfg *Config) {
			good.Write(t, dir, "a")
			testutil.WriteFile(t, dir+"/a.key", other.Key)
		}, "D/a.key: private key does not match certificate D/a.crt"},
		{"certificate not PEM", func(dir string, cfg *Config) {
			good.Write(t, dir, "a")
			testutil.WriteFile(t, dir+"/a.crt", []byte("garbage"))
		},
			"D/a.crt: no PEM certificate in it"},
		{"certificate does not parse", func(dir string, cfg *Config) { good.Write(t, dir, "a"); testutil.WriteFile(t, dir+"/a.crt", badDER) },
			"D/a.crt: certificate does not parse: " + derErr.Error()},
		{"chain does not parse", func(dir string, cfg *Config) {
			good.Write(t, dir, "a")
			testutil.WriteFile(t, dir+"/a.crt", append(good.Cert, badDER...))
		}, "D/a.crt: certificate 3 of the chain does not parse: " + derErr.Error()},
		{"key not PEM", func(dir string, cfg *Config) { good.Write(t, dir, "a"); testutil.WriteFile(t, dir+"/a.key", good.Cert) },
			"D/a.key: no PEM private key in it"},
		{"key encrypted", func(dir string, cfg *Config) { good.Write(t, dir, "a"); testutil.WriteFile(t, dir+"/a.key", encrypted) },
			"D/a.key: private key is encrypted; want it without a passphrase"},
		{"expired", func(dir string, cfg *Config) { expired.Write(t, dir, "a") },
			"D/a.crt: certificate expired at " + expiredAt.UTC().Format(time.RFC3339)},
		{"not valid yet", func(dir string, cfg *Config) { future.Write(t, dir, "a") },
			"D/a.crt: certificate not valid before " + validFrom.UTC().Format(time.RFC3339)},
		{"unknown default", func(dir string, cfg *Config) {
			good.Write(t, dir, "a")
			other.Write(t, dir, "b")
			cfg.Default = "c"
		}, `default certificate "c": no certificate of that name (loaded: a, b)`},
		{"two pairs named alike", func(dir string, cfg *Config) {
			good.Write(t, dir, "a")
			testutil.WriteFile(t, dir+"/a/fullchain.pem", other.Cert)
			testutil.WriteFile(t, dir+"/a/privkey.pem", other.Key)
		}, `D/a/fullchain.pem: name "a" already taken by D/a.crt`},
		{"explicit pair missing", func(dir string, cfg *Config) {
			good.Write(t, dir, "a")
			cfg.Pairs = []Pair{{Cert: dir + "/x/site.pem", Key: dir + "/x/site-key.pem"}}
		}, "D/x/site.pem: no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			tc.setup(e.dir, &e.cfg)
			s, err := Load(e.cfg)
			require.Error(t, err)
			assert.Nil(t, s)
			assert.Equal(t, strings.ReplaceAll(tc.want, "D", e.dir), err.Error())
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}

// TestLoadLayout loads every layout at once: NAME.crt pairs (ECDSA and
// RSA), a certbot folder of links into ../../archive, an explicit pair,
// and files to skip.
func TestLoadLayout(t *testing.T) {
	ca := testutil.NewCA(t)
	e := newEnv(t)
	root := t.TempDir()
	e.cfg.Dir = filepath.Join(root, "live")

	a := ca.Issue(t, testutil.Leaf{Names: []string{"a.example.com"}})
	a.Write(t, e.cfg.Dir, "a")
	r := ca.Issue(t, testutil.Leaf{Names: []string{"rsa.example.com"}, RSA: true})
	r.Write(t, e.cfg.Dir, "rsa")
	cb := ca.Issue(t, testutil.Leaf{Names: []string{"example.org", "www.example.org"}})
	certbotInstall(t, root, "example.org", 1, cb)
	x := ca.Issue(t, testutil.Leaf{Names: []string{"x.example.net"}})
	x.Write(t, filepath.Join(root, "elsewhere"), "site")
	e.cfg.Pairs = []Pair{{Cert: filepath.Join(root, "elsewhere", "site.crt"), Key: filepath.Join(root, "elsewhere", "site.key")}}
	// Skipped: certbot's README, hidden files and folders, other files,
	// folders with neither fullchain.pem nor privkey.pem.
	testutil.WriteFile(t, filepath.Join(e.cfg.Dir, "README"), []byte("certbot"))
	testutil.WriteFile(t, filepath.Join(e.cfg.Dir, ".a.crt.swp"), []byte("vim"))
	testutil.WriteFile(t, filepath.Join(e.cfg.Dir, ".hidden", "fullchain.pem"), []byte("x"))
	testutil.WriteFile(t, filepath.Join(e.cfg.Dir, "notes.txt"), []byte("x"))
	testutil.WriteFile(t, filepath.Join(e.cfg.Dir, "empty", "cert.pem"), []byte("x"))

	s := e.load(t)
	infos := s.Certs()
	var names []string
	for _, in := range infos {
		names = append(names, in.Name)
	}
	require.Equal(t, []string{"a", "example.org", "rsa", "site"}, names)

	in := infos[1]
	assert.Equal(t, []string{"example.org", "www.example.org"}, in.DNSNames)
	assert.Equal(t, "Herd Test CA", in.Issuer)
	assert.Equal(t, filepath.Join(e.cfg.Dir, "example.org", "fullchain.pem"), in.File)
	assert.Equal(t, cb.Leaf.NotAfter, in.NotAfter)
	assert.Equal(t, cb.Leaf.NotBefore, in.NotBefore)
	assert.Equal(t, 89, in.DaysLeft)
	assert.False(t, in.Default)
	assert.False(t, in.ExpiresSoon)
	assert.Empty(t, in.Problem)
	assert.WithinDuration(t, time.Now(), in.LoadedAt, time.Minute)
	assert.True(t, infos[0].Default, "the first by NAME is the default")

	addr := serve(t, s)
	assert.Equal(t, a.Leaf.SerialNumber, served(t, addr, "a.example.com", ca.Pool).SerialNumber)
	assert.Equal(t, r.Leaf.SerialNumber, served(t, addr, "rsa.example.com", ca.Pool).SerialNumber)
	assert.Equal(t, cb.Leaf.SerialNumber, served(t, addr, "www.example.org", ca.Pool).SerialNumber)
	assert.Equal(t, x.Leaf.SerialNumber, served(t, addr, "x.example.net", ca.Pool).SerialNumber)
}

// certbotInstall writes p as certbot does: archive/NAME/{cert,chain,
// fullchain,privkey}N.pem, linked to from live/NAME/*.pem by relative
// links, each link replaced atomically (a new link renamed over the old).
func certbotInstall(t testing.TB, root, name string, n int, p testutil.PEMPair, only ...string) {
	t.Helper()
	leafEnd := strings.Index(string(p.Cert), "-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----\n")
	files := map[string][]byte{"cert": p.Cert[:leafEnd], "chain": p.Cert[leafEnd:], "fullchain": p.Cert, "privkey": p.Key}
	if len(only) == 0 {
		only = []string{"cert", "chain", "fullchain", "privkey"}
	}
	for _, kind := range only {
		file := kind + strconv.Itoa(n) + ".pem"
		testutil.WriteFile(t, filepath.Join(root, "archive", name, file), files[kind])
		link := filepath.Join(root, "live", name, kind+".pem")
		require.NoError(t, os.MkdirAll(filepath.Dir(link), 0o755))
		tmp := link + ".new"
		require.NoError(t, os.Symlink(filepath.Join("..", "..", "archive", name, file), tmp))
		require.NoError(t, os.Rename(tmp, link))
	}
}

// TestLoadOpenSSL loads pairs made by openssl as an operator would: an EC
// key from ecparam (with its EC PARAMETERS block) and a self-signed RSA
// certificate with a PKCS #8 key.
func TestLoadOpenSSL(t *testing.T) {
	openssl := testutil.RequireTool(t, "openssl")
	e := newEnv(t)
	run := func(args ...string) {
		out, err := exec.Command(openssl, args...).CombinedOutput()
		require.NoError(t, err, "openssl %s: %s", strings.Join(args, " "), out)
	}
	ec, rsaKey := filepath.Join(e.dir, "ec"), filepath.Join(e.dir, "rsa")
	run("ecparam", "-name", "prime256v1", "-genkey", "-out", ec+".key")
	run("req", "-new", "-x509", "-key", ec+".key", "-out", ec+".crt", "-days", "30",
		"-subj", "/O=Herd/CN=ec.test", "-addext", "subjectAltName=DNS:ec.test")
	run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", rsaKey+".key", "-out", rsaKey+".crt", "-days", "400",
		"-subj", "/O=Herd", "-addext", "subjectAltName=DNS:rsa.test")
	keyPEM, err := os.ReadFile(ec + ".key")
	require.NoError(t, err)
	require.Contains(t, string(keyPEM), "EC PARAMETERS")

	s := e.load(t)
	infos := s.Certs()
	require.Len(t, infos, 2)
	assert.Equal(t, "ec.test", infos[0].Issuer)
	assert.Equal(t, "O=Herd", infos[1].Issuer, "no CN: the full DN")
	assert.Equal(t, 29, infos[0].DaysLeft)
	assert.False(t, infos[0].ExpiresSoon)
	addr := serve(t, s)
	assert.Equal(t, "ec.test", served(t, addr, "ec.test", nil).DNSNames[0])
	assert.Equal(t, x509.RSA, served(t, addr, "rsa.test", nil).PublicKeyAlgorithm)
}
