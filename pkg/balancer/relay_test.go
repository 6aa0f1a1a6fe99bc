package balancer

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// HTTP/1.1 behaviour of the relay, against real net/http backends and, where
// the exact bytes matter, raw connections.

func oneBackend(t *testing.T, r relay, h http.HandlerFunc) (*Balancer, *front) {
	t.Helper()
	b, f := newTestBalancer(t, r)
	setBackends(b, startBackends(t, 1, func(int) http.HandlerFunc { return h }))
	return b, f
}

// rawExchange sends raw bytes on a new connection and returns everything
// the gateway answered until it closed the connection or went quiet.
func rawExchange(t *testing.T, addr, request string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, request)
	require.NoError(t, err)
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	out, _ := io.ReadAll(c)
	return string(out)
}

func TestStreamingResponseIsNotBuffered(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		release := make(chan struct{})
		_, f := oneBackend(t, rl, func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "first part\n")
			w.(http.Flusher).Flush()
			<-release // the rest comes only after the client saw the first part
			_, _ = io.WriteString(w, "second part\n")
		})
		resp, err := http.Get(f.URL)
		require.NoError(t, err)
		defer resp.Body.Close()
		assert.Equal(t, []string{"chunked"}, resp.TransferEncoding)
		br := bufio.NewReader(resp.Body)
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		assert.Equal(t, "first part\n", line)
		close(release)
		rest, err := io.ReadAll(br)
		require.NoError(t, err)
		assert.Equal(t, "second part\n", string(rest))
	})
}

func TestStreamingRequestBodyIsNotBuffered(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		got := make(chan string, 1)
		_, f := oneBackend(t, rl, func(w http.ResponseWriter, r *http.Request) {
			line, _ := bufio.NewReader(r.Body).ReadString('\n')
			got <- line // before the client has sent the rest
			_, _ = io.Copy(io.Discard, r.Body)
			_, _ = io.WriteString(w, "done")
		})
		pr, pw := io.Pipe()
		resp := make(chan *http.Response, 1)
		go func() {
			r, err := http.Post(f.URL, "text/plain", pr)
			if assert.NoError(t, err) {
				resp <- r
			}
		}()
		_, err := io.WriteString(pw, "hello\n")
		require.NoError(t, err)
		select {
		case line := <-got:
			assert.Equal(t, "hello\n", line)
		case <-time.After(5 * time.Second):
			t.Fatal("the backend did not see the first line before the body ended")
		}
		require.NoError(t, pw.Close())
		r := <-resp
		body, _ := io.ReadAll(r.Body)
		r.Body.Close()
		assert.Equal(t, "done", string(body))
	})
}

func TestLargeBodiesBothWays(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		_, f := oneBackend(t, rl, func(w http.ResponseWriter, r *http.Request) {
			h := sha256.New()
			n, _ := io.Copy(h, r.Body)
			w.Header().Set("X-Sum", fmt.Sprintf("%x", h.Sum(nil)))
			w.Header().Set("X-Len", fmt.Sprint(n))
			_, _ = io.CopyN(w, bytes.NewReader(bytes.Repeat([]byte("0123456789abcdef"), 1<<16)), 1<<20) // 1 MiB
		})
		body := make([]byte, 3<<20+7)
		_, _ = rand.Read(body)
		sum := sha256.Sum256(body)
		for _, chunked := range []bool{false, true} {
			var rd io.Reader = bytes.NewReader(body)
			if chunked {
				rd = io.MultiReader(rd) // unknown length: sent chunked
			}
			resp, err := http.Post(f.URL, "application/octet-stream", rd)
			require.NoError(t, err)
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			assert.Equal(t, fmt.Sprintf("%x", sum), resp.Header.Get("X-Sum"), "chunked=%v", chunked)
			assert.Equal(t, fmt.Sprint(len(body)), resp.Header.Get("X-Len"))
			assert.Len(t, got, 1<<20)
		}
	})
}

