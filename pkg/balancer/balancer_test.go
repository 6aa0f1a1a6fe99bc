package balancer

import (
	"context"
	"flag"
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
)

// startBackends starts n real HTTP servers answering their own index.
func startBackends(t *testing.T, n int, h func(i int) http.HandlerFunc) []Backend {
	t.Helper()
	var out []Backend
	for i := range n {
		handler := h
		if handler == nil {
			handler = func(i int) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "%d", i) }
			}
		}
		srv := httptest.NewServer(handler(i))
		t.Cleanup(srv.Close)
		out = append(out, Backend{Addr: netip.MustParseAddrPort(srv.Listener.Addr().String()), Node: fmt.Sprintf("n%d", i)})
	}
	return out
}

// front is a balancer serving on loopback.
type front struct{ URL, Addr string }

func newTestBalancer(t *testing.T) (*Balancer, *front) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Service = "predictor"
	cfg.Logger = hclog.NewNullLogger()
	cfg.HealthInterval = 0 // tests of health checks turn them on
	return serveBalancer(t, cfg)
}

// -goroutines runs the tests without the event loop: a goroutine relays
// every exchange (make test runs the package both ways).
var goroutinesOnly = flag.Bool("goroutines", false, "serve without the event loop")

func serveBalancer(t *testing.T, cfg Config) (*Balancer, *front) {
	t.Helper()
	if *goroutinesOnly {
		cfg.EventLoop = false
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
	_, front := newTestBalancer(t)
	code, body := get(t, front.URL)
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, "herd gateway: no backend available for service \"predictor\"\n", body)
}

func TestRoundRobinIsEven(t *testing.T) {
	b, front := newTestBalancer(t)
	b.Update(startBackends(t, 4, nil))
	counts := map[string]int{}
	for range 400 {
		code, body := get(t, front.URL)
		require.Equal(t, http.StatusOK, code)
		counts[body]++
	}
	assert.Equal(t, map[string]int{"0": 100, "1": 100, "2": 100, "3": 100}, counts)
}

func TestForwardedHeadersAndHost(t *testing.T) {
	b, front := newTestBalancer(t)
	seen := make(chan *http.Request, 1)
	b.Update(startBackends(t, 1, func(int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { seen <- r }
	}))
	req, err := http.NewRequest(http.MethodGet, front.URL+"/x?y=1", nil)
	require.NoError(t, err)
	req.Host = "api.example.test"
	req.Header.Set("X-Forwarded-For", "10.1.2.3")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	r := <-seen
	assert.Equal(t, "api.example.test", r.Host)
	assert.Equal(t, "/x", r.URL.Path)
	assert.Equal(t, "y=1", r.URL.RawQuery)
	assert.Equal(t, "10.1.2.3, 127.0.0.1", r.Header.Get("X-Forwarded-For"))
	assert.Equal(t, "http", r.Header.Get("X-Forwarded-Proto"))
}

func TestRefusedConnectionIsRetriedAndEjected(t *testing.T) {
	b, front := newTestBalancer(t)
	dead := Backend{Addr: closedPort(t), Node: "dead"}
	b.Update(append(startBackends(t, 2, nil), dead))
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
}

func TestPostThatReachedBackendIsNotRetried(t *testing.T) {
	b, front := newTestBalancer(t)
	var hits atomic.Int32
	b.Update(startBackends(t, 4, func(int) http.HandlerFunc {
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
}

func TestInFlightRequestFinishesAfterRemoval(t *testing.T) {
	b, front := newTestBalancer(t)
	release := make(chan struct{})
	started := make(chan struct{})
	backends := startBackends(t, 1, func(int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			close(started)
			<-release
			_, _ = io.WriteString(w, "finished")
		}
	})
	b.Update(backends)
	result := make(chan string, 1)
	go func() {
		_, body := get(t, front.URL)
		result <- body
	}()
	<-started
	b.Update(nil)
	code, _ := get(t, front.URL)
	assert.Equal(t, http.StatusServiceUnavailable, code, "no new request reaches a removed backend")
	close(release)
	assert.Equal(t, "finished", <-result)
}

func TestSnapshotSwapUnderConcurrentReaders(t *testing.T) {
	b, front := newTestBalancer(t)
	all := startBackends(t, 6, nil)
	setA, setB := all[:3], all[3:]
	b.Update(setA)
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
			b.Update(setB)
		} else {
			b.Update(append(append([]Backend{}, setA...), setB...))
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	assert.Zero(t, failures.Load(), "every request during swaps is served")
	assert.Greater(t, served.Load(), int64(200))
	assert.Len(t, b.Backends(), 6)
}

func TestUpdateKeepsStateOfBackendsThatStay(t *testing.T) {
	b, front := newTestBalancer(t)
	all := startBackends(t, 2, nil)
	b.Update(all)
	for range 10 {
		get(t, front.URL)
	}
	b.Update(all[:1])
	st := b.Backends()
	require.Len(t, st, 1)
	assert.Equal(t, uint64(5), st[0].Requests, "a staying backend keeps its counters")
}

// TestRetryGoesToAnotherHost: when a host crashes, all its replicas fail;
// a retry goes to a host not tried yet, so a host with more replicas than
// Retries does not turn into 502s.
func TestRetryGoesToAnotherHost(t *testing.T) {
	b, f := newTestBalancer(t)
	var dead []Backend
	for range 5 {
		dead = append(dead, Backend{Addr: closedPort(t), Node: "crashed"})
	}
	live := startBackends(t, 1, nil)
	live[0].Node = "alive"
	b.Update(append(dead, live...))
	for range 12 {
		code, body := get(t, f.URL)
		require.Equal(t, http.StatusOK, code)
		require.Equal(t, "0", body)
	}
}
