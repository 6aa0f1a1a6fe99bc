//go:build linux

package balancer

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A client that sends many requests at once and reads the answers late
// gets every answer, in order: what the kernel cannot take waits in the
// loop, and the connection's next request waits for it.
func TestLoopAnswersWaitForASlowReader(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		body := strings.Repeat("x", 15000) // the head and this fit a read buffer
		_, f := oneBackend(t, rl, func(w http.ResponseWriter, r *http.Request) {
			answer := r.URL.Path + ":" + body
			w.Header().Set("Content-Length", fmt.Sprint(len(answer)))
			_, _ = io.WriteString(w, answer)
		})
		c, err := net.Dial("tcp", f.Addr)
		require.NoError(t, err)
		defer c.Close()
		const n = 2000 // 30 MB of answers: more than the sockets hold
		go func() {
			var req strings.Builder
			for i := range n {
				fmt.Fprintf(&req, "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
			}
			_, _ = io.WriteString(c, req.String())
		}()
		time.Sleep(300 * time.Millisecond) // the answers pile up
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		br := bufio.NewReader(c)
		for i := range n {
			resp, err := http.ReadResponse(br, nil)
			require.NoError(t, err, "answer %d of %d", i, n)
			b, err := io.ReadAll(resp.Body)
			require.NoError(t, err, "answer %d", i)
			require.Equal(t, fmt.Sprintf("/%d:%s", i, body), string(b), "answer %d", i)
		}
	})
}

// One keep-alive connection alternates between exchanges the loop relays
// and ones it hands to a goroutine (a chunked upload, a chunked or large
// answer, a 100-continue, an interim 103): each is answered in full, and the
// connection comes back to the loop after each.
func TestLoopHandsOverAndTakesBack(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		big := strings.Repeat("y", 64<<10) // more than a read buffer
		b, f := oneBackend(t, rl, func(w http.ResponseWriter, r *http.Request) {
			in, _ := io.ReadAll(r.Body)
			switch r.URL.Path {
			case "/chunked":
				_, _ = io.WriteString(w, "a,")
				w.(http.Flusher).Flush()
				_, _ = io.WriteString(w, "b")
			case "/big":
				_, _ = io.WriteString(w, big)
			case "/hints":
				w.Header().Set("Link", "</s.css>; rel=preload")
				w.WriteHeader(http.StatusEarlyHints)
				_, _ = io.WriteString(w, "after hints")
			default:
				fmt.Fprintf(w, "%s %s %q", r.Method, r.URL.Path, in)
			}
		})
		c, err := net.Dial("tcp", f.Addr)
		require.NoError(t, err)
		defer c.Close()
		br := bufio.NewReader(c)
		exchange := func(req string) (int, string) {
			t.Helper()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_, err := io.WriteString(c, req)
			require.NoError(t, err)
			for {
				resp, err := http.ReadResponse(br, nil)
				require.NoError(t, err)
				body, err := io.ReadAll(resp.Body)
				require.NoError(t, err)
				if resp.StatusCode >= 200 {
					return resp.StatusCode, string(body)
				}
			}
		}
		for range 2 {
			_, got := exchange("GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
			assert.Equal(t, `GET /a ""`, got)
			_, got = exchange("POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
			assert.Equal(t, `POST /up "abc"`, got)
			_, got = exchange("GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n")
			assert.Equal(t, "a,b", got)
			_, got = exchange("GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
			assert.Equal(t, big, got)
			_, got = exchange("GET /hints HTTP/1.1\r\nHost: x\r\n\r\n")
			assert.Equal(t, "after hints", got)
			_, got = exchange("POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
			assert.Equal(t, `POST /small "hi"`, got)
		}
		if !!rl.eventLoop {
			loops := b.loops.running.Load()
			require.NotNil(t, loops)
			l := (*loops)[0]
			assert.Equal(t, 1, owned(t, l), "the connection is back with the loop")
		}
	})
}

// owned is how many client connections l owns.
func owned(t *testing.T, l *loop) int {
	t.Helper()
	n := make(chan int, 1)
	require.True(t, l.post(func() { n <- len(l.clients) }))
	return <-n
}

// Several loops share the connections in turn, each with its own pools.
func TestLoopThreads(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		cfg := DefaultConfig()
		cfg.Logger = hclog.NewNullLogger()
		cfg.HealthInterval = 0
		cfg.EventLoopThreads = 3
		b, f := serveBalancer(t, rl, cfg)
		setBackends(b, startBackends(t, 4, nil))
		conns := make([]net.Conn, 6)
		for i := range conns {
			c, err := net.Dial("tcp", f.Addr)
			require.NoError(t, err)
			defer c.Close()
			conns[i] = c
		}
		for range 20 {
			for _, c := range conns {
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				_, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
				require.NoError(t, err)
			}
			for _, c := range conns {
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				require.NoError(t, err)
				_, _ = io.Copy(io.Discard, resp.Body)
				assert.Equal(t, 200, resp.StatusCode)
			}
		}
		if !rl.eventLoop {
			assert.Nil(t, b.loops.running.Load())
			return
		}
		loops := b.loops.running.Load()
		require.NotNil(t, loops)
		require.Len(t, *loops, 3)
		for i, l := range *loops {
			assert.Equal(t, 2, owned(t, l), "loop %d", i)
		}
	})
}

// An answer too large for the loop is relayed by a goroutine on the loop's
// backend connection, which then goes back to the loop's pool: large
// answers in a row do not cost a new connection each.
func TestLoopLargeAnswersReuseConnections(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		big := strings.Repeat("z", 64<<10)
		var dialled atomic.Int32
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, big)
		}))
		srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				dialled.Add(1)
			}
		}
		srv.Start()
		t.Cleanup(srv.Close)
		b, f := newTestBalancer(t, rl)
		setBackends(b, []testBackend{{Addr: netip.MustParseAddrPort(srv.Listener.Addr().String()), Node: "n"}})
		client := &http.Client{}
		for i := range 20 {
			resp, err := client.Get(f.URL)
			require.NoError(t, err, "request %d", i)
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			require.Equal(t, big, string(body), "request %d", i)
		}
		assert.Equal(t, int32(1), dialled.Load(), "one backend connection for 20 answers in a row")
	})
}