func TestExpectContinue(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		_, f := oneBackend(t, rl, func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("X-Reject") != "" {
				w.WriteHeader(http.StatusRequestEntityTooLarge)
				return
			}
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "got %d", len(b))
		})
		// The client sends the body only after "100 Continue": the gateway
		// must pass the backend's interim answer on.
		c, err := net.Dial("tcp", f.Addr)
		require.NoError(t, err)
		defer c.Close()
		_, err = io.WriteString(c, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
		require.NoError(t, err)
		br := bufio.NewReader(c)
		_ = c.SetReadDeadline(time.Now().Add(900 * time.Millisecond)) // before the gateway's one-second fallback
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		assert.Equal(t, "HTTP/1.1 100 Continue\r\n", line)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = br.ReadString('\n') // blank line
		_, err = io.WriteString(c, "hello")
		require.NoError(t, err)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		assert.Equal(t, "got 5", string(b))

		// A final answer instead of 100: relayed, the body never sent.
		out := rawExchange(t, f.Addr, "POST /up HTTP/1.1\r\nHost: x\r\nX-Reject: 1\r\nContent-Length: 5000000\r\nExpect: 100-continue\r\n\r\n")
		assert.True(t, strings.HasPrefix(out, "HTTP/1.1 413 "), out)
		assert.Contains(t, out, "Connection: close")

		// Go's client waits for 100 Continue too.
		req, _ := http.NewRequest(http.MethodPost, f.URL, strings.NewReader("abc"))
		req.Header.Set("Expect", "100-continue")
		client := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: 5 * time.Second}}
		r2, err := client.Do(req)
		require.NoError(t, err)
		b, _ = io.ReadAll(r2.Body)
		r2.Body.Close()
		assert.Equal(t, "got 3", string(b))
	})
}

func TestWebSocketUpgradePassesThrough(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		_, f := oneBackend(t, rl, func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Upgrade") != "websocket" || !strings.EqualFold(r.Header.Get("Connection"), "Upgrade") {
				http.Error(w, "want an upgrade", http.StatusBadRequest)
				return
			}
			conn, brw, err := w.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			_ = brw.Flush()
			// Echo lines until the client closes.
			for {
				line, err := brw.ReadString('\n')
				if err != nil {
					return
				}
				_, _ = brw.WriteString("echo " + line)
				_ = brw.Flush()
			}
		})
		c, err := net.Dial("tcp", f.Addr)
		require.NoError(t, err)
		defer c.Close()
		_, err = io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
		require.NoError(t, err)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		assert.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
		assert.Equal(t, "websocket", resp.Header.Get("Upgrade"))
		for _, msg := range []string{"one\n", "two\n"} {
			_, err = io.WriteString(c, msg)
			require.NoError(t, err)
			line, err := br.ReadString('\n')
			require.NoError(t, err)
			assert.Equal(t, "echo "+msg, line)
		}
	})
}

