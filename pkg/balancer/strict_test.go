package balancer

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rawBackend is a backend that records each request head it reads, as
// bytes, and answers 200 "ok".
type rawBackend struct {
	addr  netip.AddrPort
	mu    sync.Mutex
	heads []string
}

func startRawBackend(t *testing.T) *rawBackend {
	t.Helper()
	rb := &rawBackend{}
	rb.addr = serveOK(t, func(head []byte) {
		rb.mu.Lock()
		rb.heads = append(rb.heads, string(head))
		rb.mu.Unlock()
	})
	return rb
}

// serveOK starts a backend that answers each request head (requests
// without bodies) on a connection with 200 "ok", in order, after passing
// the head to onHead when it is set.
func serveOK(tb testing.TB, onHead func(head []byte)) netip.AddrPort {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	tb.Cleanup(func() { ln.Close() })
	answer := []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				var head []byte
				for {
					line, err := br.ReadSlice('\n')
					if err != nil && err != bufio.ErrBufferFull {
						return
					}
					if onHead != nil {
						head = append(head, line...)
					}
					if err != nil || string(line) != "\r\n" {
						continue
					}
					if onHead != nil {
						onHead(head)
						head = head[:0]
					}
					if _, err := c.Write(answer); err != nil {
						return
					}
				}
			}()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

// take returns the heads received since the last call.
func (rb *rawBackend) take() []string {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	h := rb.heads
	rb.heads = nil
	return h
}

