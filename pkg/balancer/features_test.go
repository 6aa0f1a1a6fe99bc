package balancer

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func stateOf(b *Balancer, be testBackend) string {
	for _, st := range b.Backends() {
		if st.Addr == be.Addr {
			return st.State
		}
	}
	return "absent"
}

// TestActiveHealthChecks: a backend whose /healthz fails Fall times goes
// down and gets no traffic; once it passes Rise times it is back.
func TestActiveHealthChecks(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		var sick atomic.Bool
		backends := startBackends(t, 2, func(i int) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/healthz" {
					if i == 1 && sick.Load() {
						http.Error(w, "sick", http.StatusServiceUnavailable)
					}
					return
				}
				_, _ = io.WriteString(w, string(rune('0'+i)))
			}
		})
		cfg := DefaultConfig()
		cfg.Logger = hclog.NewNullLogger()
		cfg.HealthInterval, cfg.HealthTimeout, cfg.Rise, cfg.Fall = 50*time.Millisecond, 40*time.Millisecond, 2, 2
		b, f := serveBalancer(t, rl, cfg)
		setBackends(b, backends)
		assert.Equal(t, StateUp, stateOf(b, backends[1]))

		sick.Store(true)
		require.Eventually(t, func() bool { return stateOf(b, backends[1]) == StateDown }, 5*time.Second, 10*time.Millisecond)
		for range 20 {
			code, body := get(t, f.URL)
			require.Equal(t, 200, code)
			require.Equal(t, "0", body, "a down backend gets no requests")
		}
		sick.Store(false)
		require.Eventually(t, func() bool { return stateOf(b, backends[1]) == StateUp }, 5*time.Second, 10*time.Millisecond)
		seen := map[string]bool{}
		for range 4 {
			_, body := get(t, f.URL)
			seen[body] = true
		}
		assert.Equal(t, map[string]bool{"0": true, "1": true}, seen)

		// Bad settings are refused.
		for _, bad := range []func(*Config){
			func(c *Config) { c.HealthTimeout = 0 },
			func(c *Config) { c.Rise = 0 },
			func(c *Config) { c.HealthPath = "healthz" },
			func(c *Config) { c.Retries = -1 },
			func(c *Config) { c.AccessLog = "sometimes" },
			func(c *Config) { c.AccessLog, c.AccessLogSample = "sampled", 2 },
		} {
			c := DefaultConfig()
			bad(&c)
			_, err := New(c)
			assert.Error(t, err)
		}
	})
}

// TestPassiveEjectionProbedBackIn: with active checks on, a backend that
// refuses a connection is out at once and back after Rise good checks.
func TestPassiveEjectionProbedBackIn(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		cfg := DefaultConfig()
		cfg.Logger = hclog.NewNullLogger()
		cfg.HealthInterval, cfg.HealthTimeout, cfg.Rise = 50*time.Millisecond, 40*time.Millisecond, 2
		b, f := serveBalancer(t, rl, cfg)
		dead := testBackend{Addr: closedPort(t), Node: "dead"}
		setBackends(b, append(startBackends(t, 1, nil), dead))
		for range 4 {
			code, _ := get(t, f.URL)
			require.Equal(t, 200, code, "the refused connection is retried elsewhere")
		}
		assert.Equal(t, StateDown, stateOf(b, dead))
		time.Sleep(300 * time.Millisecond)
		assert.Equal(t, StateDown, stateOf(b, dead), "it stays out while its checks fail")
	})
}

// TestSlowStart: a backend that just joined gets a share of the requests
// that grows over SlowStart.
func TestSlowStart(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		cfg := DefaultConfig()
		cfg.Logger = hclog.NewNullLogger()
		cfg.HealthInterval, cfg.SlowStart = 0, 2*time.Second
		b, f := serveBalancer(t, rl, cfg)
		all := startBackends(t, 2, nil)
		setBackends(b, all[:1])
		time.Sleep(2100 * time.Millisecond) // backend 0 is past its slow start
		setBackends(b, all)
		assert.Equal(t, StateSlowStart, stateOf(b, all[1]))
		count := func(n int) int {
			k := 0
			for range n {
				if _, body := get(t, f.URL); body == "1" {
					k++
				}
			}
			return k
		}
		early := count(200)
		assert.Less(t, early, 60, "in its first moments the new backend gets far less than half")
		require.Eventually(t, func() bool { return stateOf(b, all[1]) == StateUp }, 5*time.Second, 50*time.Millisecond)
		late := count(200)
		assert.InDelta(t, 100, late, 2, "after slow start, an even share")
	})
}