func TestHopByHopHeadersAreNotForwarded(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		seen := make(chan http.Header, 1)
		_, f := oneBackend(t, rl, func(w http.ResponseWriter, r *http.Request) {
			seen <- r.Header.Clone()
			w.Header().Set("Keep-Alive", "timeout=5")
			w.Header().Set("X-Secret-Hop", "x")
			w.Header().Set("Connection", "X-Secret-Hop")
			w.Header().Set("Proxy-Authenticate", `Basic realm="hop"`)
			_, _ = io.WriteString(w, "ok")
		})
		req, _ := http.NewRequest(http.MethodGet, f.URL, nil)
		req.Header.Set("Connection", "X-Custom-Hop")
		req.Header.Set("X-Custom-Hop", "should not pass")
		req.Header.Set("Keep-Alive", "timeout=1")
		req.Header.Set("TE", "trailers")
		req.Header.Set("Trailer", "X-Checksum")
		req.Header.Set("Proxy-Authorization", "Basic aG9wOmhvcA==")
		req.Header.Set("Proxy-Connection", "keep-alive")
		req.Header.Set("Upgrade", "websocket")       // without Connection: upgrade, not an upgrade
		req.Header.Set("X-Forwarded-Proto", "https") // a client must not be able to claim TLS
		req.Header.Set("X-Kept", "yes")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		h := <-seen
		for _, name := range []string{"X-Custom-Hop", "Keep-Alive", "Te", "Connection", "Trailer",
			"Proxy-Authorization", "Proxy-Connection", "Upgrade"} {
			assert.Empty(t, h.Get(name), name)
		}
		assert.Equal(t, "yes", h.Get("X-Kept"))
		assert.Equal(t, "http", h.Get("X-Forwarded-Proto"))
		assert.NotEmpty(t, h.Get("X-Request-Id"))
		assert.Empty(t, resp.Header.Get("Keep-Alive"))
		assert.Empty(t, resp.Header.Get("X-Secret-Hop"))
		assert.Empty(t, resp.Header.Get("Proxy-Authenticate"))
	})
}

func TestRequestIDKeptOrGenerated(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		seen := make(chan string, 3)
		_, f := oneBackend(t, rl, func(w http.ResponseWriter, r *http.Request) { seen <- r.Header.Get("X-Request-Id") })
		req, _ := http.NewRequest(http.MethodGet, f.URL, nil)
		req.Header.Set("X-Request-Id", "client-chosen-1")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, "client-chosen-1", <-seen)
		get(t, f.URL)
		get(t, f.URL)
		a, b := <-seen, <-seen
		assert.NotEmpty(t, a)
		assert.NotEqual(t, a, b, "generated ids are unique")
	})
}

func TestMalformedRequestsAreRefused(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		var hits int
		_, f := oneBackend(t, rl, func(w http.ResponseWriter, r *http.Request) { hits++ })
		for name, c := range map[string]struct{ req, status string }{
			"CL and TE":        {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400"},
			"two CLs":          {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", "400"},
			"bad CL":           {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc", "400"},
			"gzip TE":          {"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", "501"},
			"no Host":          {"GET / HTTP/1.1\r\n\r\n", "400"},
			"space in name":    {"GET / HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n", "400"},
			"space before :":   {"GET / HTTP/1.1\r\nHost: x\r\nContent-Length : 0\r\n\r\n", "400"},
			"folding":          {"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  continued\r\n\r\n", "400"},
			"bare LF":          {"GET / HTTP/1.1\nHost: x\n\n", "400"},
			"HTTP/2 preface":   {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "505"},
			"head over 16 KiB": {"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 17<<10) + "\r\n\r\n", "431"},
		} {
			out := rawExchange(t, f.Addr, c.req)
			assert.True(t, strings.HasPrefix(out, "HTTP/1.1 "+c.status+" "), "%s: %q", name, truncate([]byte(out), 120))
			assert.Contains(t, out, "Connection: close", name)
		}
		assert.Zero(t, hits, "nothing malformed reaches a backend")
	})
}

// TestMalformedChunkedBody: a chunked body that goes wrong half-way is the
// client's fault (400, not a backend failure), and the connection closes:
// what follows the bad chunk line is never read as another request.
func TestMalformedChunkedBody(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		var paths []string
		var mu sync.Mutex
		b, f := oneBackend(t, rl, func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			mu.Lock()
			paths = append(paths, r.URL.Path)
			mu.Unlock()
		})
		out := rawExchange(t, f.Addr, "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"+
			"3\r\nabc\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
		assert.True(t, strings.HasPrefix(out, "HTTP/1.1 400 "), "%q", out)
		assert.Contains(t, out, "Connection: close")
		assert.Equal(t, 1, strings.Count(out, "HTTP/1.1 "), "one answer, then the connection closed: %q", out)
		mu.Lock()
		assert.NotContains(t, paths, "/smuggled")
		mu.Unlock()
		for _, be := range b.Backends() {
			assert.Zero(t, be.Failures, "a client's bad body is not the backend's failure")
		}
	})
}

