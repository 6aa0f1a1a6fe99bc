package certs

import (
	"crypto/tls"
	"net"
	"testing"

	"github.com/herd-cluster/herd/internal/testutil"
)

// BenchmarkHandshake measures a full TLS 1.3 handshake (no resumption),
// client and server in one process over an in-memory pipe, with an ECDSA
// P-256 certificate and with an RSA 2048 one: the server's signature is
// most of the difference (golang#20058).
func BenchmarkHandshake(b *testing.B) {
	for _, tc := range []struct {
		name string
		rsa  bool
	}{{"ecdsa-p256", false}, {"rsa-2048", true}} {
		b.Run(tc.name, func(b *testing.B) {
			ca := testutil.NewCA(b)
			e := newEnv(b)
			e.cfg.Registerer = nil
			ca.Issue(b, testutil.Leaf{Names: []string{"a.test"}, RSA: tc.rsa}).Write(b, e.dir, "a")
			srvCfg := e.load(b).TLSConfig()
			srvCfg.SessionTicketsDisabled = true // every handshake a full one
			cliCfg := &tls.Config{ServerName: "a.test", RootCAs: ca.Pool}
			b.ReportAllocs()
			for b.Loop() {
				c, s := net.Pipe()
				errc := make(chan error, 1)
				go func() {
					errc <- tls.Server(s, srvCfg).Handshake()
				}()
				cli := tls.Client(c, cliCfg)
				if err := cli.Handshake(); err != nil {
					b.Fatal(err)
				}
				if err := <-errc; err != nil {
					b.Fatal(err)
				}
				// The pipe, not the TLS connections: their close_notify
				// would wait for a reader.
				c.Close()
				s.Close()
			}
		})
	}
}
