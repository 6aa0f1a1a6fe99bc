package balancer

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// testBackend is a backend a test announces, as a member would.
type testBackend struct {
	Addr netip.AddrPort
	Node string
}

// startBackends starts n real HTTP servers answering their own index.
func startBackends(t testing.TB, n int, h func(i int) http.HandlerFunc) []testBackend {
	t.Helper()
	var out []testBackend
	for i := range n {
		handler := h
		if handler == nil {
			handler = func(i int) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "%d", i) }
			}
		}
		srv := httptest.NewServer(handler(i))
		t.Cleanup(srv.Close)
		out = append(out, testBackend{Addr: netip.MustParseAddrPort(srv.Listener.Addr().String()), Node: fmt.Sprintf("n%d", i)})
	}
	return out
}

// setBackends makes list the whole backend set, one SetNode per member, as
// membership events would.
func setBackends(b *Balancer, list []testBackend) {
	byNode := map[string][]netip.AddrPort{}
	for _, be := range list {
		byNode[be.Node] = append(byNode[be.Node], be.Addr)
	}
	for _, st := range b.Backends() {
		if _, ok := byNode[st.Node]; !ok {
			b.SetNode(st.Node, nil)
		}
	}
	for node, addrs := range byNode {
		b.SetNode(node, addrs)
	}
}

// front is a balancer serving on loopback.
type front struct{ URL, Addr string }

// relay is one of the two ways a Balancer relays exchanges: every test of
// the relay runs with both (eachRelay), chosen through Config.EventLoop.
type relay struct {
	name      string
	eventLoop bool
}

var relays = []relay{{"loop", true}, {"goroutines", false}}

// eachRelay runs test once with each relay, as subtests.
func eachRelay(t *testing.T, test func(t *testing.T, rl relay)) {
	t.Helper()
	for _, r := range relays {
		t.Run(r.name, func(t *testing.T) { test(t, r) })
	}
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Service = "predictor"
	cfg.Logger = hclog.NewNullLogger()
	cfg.HealthInterval = 0 // tests of health checks turn them on
	return cfg
}

func newTestBalancer(t *testing.T, r relay) (*Balancer, *front) {
	t.Helper()
	return serveBalancer(t, r, testConfig())
}

func serveBalancer(t testing.TB, r relay, cfg Config) (*Balancer, *front) {
	t.Helper()
	cfg.EventLoop = r.eventLoop
	if cfg.DrainIdleDelay == DefaultConfig().DrainIdleDelay {
		cfg.DrainIdleDelay = 0 // the tests' idle keep-alive connections close at once
	}
	b, err := New(cfg)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- b.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		assert.NoError(t, b.Shutdown(ctx))
		assert.ErrorIs(t, <-done, ErrServerClosed)
		b.Close()
	})
	return b, &front{URL: "http://" + ln.Addr().String(), Addr: ln.Addr().String()}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := netip.MustParseAddrPort(l.Addr().String())
	require.NoError(t, l.Close())
	return addr
}

func TestNoBackendsAnswers503(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		_, front := newTestBalancer(t, rl)
		resp, err := http.Get(front.URL)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		id := resp.Header.Get("X-Request-Id")
		assert.Regexp(t, `^[0-9a-f]{12}-[0-9a-z]+$`, id)
		assert.Equal(t, "herd gateway: no backend available for service \"predictor\"\nrequest id: "+id+"\n", string(body))
	})
}

func TestRoundRobinIsEven(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		b, front := newTestBalancer(t, rl)
		setBackends(b, startBackends(t, 4, nil))
		counts := map[string]int{}
		for range 400 {
			code, body := get(t, front.URL)
			require.Equal(t, http.StatusOK, code)
			counts[body]++
		}
		assert.Equal(t, map[string]int{"0": 100, "1": 100, "2": 100, "3": 100}, counts)
	})
}

// The backend sees the client's Host, path and query, the client's address
// in X-Forwarded-For and the scheme in X-Forwarded-Proto. A client's own
// X-Forwarded-For is replaced unless it is a trusted proxy, whose list is
// appended to.
func TestForwardedHeadersAndHost(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trusted []netip.Prefix
		want    string
	}{
		{"untrusted client", nil, "127.0.0.1"},
		{"other proxies trusted", []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, "127.0.0.1"},
		{"trusted proxy", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, "10.1.2.3, 127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eachRelay(t, func(t *testing.T, rl relay) {
				cfg := testConfig()
				cfg.TrustedProxies = tc.trusted
				b, front := serveBalancer(t, rl, cfg)
				seen := make(chan *http.Request, 1)
				setBackends(b, startBackends(t, 1, func(int) http.HandlerFunc {
					return func(w http.ResponseWriter, r *http.Request) { seen <- r }
				}))
				req, err := http.NewRequest(http.MethodGet, front.URL+"/x?y=1", nil)
				require.NoError(t, err)
				req.Host = "api.example.test"
				req.Header.Set("X-Forwarded-For", "10.1.2.3")
				req.Header.Set("X-Forwarded-Proto", "https")
				resp, err := http.DefaultClient.Do(req)
				require.NoError(t, err)
				resp.Body.Close()
				r := <-seen
				assert.Equal(t, "api.example.test", r.Host)
				assert.Equal(t, "/x", r.URL.Path)
				assert.Equal(t, "y=1", r.URL.RawQuery)
				assert.Equal(t, []string{tc.want}, r.Header.Values("X-Forwarded-For"))
				assert.Equal(t, []string{"http"}, r.Header.Values("X-Forwarded-Proto"))
			})
		})
	}
}

