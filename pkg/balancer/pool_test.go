package balancer

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Through the gateway: a backend that closes idle keep-alive connections
// soon after answering leaves stale connections in the pool. Every request
// still gets its answer, from a new connection: a GET after the stale one
// failed, a POST before it is sent (it must not be sent twice).
func TestStalePooledConnections(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		b, f := newTestBalancer(t, rl)
		var served atomic.Int32
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			served.Add(1)
			_, _ = io.WriteString(w, "ok")
		}))
		srv.Config.IdleTimeout = 20 * time.Millisecond
		srv.Start()
		t.Cleanup(srv.Close)
		setBackends(b, []testBackend{{Addr: netip.MustParseAddrPort(srv.Listener.Addr().String()), Node: "n"}})
		c, err := net.Dial("tcp", f.Addr)
		require.NoError(t, err)
		defer c.Close()
		br := bufio.NewReader(c)
		for i := range 6 {
			start := time.Now()
			req := "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
			if i%2 == 1 { // not idempotent: must not go out on a closed connection at all
				req = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody"
			}
			_, err := io.WriteString(c, req)
			require.NoError(t, err)
			resp, err := http.ReadResponse(br, nil)
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, 200, resp.StatusCode, "request %d", i)
			assert.Equal(t, "ok", strings.TrimSpace(string(body)))
			assert.Less(t, time.Since(start), 5*time.Second, "request %d waited for a timeout", i)
			time.Sleep(60 * time.Millisecond) // the backend closes the idle connection
		}
		assert.Equal(t, int32(6), served.Load())
		assert.Zero(t, b.Backends()[0].Failures, "a stale pooled connection is not the backend's failure")
		assert.Zero(t, b.Service(b.cfg.Service).retries.Load(), "nor a retry")
	})
}

// A backend that half-closes an idle keep-alive connection (FIN, but it
// goes on reading, as a TCP proxy in front of a dead process may) must not
// make the next request on it wait: the closed connection is noticed at
// once and the request goes on a new one. (Found by TestDockerCluster: a
// request waited for its timeout after `docker kill`.)
func TestHalfClosedPooledConnection(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer ln.Close()
		var conns atomic.Int32
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				n := conns.Add(1)
				go func() {
					defer c.Close()
					br := bufio.NewReader(c)
					for {
						req, err := http.ReadRequest(br)
						if err != nil {
							return
						}
						_, _ = io.Copy(io.Discard, req.Body)
						_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
						if n == 1 { // the first connection: half-close after one answer, keep reading
							_ = c.(*net.TCPConn).CloseWrite()
							_, _ = io.Copy(io.Discard, c)
							return
						}
					}
				}()
			}
		}()
		b, f := newTestBalancer(t, rl)
		setBackends(b, []testBackend{{Addr: netip.MustParseAddrPort(ln.Addr().String()), Node: "n"}})
		client := &http.Client{Timeout: 5 * time.Second}
		for i := range 3 {
			resp, err := client.Get(f.URL)
			require.NoError(t, err, "request %d", i)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.Equal(t, "ok", string(body))
			time.Sleep(50 * time.Millisecond) // the FIN arrives while the connection is idle
		}
	})
}
