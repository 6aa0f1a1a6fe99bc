package certs

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/internal/testutil"
)

// servedSerial is the serial of the certificate s gives serverName.
func servedSerial(s *Store, serverName string) string {
	c, _ := s.GetCertificate(&tls.ClientHelloInfo{ServerName: serverName})
	return c.Leaf.SerialNumber.String()
}

// TestReload replaces a pair, refuses bad replacements (keeping the one
// served), adds a new pair, and keeps a removed one.
func TestReload(t *testing.T) {
	ca := testutil.NewCA(t)
	e := newEnv(t)
	clk := &clock{t: time.Now()}
	e.cfg.Now = clk.Now
	v1 := ca.Issue(t, testutil.Leaf{Names: []string{"a.test"}})
	v1.Write(t, e.dir, "a")
	s := e.load(t)
	loadedAt := s.Certs()[0].LoadedAt

	clk.Add(time.Minute)
	v2 := ca.Issue(t, testutil.Leaf{Names: []string{"a.test"}})
	v2.Write(t, e.dir, "a")
	require.NoError(t, s.Reload())
	assert.Equal(t, v2.Leaf.SerialNumber.String(), servedSerial(s, "a.test"))
	assert.Equal(t, loadedAt.Add(time.Minute), s.Certs()[0].LoadedAt)
	assert.Equal(t, 1.0, s.reloads("loaded"))
	assert.Equal(t, 1, e.logs.count("certificate replaced"))

	other := ca.Issue(t, testutil.Leaf{Names: []string{"a.test"}})
	expiredAt := clk.Now().Add(-time.Hour)
	expired := ca.Issue(t, testutil.Leaf{Names: []string{"a.test"}, NotBefore: expiredAt.Add(-time.Hour), NotAfter: expiredAt})
	for i, tc := range []struct {
		name  string
		write func()
		want  string
	}{
		{"mismatched key", func() { testutil.WriteFile(t, e.dir+"/a.key", other.Key) },
			e.dir + "/a.key: private key does not match certificate " + e.dir + "/a.crt"},
		{"garbage", func() { testutil.WriteFile(t, e.dir+"/a.crt", []byte("garbage")) },
			e.dir + "/a.crt: no PEM certificate in it"},
		{"expired", func() { expired.Write(t, e.dir, "a") },
			e.dir + "/a.crt: certificate expired at " + expiredAt.UTC().Format(time.RFC3339)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v2.Write(t, e.dir, "a")
			tc.write()
			err := s.Reload()
			require.EqualError(t, err, tc.want)
			assert.Equal(t, v2.Leaf.SerialNumber.String(), servedSerial(s, "a.test"), "the old one kept")
			assert.Equal(t, tc.want, s.Certs()[0].Problem)
			assert.Equal(t, float64(i+1), s.reloads("refused"))
			// Again: the same refusal is neither logged nor counted twice.
			require.Error(t, s.Reload())
			assert.Equal(t, float64(i+1), s.reloads("refused"))
			assert.Equal(t, i+1, e.logs.count("certificate refused; still serving the last good one"))
		})
	}

	// Back to the files served: the problem goes, nothing is reloaded.
	v2.Write(t, e.dir, "a")
	require.NoError(t, s.Reload())
	assert.Empty(t, s.Certs()[0].Problem)
	assert.Equal(t, 1.0, s.reloads("loaded"))

	// A new pair is added; a removed one is kept, with a problem.
	b := ca.Issue(t, testutil.Leaf{Names: []string{"b.test"}})
	b.Write(t, e.dir, "b")
	require.NoError(t, s.Reload())
	assert.Equal(t, b.Leaf.SerialNumber.String(), servedSerial(s, "b.test"))
	require.NoError(t, os.Remove(filepath.Join(e.dir, "b.crt")))
	require.NoError(t, os.Remove(filepath.Join(e.dir, "b.key")))
	require.Error(t, s.Reload())
	assert.Equal(t, b.Leaf.SerialNumber.String(), servedSerial(s, "b.test"))
	assert.Contains(t, s.Certs()[1].Problem, "b.crt: removed; still serving the certificate loaded at")
	assert.Equal(t, 1, e.logs.count("certificate files removed"))
}

// TestRunSettles: Run takes a good pair at the first poll, and reports a
// bad one only once it reads the same twice, so that a renewal caught
// between its two files is no false alarm.
func TestRunSettles(t *testing.T) {
	ca := testutil.NewCA(t)
	e := newEnv(t)
	v1 := ca.Issue(t, testutil.Leaf{Names: []string{"a.test"}})
	v1.Write(t, e.dir, "a")
	s := e.load(t)

	v2 := ca.Issue(t, testutil.Leaf{Names: []string{"a.test"}})
	testutil.WriteFile(t, e.dir+"/a.crt", v2.Cert) // the key comes next
	require.NoError(t, s.pass(true))
	assert.Empty(t, s.Certs()[0].Problem)
	assert.Equal(t, v1.Leaf.SerialNumber.String(), servedSerial(s, "a.test"))
	testutil.WriteFile(t, e.dir+"/a.key", v2.Key)
	require.NoError(t, s.pass(true))
	assert.Equal(t, v2.Leaf.SerialNumber.String(), servedSerial(s, "a.test"))
	assert.Equal(t, 0.0, s.reloads("refused"))

	testutil.WriteFile(t, e.dir+"/a.key", v1.Key) // stays wrong
	require.NoError(t, s.pass(true))
	assert.Empty(t, s.Certs()[0].Problem)
	require.Error(t, s.pass(true))
	assert.Contains(t, s.Certs()[0].Problem, "private key does not match")
	assert.Equal(t, 1.0, s.reloads("refused"))
}

// TestRunPolls: Run, on its own clock, picks up a changed file within its
// interval while handshakes go on, and returns when its context ends.
func TestRunPolls(t *testing.T) {
	ca := testutil.NewCA(t)
	e := newEnv(t)
	e.cfg.ReloadInterval = 20 * time.Millisecond
	v1 := ca.Issue(t, testutil.Leaf{Names: []string{"a.test"}})
	v1.Write(t, e.dir, "a")
	s := e.load(t)
	addr := serve(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { s.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()

	v2 := ca.Issue(t, testutil.Leaf{Names: []string{"a.test"}})
	v2.Write(t, e.dir, "a")
	require.Eventually(t, func() bool {
		return served(t, addr, "a.test", ca.Pool).SerialNumber.Cmp(v2.Leaf.SerialNumber) == 0
	}, 5*time.Second, 10*time.Millisecond, "the new certificate served")
}