func TestKeepAlivePipeliningAndHTTP10(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		_, f := oneBackend(t, rl, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/chunked" {
				_, _ = io.WriteString(w, "part1,")
				w.(http.Flusher).Flush()
				_, _ = io.WriteString(w, "part2")
				return
			}
			if r.Method == http.MethodHead {
				w.Header().Set("Content-Length", "10")
				return
			}
			if r.URL.Path == "/empty" {
				w.WriteHeader(http.StatusNoContent)
				return
			}
			fmt.Fprintf(w, "path=%s", r.URL.Path)
		})
		// Three pipelined requests on one connection, answered in order; HEAD
		// and 204 carry no body.
		out := rawExchange(t, f.Addr, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /h HTTP/1.1\r\nHost: x\r\n\r\nGET /empty HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		br := bufio.NewReader(strings.NewReader(out))
		for _, want := range []struct {
			method, body string
			status       int
		}{{"GET", "path=/a", 200}, {"HEAD", "", 200}, {"GET", "", 204}, {"GET", "path=/b", 200}} {
			resp, err := http.ReadResponse(br, &http.Request{Method: want.method})
			require.NoError(t, err, out)
			b, _ := io.ReadAll(resp.Body)
			assert.Equal(t, want.status, resp.StatusCode)
			assert.Equal(t, want.body, string(b))
		}

		// HTTP/1.0: no Host needed; a chunked answer arrives de-chunked and
		// the connection closes after it.
		out = rawExchange(t, f.Addr, "GET /chunked HTTP/1.0\r\n\r\n")
		assert.True(t, strings.HasPrefix(out, "HTTP/1.1 200 OK\r\n"), out)
		assert.NotContains(t, out, "Transfer-Encoding")
		assert.True(t, strings.HasSuffix(out, "\r\n\r\npart1,part2"), out)

		// Absolute-form target: the backend gets the path.
		out = rawExchange(t, f.Addr, "GET http://example.test/abs?q=1 HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n")
		assert.Contains(t, out, "path=/abs")
	})
}

func TestResponseUntilCloseAndBackendTimeouts(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		// A backend answering without a length: the body ends when it closes;
		// the client connection closes too.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					_, _ = http.ReadRequest(bufio.NewReader(c))
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close")
				}()
			}
		}()
		b, f := newTestBalancer(t, rl)
		setBackends(b, []testBackend{{Addr: netip.MustParseAddrPort(ln.Addr().String())}})
		code, body := get(t, f.URL)
		assert.Equal(t, 200, code)
		assert.Equal(t, "until close", body)

		// A backend slower than ResponseHeaderTimeout: 504, and a fast one at
		// the same time is not held up.
		cfg := DefaultConfig()
		cfg.ResponseHeaderTimeout = 300 * time.Millisecond
		cfg.Retries, cfg.HealthInterval = 0, 0
		b2, f2 := serveBalancer(t, rl, cfg)
		slow := startBackends(t, 1, func(int) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/slow" {
					time.Sleep(2 * time.Second)
				}
				_, _ = io.WriteString(w, "ok")
			}
		})
		setBackends(b2, slow)
		done := make(chan int, 1)
		go func() {
			resp, err := http.Get(f2.URL + "/slow")
			if assert.NoError(t, err) {
				resp.Body.Close()
				done <- resp.StatusCode
			}
		}()
		began := time.Now()
		code, _ = get(t, f2.URL+"/fast")
		assert.Equal(t, 200, code)
		assert.Less(t, time.Since(began), time.Second)
		assert.Equal(t, http.StatusGatewayTimeout, <-done)
	})
}

