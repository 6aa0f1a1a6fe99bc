package certs

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/herd-cluster/herd/internal/testutil"
)

// TestGetCertificate checks the order of the choice: exact name (without
// case, trailing dot dropped), then a wildcard for the first label only,
// then the default; and, among certificates covering one name, the one
// expiring last.
func TestGetCertificate(t *testing.T) {
	ca := testutil.NewCA(t)
	e := newEnv(t)
	a := ca.Issue(t, testutil.Leaf{Names: []string{"a.example.com", "www.example.com"}})
	wild := ca.Issue(t, testutil.Leaf{Names: []string{"*.example.com"}})
	deep := ca.Issue(t, testutil.Leaf{Names: []string{"*.b.example.com"}})
	def := ca.Issue(t, testutil.Leaf{Names: []string{"default.test"}})
	older := ca.Issue(t, testutil.Leaf{Names: []string{"c.example.com"}, NotAfter: time.Now().Add(30 * 24 * time.Hour)})
	newer := ca.Issue(t, testutil.Leaf{Names: []string{"c.example.com"}, NotAfter: time.Now().Add(60 * 24 * time.Hour)})
	a.Write(t, e.dir, "a")
	wild.Write(t, e.dir, "wild")
	deep.Write(t, e.dir, "deep")
	def.Write(t, e.dir, "zdefault")
	newer.Write(t, e.dir, "c1")
	older.Write(t, e.dir, "c2")
	e.cfg.Default = "zdefault"
	s := e.load(t)

	for _, tc := range []struct {
		serverName string
		want       testutil.PEMPair
	}{
		{"a.example.com", a},
		{"A.Example.COM", a},
		{"www.example.com.", a},
		{"x.example.com", wild},
		{"X.EXAMPLE.com", wild},
		{"x.b.example.com", deep},
		{"x.y.example.com", def}, // a wildcard covers one label only
		{"example.com", def},     // nor the apex
		{"c.example.com", newer}, // the one expiring last
		{"other.test", def},
		{"", def},
		{"127.0.0.1", def},
		{"::1", def},
	} {
		got, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: tc.serverName})
		if assert.NoError(t, err) {
			assert.Equal(t, tc.want.Leaf.SerialNumber, got.Leaf.SerialNumber, "server name %q", tc.serverName)
		}
	}

	// The same over real handshakes, verified by the client.
	addr := serve(t, s)
	assert.Equal(t, a.Leaf.SerialNumber, served(t, addr, "a.example.com", ca.Pool).SerialNumber)
	assert.Equal(t, wild.Leaf.SerialNumber, served(t, addr, "x.example.com", ca.Pool).SerialNumber)
	assert.Equal(t, def.Leaf.SerialNumber, served(t, addr, "", nil).SerialNumber, "no SNI: the default")
}

// TestDefaultIsFirstByName: without Config.Default, the first pair by NAME
// is the default, and a pair added later does not take over.
func TestDefaultIsFirstByName(t *testing.T) {
	ca := testutil.NewCA(t)
	e := newEnv(t)
	b := ca.Issue(t, testutil.Leaf{Names: []string{"b.test"}})
	b.Write(t, e.dir, "b")
	s := e.load(t)
	ca.Issue(t, testutil.Leaf{Names: []string{"a.test"}}).Write(t, e.dir, "a")
	assert.NoError(t, s.Reload())
	got, _ := s.GetCertificate(&tls.ClientHelloInfo{})
	assert.Equal(t, b.Leaf.SerialNumber, got.Leaf.SerialNumber)
	assert.Len(t, s.Certs(), 2)
	assert.True(t, s.Certs()[1].Default)
}

func BenchmarkGetCertificate(b *testing.B) {
	ca := testutil.NewCA(b)
	e := newEnv(b)
	ca.Issue(b, testutil.Leaf{Names: []string{"a.example.com"}}).Write(b, e.dir, "a")
	ca.Issue(b, testutil.Leaf{Names: []string{"*.example.com"}}).Write(b, e.dir, "wild")
	s := e.load(b)
	hellos := []*tls.ClientHelloInfo{{ServerName: "a.example.com"}, {ServerName: "x.example.com"}, {ServerName: "other.test"}}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_, _ = s.GetCertificate(hellos[i%len(hellos)])
	}
}