func TestMetricsAndAccessLog(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		reg := prometheus.NewRegistry()
		var logs syncBuffer
		cfg := DefaultConfig()
		cfg.HealthInterval, cfg.Registerer, cfg.AccessLog = 0, reg, "on"
		cfg.Logger = hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info, JSONFormat: true})
		b, f := serveBalancer(t, rl, cfg)
		backends := startBackends(t, 2, func(i int) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/missing" {
					http.NotFound(w, r)
					return
				}
				_, _ = io.WriteString(w, "ok")
			}
		})
		dead := testBackend{Addr: closedPort(t), Node: "dead"}
		setBackends(b, append(backends, dead))
		for range 6 {
			get(t, f.URL+"/x")
		}
		get(t, f.URL+"/missing")
		// The answer reaches the client before the gateway accounts for it.
		require.Eventually(t, func() bool { return strings.Count(logs.String(), `"@message":"request"`) == 7 },
			5*time.Second, 5*time.Millisecond, "one access log line per request")

		ok := testutil.ToFloat64(b.m.requests.WithLabelValues(b.cfg.Service, backends[0].Addr.String(), "2xx")) +
			testutil.ToFloat64(b.m.requests.WithLabelValues(b.cfg.Service, backends[1].Addr.String(), "2xx"))
		assert.Equal(t, 6.0, ok)
		assert.Equal(t, 1.0, testutil.ToFloat64(b.m.requests.WithLabelValues(b.cfg.Service, backends[0].Addr.String(), "4xx"))+
			testutil.ToFloat64(b.m.requests.WithLabelValues(b.cfg.Service, backends[1].Addr.String(), "4xx")))
		out, err := testutil.GatherAndCount(reg, "herd_gateway_request_duration_seconds")
		require.NoError(t, err)
		assert.Equal(t, 1, out)
		require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP herd_gateway_backends Backends in the current set, by service and state.
# TYPE herd_gateway_backends gauge
herd_gateway_backends{service="service",state="down"} 0
herd_gateway_backends{service="service",state="ejected"} 1
herd_gateway_backends{service="service",state="slow_start"} 0
herd_gateway_backends{service="service",state="up"} 2
# HELP herd_gateway_ejections_total Backends taken out of rotation after a refused or reset connection, or failed health checks, by service.
# TYPE herd_gateway_ejections_total counter
herd_gateway_ejections_total{service="service"} 1
# HELP herd_gateway_retries_total Requests sent again to another backend after a failure, by service.
# TYPE herd_gateway_retries_total counter
herd_gateway_retries_total{service="service"} 1
`), "herd_gateway_backends", "herd_gateway_ejections_total", "herd_gateway_retries_total"))

		// A removed backend's series go away.
		setBackends(b, backends[:1])
		n, err := testutil.GatherAndCount(reg, "herd_gateway_requests_total")
		require.NoError(t, err)
		assert.Equal(t, 18, n, "no route, the service without a backend, one backend: 6 classes each")

		// The access log lines carry the request and its id.
		assert.Contains(t, logs.String(), `"path":"/missing"`)
		assert.Contains(t, logs.String(), `"status":"404"`)
		assert.Contains(t, logs.String(), `"request_id":"`)
	})
}

