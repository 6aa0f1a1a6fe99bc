package balancer

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"time"
)

// ServeTLS accepts TLS client connections on ln and serves them until
// Shutdown, as Serve does plain ones. Each handshake runs on the
// connection's own goroutine and must end within TLSHandshakeTimeout; then
// the protocol the client chose by ALPN decides: "h2" goes to the HTTP/2
// server (h2.go), anything else to the HTTP/1.1 goroutine relay. (The
// event loops read plain sockets only: TLS records are decrypted by
// crypto/tls on the connection's goroutine.) cfg must not be changed
// afterwards; its NextProtos should offer "h2" and "http/1.1".
func (b *Balancer) ServeTLS(ln net.Listener, cfg *tls.Config) error {
	return b.serve(ln, func(cc *clientConn, c net.Conn) {
		cc.c = c
		go b.serveTLSConn(cc, tls.Server(c, cfg))
	})
}

// serveTLSConn does the handshake, then serves the connection.
func (b *Balancer) serveTLSConn(cc *clientConn, tc *tls.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.TLSHandshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		reason := "protocol"
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
			reason = "timeout"
		}
		b.m.handshakeErrors.WithLabelValues(reason).Inc()
		b.logger.Debug("TLS handshake failed", "client", string(cc.remoteIP), "reason", reason, "error", err)
		b.srv.forget(cc)
		return
	}
	_ = tc.SetDeadline(time.Time{})
	cc.c = tc
	st := tc.ConnectionState()
	cc.tlsSummary = tls.VersionName(st.Version) + " " + alpnOrHTTP1(st.NegotiatedProtocol)
	if st.NegotiatedProtocol == "h2" {
		if b.closing.Load() { // stopping: the client opens its next connection elsewhere
			b.srv.forget(cc)
			return
		}
		b.m.conns[protoH2].Inc()
		b.h2.serve(cc, tc, protoH2)
		b.srv.forget(cc)
		return
	}
	cc.proto = protoHTTPS
	b.m.conns[protoHTTPS].Inc()
	cc.serve()
}

func alpnOrHTTP1(p string) string {
	if p == "" {
		return "http/1.1"
	}
	return p
}