func TestQueryStringAndMethodsPassThrough(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		_, f := oneBackend(t, rl, func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s %s", r.Method, r.URL.RequestURI())
		})
		for _, m := range []string{"GET", "DELETE", "PATCH", "OPTIONS"} {
			req, _ := http.NewRequest(m, f.URL+"/p/a%20b?x="+url.QueryEscape("1&2"), nil)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, m+" /p/a%20b?x=1%262", string(b))
		}
	})
}

// TestClientIdleTimeout: an idle keep-alive client connection is closed
// after ClientIdleTimeout (to within a second), but an upload that takes
// longer than that is not cut off.
func TestClientIdleTimeout(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		cfg := DefaultConfig()
		cfg.HealthInterval, cfg.ClientIdleTimeout = 0, 1500*time.Millisecond
		b, f := serveBalancer(t, rl, cfg)
		setBackends(b, startBackends(t, 1, func(int) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				n, _ := io.Copy(io.Discard, r.Body)
				fmt.Fprintf(w, "%d", n)
			}
		}))
		c, err := net.Dial("tcp", f.Addr)
		require.NoError(t, err)
		defer c.Close()
		closedAfter, err := idleClose(t, c)
		assert.ErrorIs(t, err, io.EOF, "the gateway closed the idle connection")
		assert.InDelta(t, 1.5, closedAfter.Seconds(), 1.0)

		// A slow upload: 4 pieces 600 ms apart, 2.4 s in all.
		pr, pw := io.Pipe()
		go func() {
			for range 4 {
				_, _ = pw.Write([]byte("piece"))
				time.Sleep(600 * time.Millisecond)
			}
			pw.Close()
		}()
		r2, err := http.Post(f.URL, "text/plain", pr)
		require.NoError(t, err)
		body, _ := io.ReadAll(r2.Body)
		r2.Body.Close()
		assert.Equal(t, "20", string(body))
	})
}

// blackhole returns the address of a listener that takes no more
// connections: its accept queue (backlog 0) is full, so the kernel drops
// new SYNs and a connect hangs until the dialer gives up.
func blackhole(t *testing.T) netip.AddrPort {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	t.Cleanup(func() { syscall.Close(fd) })
	require.NoError(t, syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	require.NoError(t, syscall.Listen(fd, 0))
	sa, err := syscall.Getsockname(fd)
	require.NoError(t, err)
	addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*syscall.SockaddrInet4).Port))
	for range 8 {
		c, err := net.DialTimeout("tcp", addr.String(), 200*time.Millisecond)
		if err != nil {
			require.True(t, isTimeout(err), "filling the accept queue: %v", err)
			return addr
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Fatal("the accept queue never filled")
	return addr
}

// TestConnectTimeout: a backend that does not complete the connection is
// given up after DialTimeout, answered 504, and ejected.
func TestConnectTimeout(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		cfg := DefaultConfig()
		cfg.DialTimeout = 300 * time.Millisecond
		cfg.Retries, cfg.HealthInterval = 0, 0
		b, f := serveBalancer(t, rl, cfg)
		setBackends(b, []testBackend{{Addr: blackhole(t)}})
		began := time.Now()
		client := &http.Client{Timeout: 10 * time.Second} // fails, not hangs, without the timeout
		resp, err := client.Get(f.URL)
		took := time.Since(began)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusGatewayTimeout, resp.StatusCode)
		assert.GreaterOrEqual(t, took, cfg.DialTimeout)
		assert.Less(t, took, DefaultConfig().DialTimeout, "the configured timeout, not the default")
		assert.Equal(t, uint64(1), b.Service(b.cfg.Service).ejections.Load())
	})
}

// idleClose sends one request on c, reads its answer, then waits (at most
// 5 s) for the gateway to close the connection, left idle: it returns how
// long that took and the read's error (io.EOF: closed without an answer).
func idleClose(t *testing.T, c net.Conn) (time.Duration, error) {
	t.Helper()
	_, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	_, _ = io.ReadAll(resp.Body)
	idle := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = br.ReadByte()
	return time.Since(idle), err
}