// syncBuffer is a bytes.Buffer safe for a logger writing while a test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLeastRequest: with least-request a slow backend (its requests pile up
// in flight) gets far fewer requests than its round-robin share, and idle
// backends still share the traffic.
func TestLeastRequest(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		backends := startBackends(t, 4, func(i int) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				if i == 3 {
					time.Sleep(20 * time.Millisecond)
				}
				_, _ = io.WriteString(w, string(rune('0'+i)))
			}
		})
		// toSlow sends 400 requests from 8 clients at once and counts those
		// the slow backend answered.
		toSlow := func(algo Algorithm) int {
			cfg := DefaultConfig()
			cfg.Logger, cfg.HealthInterval, cfg.Balance = hclog.NewNullLogger(), 0, algo
			b, f := serveBalancer(t, rl, cfg)
			setBackends(b, backends)
			var slow atomic.Int64
			hammer(t, f.URL, 8, 50, func(body string, _ time.Duration) {
				if body == "3" {
					slow.Add(1)
				}
			})
			return int(slow.Load())
		}
		rr, lr := toSlow(RoundRobin), toSlow(LeastRequest)
		t.Logf("requests to the slow backend: round robin %d of 400, least request %d", rr, lr)
		assert.InDelta(t, 100, rr, 10, "round robin: its quarter")
		assert.Less(t, lr, 60, "least request: far less than a quarter (about 1 in 16: both picks on it)")

		// Idle backends (nothing in flight) share the requests.
		cfg := DefaultConfig()
		cfg.Logger, cfg.HealthInterval, cfg.Balance = hclog.NewNullLogger(), 0, LeastRequest
		b, f := serveBalancer(t, rl, cfg)
		setBackends(b, backends[:3])
		counts := map[string]int{}
		for range 300 {
			_, body := get(t, f.URL)
			counts[body]++
		}
		for _, k := range []string{"0", "1", "2"} {
			assert.InDelta(t, 100, counts[k], 40, "backend %s: %v", k, counts)
		}
	})
}

func TestParseAlgorithm(t *testing.T) {
	for in, want := range map[string]Algorithm{"": RoundRobin, "round-robin": RoundRobin, "least-request": LeastRequest} {
		got, err := ParseAlgorithm(in)
		require.NoError(t, err)
		assert.Equal(t, want, got)
	}
	_, err := ParseAlgorithm("leastconn")
	assert.EqualError(t, err, `balance "leastconn": want round-robin or least-request`)
	cfg := DefaultConfig()
	cfg.Balance = "random"
	_, err = New(cfg)
	assert.EqualError(t, err, `balance "random": want round-robin or least-request`)
}

// TestBackendMaxConns: no backend ever has more than its cap of requests
// in flight; the others wait in the gateway and are all answered once room
// frees up; one that waits longer than QueueTimeout gets a 503.
func TestBackendMaxConns(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		release := make(chan struct{})
		var inFlight [2]atomic.Int64
		var most [2]atomic.Int64
		backends := startBackends(t, 2, func(i int) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				n := inFlight[i].Add(1)
				defer inFlight[i].Add(-1)
				for m := most[i].Load(); n > m && !most[i].CompareAndSwap(m, n); m = most[i].Load() {
				}
				if r.URL.Path == "/hold" {
					<-release
				}
				_, _ = io.WriteString(w, string(rune('0'+i)))
			}
		})
		reg := prometheus.NewRegistry()
		cfg := DefaultConfig()
		cfg.Logger, cfg.HealthInterval, cfg.Registerer = hclog.NewNullLogger(), 0, reg
		cfg.BackendMaxConns, cfg.QueueTimeout = 2, time.Second
		b, f := serveBalancer(t, rl, cfg)
		setBackends(b, backends)

		// 4 requests fill both backends.
		codes := make(chan int, 6)
		hold := func() {
			resp, err := http.Get(f.URL + "/hold")
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}
		for range 4 {
			go hold()
		}
		require.Eventually(t, func() bool { return inFlight[0].Load()+inFlight[1].Load() == 4 }, 5*time.Second, 5*time.Millisecond)
		// One more waits longer than the queue timeout: 503, nothing sent.
		code, body := get(t, f.URL+"/quick")
		assert.Equal(t, http.StatusServiceUnavailable, code)
		assert.Regexp(t, `^herd gateway: every backend of service "service" is busy\nrequest id: \S+\n$`, body)
		assert.Equal(t, 1.0, gathered(t, reg, "herd_gateway_queue_timeouts_total"))
		// Two more wait in the gateway until room frees up.
		go hold()
		go hold()
		require.Eventually(t, func() bool { return b.Service(b.cfg.Service).queue.n.Load() == 2 }, 5*time.Second, 5*time.Millisecond)
		assert.Equal(t, 2.0, gathered(t, reg, "herd_gateway_queued_requests"))
		assert.Equal(t, map[string]int64{b.cfg.Service: 6}, b.Load(nil), "the load: 4 in flight and 2 waiting")
		close(release) // the queued 2 go as room frees, within their timeout
		for range 6 {
			assert.Equal(t, http.StatusOK, <-codes)
		}
		assert.Equal(t, int64(2), most[0].Load(), "backend 0 never had more than 2 requests")
		assert.Equal(t, int64(2), most[1].Load(), "backend 1 never had more than 2 requests")

		// Many clients through a cap of 1 per backend: nobody's turn is lost
		// (each would wait out the timeout), and the cap holds.
		most[0].Store(0)
		most[1].Store(0)
		b2cfg := cfg
		b2cfg.Registerer, b2cfg.BackendMaxConns, b2cfg.QueueTimeout = nil, 1, 5*time.Second
		b2, f2 := serveBalancer(t, rl, b2cfg)
		setBackends(b2, backends)
		var slowest atomic.Int64
		hammer(t, f2.URL+"/quick", 8, 50, func(_ string, took time.Duration) {
			for d := slowest.Load(); int64(took) > d && !slowest.CompareAndSwap(d, int64(took)); d = slowest.Load() {
			}
		})
		assert.Less(t, time.Duration(slowest.Load()), 2*time.Second, "no request waited for a turn that never came")
		assert.Equal(t, int64(1), most[0].Load())
		assert.Equal(t, int64(1), most[1].Load())
		assert.Zero(t, b2.Service(b2.cfg.Service).queue.n.Load())

		// Bad settings are refused.
		bad := DefaultConfig()
		bad.BackendMaxConns = -1
		_, err := New(bad)
		assert.EqualError(t, err, "backend max conns -1: must not be negative")
		bad.BackendMaxConns, bad.QueueTimeout = 4, 0
		_, err = New(bad)
		assert.EqualError(t, err, "queue timeout 0s: want more than 0 with a backend max conns")
	})
}