func TestRefusedConnectionIsRetriedAndEjected(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		b, front := newTestBalancer(t, rl)
		dead := testBackend{Addr: closedPort(t), Node: "dead"}
		setBackends(b, append(startBackends(t, 2, nil), dead))
		for range 30 {
			code, _ := get(t, front.URL)
			require.Equal(t, http.StatusOK, code)
		}
		// A POST with a body is retried too when the connection was refused:
		// nothing was sent.
		for range 6 {
			resp, err := http.Post(front.URL, "text/plain", strings.NewReader("payload"))
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
		}
		for _, st := range b.Backends() {
			if st.Addr == dead.Addr {
				assert.Equal(t, "ejected", st.State)
				assert.LessOrEqual(t, st.Failures, uint64(2), "an ejected backend gets no new requests")
			}
		}
	})
}

func TestPostThatReachedBackendIsNotRetried(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		b, front := newTestBalancer(t, rl)
		var hits atomic.Int32
		setBackends(b, startBackends(t, 4, func(int) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				_, _ = io.ReadAll(r.Body)
				conn, _, err := w.(http.Hijacker).Hijack()
				if err == nil {
					conn.Close() // reset: an empty response after the body was sent
				}
			}
		}))
		resp, err := http.Post(front.URL, "text/plain", strings.NewReader("charge the card"))
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
		assert.Equal(t, int32(1), hits.Load(), "a non-idempotent request must reach one backend only")

		hits.Store(0)
		code, _ := get(t, front.URL)
		assert.Equal(t, http.StatusBadGateway, code)
		assert.Equal(t, int32(3), hits.Load(), "a GET is retried on Retries (2) other backends, no more")
	})
}

func TestInFlightRequestFinishesAfterRemoval(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		b, front := newTestBalancer(t, rl)
		release := make(chan struct{})
		started := make(chan struct{})
		backends := startBackends(t, 1, func(int) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				close(started)
				<-release
				_, _ = io.WriteString(w, "finished")
			}
		})
		setBackends(b, backends)
		result := make(chan string, 1)
		go func() {
			_, body := get(t, front.URL)
			result <- body
		}()
		<-started
		setBackends(b, nil)
		code, _ := get(t, front.URL)
		assert.Equal(t, http.StatusServiceUnavailable, code, "no new request reaches a removed backend")
		close(release)
		assert.Equal(t, "finished", <-result)
	})
}

func TestSnapshotSwapUnderConcurrentReaders(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		b, front := newTestBalancer(t, rl)
		all := startBackends(t, 6, nil)
		setA, setB := all[:3], all[3:]
		setBackends(b, setA)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var failures, served atomic.Int64
		for range 8 {
			wg.Go(func() {
				client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
				defer client.CloseIdleConnections()
				for {
					select {
					case <-stop:
						return
					default:
					}
					resp, err := client.Get(front.URL)
					if err != nil || resp.StatusCode != http.StatusOK {
						failures.Add(1)
					}
					if err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
					served.Add(1)
				}
			})
		}
		for i := range 200 {
			if i%2 == 0 {
				setBackends(b, setB)
			} else {
				setBackends(b, append(append([]testBackend{}, setA...), setB...))
			}
			time.Sleep(time.Millisecond)
		}
		close(stop)
		wg.Wait()
		assert.Zero(t, failures.Load(), "every request during swaps is served")
		assert.Greater(t, served.Load(), int64(200))
		assert.Len(t, b.Backends(), 6)
	})
}

func TestUpdateKeepsStateOfBackendsThatStay(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		b, front := newTestBalancer(t, rl)
		all := startBackends(t, 2, nil)
		setBackends(b, all)
		for range 10 {
			get(t, front.URL)
		}
		setBackends(b, all[:1])
		st := b.Backends()
		require.Len(t, st, 1)
		assert.Equal(t, uint64(5), st[0].Requests, "a staying backend keeps its counters")
	})
}