// statusOfRaw sends raw on a new connection and returns the answer's status
// (0: none before the gateway closed the connection).
func statusOfRaw(t *testing.T, addr, raw string) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = io.WriteString(c, raw)
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// The gateway's request edge (RFC 9110/9112): what it refuses, and what a
// backend gets of what it accepts.
func TestStrictRequestEdge(t *testing.T) {
	refused := []struct {
		name, req string
		status    int
	}{
		{"NUL in target", "GET /a\x00b HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"bare CR in target", "GET /a\rb HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"HTAB in target", "GET /a\tb HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"VT in target", "GET /a\vb HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"FF in target", "GET /a\fb HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"BS in target", "GET /a\bb HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"BEL in target", "GET /a\ab HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"DEL in target", "GET /a\x7fb HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"non-ASCII in target", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"quote in target", "GET /a\"b HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"brace in target", "GET /a{b} HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"fragment in target", "GET /a#b HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"bad percent-encoding", "GET /a%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"relative target", "GET a/b HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"asterisk not for OPTIONS", "GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"userinfo in absolute form", "GET http://u:p@good.example/ HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"other scheme", "GET ftp://good.example/ HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"CONNECT", "CONNECT good.example:443 HTTP/1.1\r\nHost: good.example:443\r\n\r\n", 501},
		{"two spaces", "GET /x  HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"lower-case version", "GET /x http/1.1\r\nHost: x\r\n\r\n", 400},
		{"unsupported version", "GET /x HTTP/2.0\r\nHost: x\r\n\r\n", 505},
		{"Host of a space", "GET / HTTP/1.1\r\nHost: \r\n\r\n", 400},
		{"Host of a tab", "GET / HTTP/1.1\r\nHost:\t\r\n\r\n", 400},
		{"Host with VT", "GET / HTTP/1.1\r\nHost: a\vb\r\n\r\n", 400},
		{"Host with FF", "GET / HTTP/1.1\r\nHost: a\fb\r\n\r\n", 400},
		{"Host with BEL", "GET / HTTP/1.1\r\nHost: a\ab\r\n\r\n", 400},
		{"Host with a space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"Host with a bad port", "GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", 400},
		{"Host with userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400},
		{"control byte in a header", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", 400},
		{"Content-Length -0", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -0\r\n\r\n", 400},
		{"Content-Length +1", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\nx", 400},
		{"Content-Length list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 1\r\n\r\nx", 400},
		{"Content-Length hex", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x1\r\n\r\nx", 400},
	}
	accepted := []struct {
		name, req string
		// what the backend's request line and Host must be
		line, host string
	}{
		{"plain", "GET /a/b?c=d HTTP/1.1\r\nHost: api.example\r\n\r\n", "GET /a/b?c=d HTTP/1.1", "api.example"},
		{"percent-encoded and sub-delims", "GET /a%20b/c;d=e,f?x=[1]&y=$'()*+:@ HTTP/1.1\r\nHost: x\r\n\r\n",
			"GET /a%20b/c;d=e,f?x=[1]&y=$'()*+:@ HTTP/1.1", "x"},
		{"one empty line first", "\r\nGET /e HTTP/1.1\r\nHost: x\r\n\r\n", "GET /e HTTP/1.1", "x"},
		{"empty lines first", "\r\n\r\n\r\nGET /e HTTP/1.1\r\nHost: x\r\n\r\n", "GET /e HTTP/1.1", "x"},
		{"absolute form", "GET http://good.example:8080/p?q=1 HTTP/1.1\r\nHost: evil.example\r\n\r\n",
			"GET /p?q=1 HTTP/1.1", "good.example:8080"},
		{"absolute form without path", "GET HTTPS://good.example HTTP/1.1\r\nHost: evil.example\r\n\r\n",
			"GET / HTTP/1.1", "good.example"},
		{"IPv6 Host", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", "GET / HTTP/1.1", "[::1]:8080"},
		{"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", "OPTIONS * HTTP/1.1", "x"},
		{"Content-Length with leading zeros", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 002\r\n\r\nhi", "POST / HTTP/1.1", "x"},
	}
	eachRelay(t, func(t *testing.T, rl relay) {
		b, f := newTestBalancer(t, rl)
		rb := startRawBackend(t)
		b.SetNode("n", []netip.AddrPort{rb.addr})
		for _, tc := range refused {
			assert.Equal(t, tc.status, statusOfRaw(t, f.Addr, tc.req), tc.name)
			assert.Empty(t, rb.take(), "%s: nothing reaches the backend", tc.name)
		}
		for _, tc := range accepted {
			require.Equal(t, 200, statusOfRaw(t, f.Addr, tc.req), tc.name)
			heads := rb.take()
			require.Len(t, heads, 1, tc.name)
			req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(heads[0])))
			require.NoError(t, err, "%s: %q", tc.name, heads[0])
			assert.Equal(t, tc.line, heads[0][:strings.Index(heads[0], "\r\n")], tc.name)
			assert.Equal(t, tc.host, req.Host, tc.name)
			assert.Equal(t, []string{tc.host}, req.Header.Values("X-Forwarded-Host"), tc.name)
			assert.NotContains(t, heads[0], "evil", tc.name)
		}
	})
}

// A request head must arrive within ClientHeaderTimeout of its first byte
// (of the accept, on a new connection), or the client gets 408; a
// keep-alive connection idle for ClientIdleTimeout is closed without an
// answer.
func TestRequestHeadTimeout(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		cfg := testConfig()
		cfg.ClientHeaderTimeout, cfg.ClientIdleTimeout = 400*time.Millisecond, 1200*time.Millisecond
		b, f := serveBalancer(t, rl, cfg)
		setBackends(b, startBackends(t, 1, nil))
		answer := func(c net.Conn) (int, time.Duration) {
			began := time.Now()
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				return 0, time.Since(began)
			}
			resp.Body.Close()
			return resp.StatusCode, time.Since(began)
		}
		dial := func() net.Conn {
			c, err := net.Dial("tcp", f.Addr)
			require.NoError(t, err)
			t.Cleanup(func() { c.Close() })
			return c
		}

		// A connection that never sends a request.
		code, took := answer(dial())
		assert.Equal(t, 408, code, "silent new connection")
		assert.InDelta(t, 0.4, took.Seconds(), 0.35)

		// A head that stops half-way.
		c := dial()
		_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHo")
		code, _ = answer(c)
		assert.Equal(t, 408, code, "half a head")

		// A head that trickles in, a byte every 100 ms: the timeout counts
		// from its first byte, not from the last.
		slow := dial()
		go func() {
			for _, b := range []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n") {
				if _, err := slow.Write([]byte{b}); err != nil {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		}()
		code, took = answer(slow)
		assert.Equal(t, 408, code, "trickling head")
		assert.Less(t, took, 1500*time.Millisecond)

		// After an answered request, an idle keep-alive connection is
		// closed without an answer after ClientIdleTimeout, even though it
		// is longer than the header timeout.
		closedAfter, err := idleClose(t, dial())
		assert.ErrorIs(t, err, io.EOF, "closed without an answer")
		assert.InDelta(t, 1.2, closedAfter.Seconds(), 0.6)
	})
}