// gathered is the value of an unlabelled gauge or counter in reg.
// gathered is the value of the metric called name, or of the one series
// name{label="value",...} names (labels in any order, all given), of a
// counter, gauge or histogram (its count).
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	want := map[string]string{}
	if i := strings.IndexByte(name, '{'); i >= 0 {
		for _, kv := range strings.Split(strings.TrimSuffix(name[i+1:], "}"), ",") {
			k, v, _ := strings.Cut(kv, "=")
			want[k] = strings.Trim(v, `"`)
		}
		name = name[:i]
	}
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if len(want) == 0 && len(mf.GetMetric()) != 1 {
				break
			}
			match := len(m.GetLabel()) == len(want)
			for _, l := range m.GetLabel() {
				match = match && want[l.GetName()] == l.GetValue()
			}
			match = match || len(want) == 0
			if !match {
				continue
			}
			switch {
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s%v", name, want)
	return 0
}

// TestWaitQueue: first come first served, a request whose turn came but
// found no room goes back to the front, and a waiter that gives up after
// its turn came passes the turn on instead of losing it.
func TestWaitQueue(t *testing.T) {
	var q waitQueue
	a, b, c := make(chan struct{}, 1), make(chan struct{}, 1), make(chan struct{}, 1)
	signalled := func(ch chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	assert.True(t, q.push(a, false), "a is first in line")
	assert.False(t, q.push(b, false))
	assert.True(t, q.push(c, true), "c goes back to the front")
	q.wakeOne()
	assert.Equal(t, []bool{false, false, true}, []bool{len(a) == 1, len(b) == 1, len(c) == 1})
	q.cancel(c) // c gives up although its turn came: a gets it
	assert.True(t, signalled(a))
	assert.False(t, signalled(b))
	assert.False(t, signalled(c))
	assert.Equal(t, int64(1), q.n.Load())
	q.cancel(b) // b gives up before its turn: nobody is woken
	assert.Zero(t, q.n.Load())
	q.wakeOne() // nobody waits: nothing happens
	assert.False(t, signalled(a) || signalled(b) || signalled(c))
}

// hammer sends each requests from each of clients at once to url, and
// calls seen (concurrently) with each answer's body and how long it took.
// Every answer must be a 200.
func hammer(t *testing.T, url string, clients, each int, seen func(body string, took time.Duration)) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	defer hc.CloseIdleConnections()
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for range each {
				began := time.Now()
				resp, err := hc.Get(url)
				if !assert.NoError(t, err) {
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				assert.Equal(t, http.StatusOK, resp.StatusCode)
				seen(string(body), time.Since(began))
			}
		})
	}
	wg.Wait()
}