// TestRetryGoesToAnotherHost: when a host crashes, all its replicas fail;
// a retry goes to a host not tried yet, so a host with more replicas than
// Retries does not turn into 502s.
func TestRetryGoesToAnotherHost(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		b, f := newTestBalancer(t, rl)
		var dead []testBackend
		for range 5 {
			dead = append(dead, testBackend{Addr: closedPort(t), Node: "crashed"})
		}
		live := startBackends(t, 1, nil)
		live[0].Node = "alive"
		setBackends(b, append(dead, live...))
		for range 12 {
			code, body := get(t, f.URL)
			require.Equal(t, http.StatusOK, code)
			require.Equal(t, "0", body)
		}
	})
}

// Shutdown and Close stop every goroutine the Balancer started: the event
// loops, the goroutines relaying handed-over exchanges, and the health
// checks of backends still in the set.
func TestCloseStopsEverything(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		before := goleak.IgnoreCurrent()
		var checks atomic.Int32
		var servers []*httptest.Server
		for i := range 3 {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/healthz" {
					checks.Add(1)
				}
				_, _ = io.Copy(io.Discard, r.Body)
				fmt.Fprintf(w, "%d %s", i, strings.Repeat("x", 100<<10*(i%2)))
			}))
			servers = append(servers, srv)
		}
		cfg := testConfig()
		cfg.EventLoop = rl.eventLoop
		cfg.HealthInterval, cfg.HealthTimeout = 20*time.Millisecond, 20*time.Millisecond
		b, err := New(cfg)
		require.NoError(t, err)
		for i, srv := range servers {
			b.SetNode(fmt.Sprintf("n%d", i), []netip.AddrPort{netip.MustParseAddrPort(srv.Listener.Addr().String())})
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		done := make(chan error, 1)
		go func() { done <- b.Serve(ln) }()
		client := &http.Client{}
		for i := range 6 { // small and large answers, and a streamed upload
			var resp *http.Response
			if i%3 == 2 {
				resp, err = client.Post("http://"+ln.Addr().String(), "text/plain", io.MultiReader(strings.NewReader("chunked")))
			} else {
				resp, err = client.Get("http://" + ln.Addr().String())
			}
			require.NoError(t, err)
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		require.Eventually(t, func() bool { return checks.Load() >= 6 }, 5*time.Second, 5*time.Millisecond)
		client.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, b.Shutdown(ctx))
		require.ErrorIs(t, <-done, ErrServerClosed)
		b.Close()
		b.Close() // safe twice
		for _, srv := range servers {
			srv.Close()
		}
		goleak.VerifyNone(t, before)
	})
}

// While the balancer drains, a client that sends a request on an idle
// keep-alive connection gets its answer, with Connection: close, instead of
// a connection closed under it; a connection that stays idle is closed once
// DrainIdleDelay has passed, and Shutdown returns then.
func TestDrainAnswersIdleConnections(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		cfg := testConfig()
		cfg.EventLoop = rl.eventLoop
		cfg.DrainIdleDelay = 600 * time.Millisecond
		b, err := New(cfg)
		require.NoError(t, err)
		setBackends(b, startBackends(t, 1, nil))
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		served := make(chan error, 1)
		go func() { served <- b.Serve(ln) }()
		t.Cleanup(b.Close)
		dial := func() (net.Conn, *bufio.Reader) {
			c, err := net.Dial("tcp", ln.Addr().String())
			require.NoError(t, err)
			t.Cleanup(func() { c.Close() })
			br := bufio.NewReader(c)
			_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			require.NoError(t, err)
			resp, err := http.ReadResponse(br, nil)
			require.NoError(t, err)
			_, _ = io.ReadAll(resp.Body)
			return c, br
		}
		busy, busyBr := dial()
		quiet, quietBr := dial()

		began := time.Now()
		done := make(chan error, 1)
		go func() { done <- b.Shutdown(context.Background()) }()
		time.Sleep(200 * time.Millisecond)
		_, err = io.WriteString(busy, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
		require.NoError(t, err)
		resp, err := http.ReadResponse(busyBr, nil)
		require.NoError(t, err, "answered while draining")
		_, _ = io.ReadAll(resp.Body)
		assert.Equal(t, 200, resp.StatusCode)
		assert.True(t, resp.Close, "with Connection: close")

		_ = quiet.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = quietBr.ReadByte()
		assert.ErrorIs(t, err, io.EOF, "the idle connection is closed")
		require.NoError(t, <-done)
		took := time.Since(began)
		assert.GreaterOrEqual(t, took, 550*time.Millisecond, "not before DrainIdleDelay")
		assert.Less(t, took, 3*time.Second)
		assert.ErrorIs(t, <-served, ErrServerClosed)
	})
}
