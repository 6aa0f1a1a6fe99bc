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

func stateOf(b *Balancer, be Backend) string {
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
	b, f := serveBalancer(t, cfg)
	b.Update(backends)
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
}

// TestPassiveEjectionProbedBackIn: with active checks on, a backend that
// refuses a connection is out at once and back after Rise good checks.
func TestPassiveEjectionProbedBackIn(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Logger = hclog.NewNullLogger()
	cfg.HealthInterval, cfg.HealthTimeout, cfg.Rise = 50*time.Millisecond, 40*time.Millisecond, 2
	b, f := serveBalancer(t, cfg)
	dead := Backend{Addr: closedPort(t), Node: "dead"}
	b.Update(append(startBackends(t, 1, nil), dead))
	for range 4 {
		code, _ := get(t, f.URL)
		require.Equal(t, 200, code, "the refused connection is retried elsewhere")
	}
	assert.Equal(t, StateDown, stateOf(b, dead))
	time.Sleep(300 * time.Millisecond)
	assert.Equal(t, StateDown, stateOf(b, dead), "it stays out while its checks fail")
}

// TestSlowStart: a backend that just joined gets a share of the requests
// that grows over SlowStart.
func TestSlowStart(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Logger = hclog.NewNullLogger()
	cfg.HealthInterval, cfg.SlowStart = 0, 2*time.Second
	b, f := serveBalancer(t, cfg)
	all := startBackends(t, 2, nil)
	b.Update(all[:1])
	time.Sleep(2100 * time.Millisecond) // backend 0 is past its slow start
	b.Update(all)
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
}

func TestMetricsAndAccessLog(t *testing.T) {
	reg := prometheus.NewRegistry()
	var logs syncBuffer
	cfg := DefaultConfig()
	cfg.HealthInterval, cfg.Registerer, cfg.AccessLog = 0, reg, "on"
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info, JSONFormat: true})
	b, f := serveBalancer(t, cfg)
	backends := startBackends(t, 2, func(i int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/missing" {
				http.NotFound(w, r)
				return
			}
			_, _ = io.WriteString(w, "ok")
		}
	})
	dead := Backend{Addr: closedPort(t), Node: "dead"}
	b.Update(append(backends, dead))
	for range 6 {
		get(t, f.URL+"/x")
	}
	get(t, f.URL+"/missing")
	// The answer reaches the client before the gateway accounts for it.
	require.Eventually(t, func() bool { return strings.Count(logs.String(), `"@message":"request"`) == 7 },
		5*time.Second, 5*time.Millisecond, "one access log line per request")

	ok := testutil.ToFloat64(b.m.requests.WithLabelValues(backends[0].Addr.String(), "2xx")) +
		testutil.ToFloat64(b.m.requests.WithLabelValues(backends[1].Addr.String(), "2xx"))
	assert.Equal(t, 6.0, ok)
	assert.Equal(t, 1.0, testutil.ToFloat64(b.m.requests.WithLabelValues(backends[0].Addr.String(), "4xx"))+
		testutil.ToFloat64(b.m.requests.WithLabelValues(backends[1].Addr.String(), "4xx")))
	out, err := testutil.GatherAndCount(reg, "herd_gateway_request_duration_seconds")
	require.NoError(t, err)
	assert.Equal(t, 1, out)
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP herd_gateway_backends Backends in the current set, by state.
# TYPE herd_gateway_backends gauge
herd_gateway_backends{state="down"} 0
herd_gateway_backends{state="ejected"} 1
herd_gateway_backends{state="slow_start"} 0
herd_gateway_backends{state="up"} 2
# HELP herd_gateway_ejections_total Backends taken out of rotation after a refused or reset connection, or failed health checks.
# TYPE herd_gateway_ejections_total counter
herd_gateway_ejections_total 1
# HELP herd_gateway_retries_total Requests sent again to another backend after a failure.
# TYPE herd_gateway_retries_total counter
herd_gateway_retries_total 1
`), "herd_gateway_backends", "herd_gateway_ejections_total", "herd_gateway_retries_total"))

	// A removed backend's series go away.
	b.Update(backends[:1])
	n, err := testutil.GatherAndCount(reg, "herd_gateway_requests_total")
	require.NoError(t, err)
	assert.Equal(t, 12, n, "none + one backend, 6 classes each")

	// The access log lines carry the request and its id.
	assert.Contains(t, logs.String(), `"path":"/missing"`)
	assert.Contains(t, logs.String(), `"status":"404"`)
	assert.Contains(t, logs.String(), `"request_id":"`)
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
