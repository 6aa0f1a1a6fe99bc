package balancer

import (
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

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/canary"
)

// Canary arms (arms.go): the split, the measurements, the retry on the
// stable arm and pinning, against real backends on loopback.

// TestSplitPickIsExact: over 10,000 picks each arm gets its share to the
// request, hence within a point of its weight; so does every window of 100
// consecutive picks; a small share is spread out, not in bursts; and picks
// made at once from several goroutines add up as exactly.
func TestSplitPickIsExact(t *testing.T) {
	for _, sp := range []Split{{Canary: 5, Baseline: 5}, {Canary: 1, Baseline: 1}, {Canary: 10, Baseline: 10},
		{Canary: 25, Baseline: 25}, {Canary: 50, Baseline: 50}, {Canary: 33, Baseline: 33}, {Canary: 99},
		{Canary: 50}, {Baseline: 7}} {
		t.Run(fmt.Sprintf("%d-%d", sp.Canary, sp.Baseline), func(t *testing.T) {
			want := [numArms]int{sp.Stable(), sp.Canary, sp.Baseline}
			st := newSplitState(sp)
			picks := make([]Arm, 10_000)
			var n [numArms]int
			for i := range picks {
				picks[i] = st.pick()
				n[picks[i]]++
			}
			for a := range numArms {
				assert.InDelta(t, want[a], float64(n[a])/100, 1, "%s arm's share of 10,000 picks", a)
				assert.Equal(t, want[a]*100, n[a], "%s arm: exactly its share", a)
			}
			for start := 0; start+100 <= len(picks); start += 37 {
				var w [numArms]int
				for _, a := range picks[start : start+100] {
					w[a]++
				}
				require.Equal(t, want, w, "the 100 picks from %d", start)
			}
			for a := ArmCanary; a < numArms; a++ {
				if want[a] < 2 || want[a] > 50 {
					continue
				}
				last, gap := -1, 0
				for i, p := range picks {
					if p == a {
						if last >= 0 {
							gap = max(gap, i-last)
						}
						last = i
					}
				}
				assert.LessOrEqual(t, gap, 2*100/want[a], "%s arm: the longest run without it", a)
			}

			par := newSplitState(sp)
			var mu sync.Mutex
			var total [numArms]int
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					var mine [numArms]int
					for range 2_500 {
						mine[par.pick()]++
					}
					mu.Lock()
					defer mu.Unlock()
					for a := range total {
						total[a] += mine[a]
					}
				})
			}
			wg.Wait()
			assert.Equal(t, [numArms]int{want[0] * 100, want[1] * 100, want[2] * 100}, total, "4 goroutines × 2,500 picks")
		})
	}
}

// TestSplitClamped: shares out of range are brought within 0-100.
func TestSplitClamped(t *testing.T) {
	for _, tc := range []struct{ in, want Split }{
		{Split{Canary: -5, Baseline: 10}, Split{Canary: 0, Baseline: 10}},
		{Split{Canary: 120, Baseline: 10}, Split{Canary: 100, Baseline: 0}},
		{Split{Canary: 60, Baseline: 60}, Split{Canary: 60, Baseline: 40}},
		{Split{Canary: 5, Baseline: 5}, Split{Canary: 5, Baseline: 5}},
	} {
		assert.Equal(t, tc.want, tc.in.clamped(), "%+v", tc.in)
	}
}

// armServer is a real backend of one arm: it answers as its handler says
// and counts the requests and the connections it took.
type armServer struct {
	addr        netip.AddrPort
	hits, conns atomic.Int64
}

func startArmServer(t *testing.T, h http.HandlerFunc) *armServer {
	t.Helper()
	as := &armServer{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		as.hits.Add(1)
		h(w, r)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			as.conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	as.addr = netip.MustParseAddrPort(srv.Listener.Addr().String())
	return as
}

// says answers with a fixed body.
func says(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }
}

// failsWith answers status with a short body, read whole or not by the
// client.
func failsWith(status int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		http.Error(w, "broken build", status)
	}
}

// canaryFront is a balancer over three arms on loopback: two stable
// backends on member "a", a canary and a baseline backend on member "c".
type canaryFront struct {
	b                          *Balancer
	f                          *front
	svc                        *Service
	reg                        *prometheus.Registry
	stable0, stable1, can, bas *armServer
}

func newCanaryFront(t *testing.T, rl relay, cfg Config, canaryHandler http.HandlerFunc) *canaryFront {
	t.Helper()
	cf := &canaryFront{reg: prometheus.NewRegistry()}
	cfg.Registerer = cf.reg
	cf.b, cf.f = serveBalancer(t, rl, cfg)
	cf.svc = cf.b.Service(cfg.Service)
	cf.stable0, cf.stable1 = startArmServer(t, says("stable")), startArmServer(t, says("stable"))
	cf.can, cf.bas = startArmServer(t, canaryHandler), startArmServer(t, says("baseline"))
	cf.svc.SetNode("a", []netip.AddrPort{cf.stable0.addr, cf.stable1.addr})
	cf.svc.SetNodeArm("c", ArmCanary, []netip.AddrPort{cf.can.addr})
	cf.svc.SetNodeArm("c", ArmBaseline, []netip.AddrPort{cf.bas.addr})
	return cf
}

func (cf *canaryFront) stableHits() int64 { return cf.stable0.hits.Load() + cf.stable1.hits.Load() }

// do sends one request with a client that keeps its connections and
// returns the status and body.
func do(t *testing.T, c *http.Client, method, url, body string, header ...string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	require.NoError(t, err)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func keepAliveClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
}

// TestSplitSendsEachArmItsShare: 400 requests, one after another, through
// each relay: the canary and the baseline get 25 % each to the request,
// whatever their number of backends, the stable arm the rest spread over
// its two; each arm's counts say as much; with the split removed the arms
// get nothing more.
func TestSplitSendsEachArmItsShare(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		cf := newCanaryFront(t, rl, testConfig(), says("canary"))
		cf.svc.SetSplit(Split{Canary: 25, Baseline: 25, CanaryVersion: "predictor:1.1.0", BaselineVersion: "predictor:1.0.0",
			StableVersion: "predictor:1.0.0"})
		c := keepAliveClient()
		got := map[string]int{}
		for range 400 {
			code, body := do(t, c, http.MethodGet, cf.f.URL+"/predict", "")
			require.Equal(t, http.StatusOK, code)
			got[body]++
		}
		assert.Equal(t, map[string]int{"canary": 100, "baseline": 100, "stable": 200}, got)
		assert.Equal(t, int64(100), cf.stable0.hits.Load(), "round robin within the stable arm")
		assert.Equal(t, int64(100), cf.stable1.hits.Load())

		counts := cf.svc.ArmCounts()
		assert.Equal(t, counts, cf.b.ArmCounts("predictor"))
		assert.Equal(t, [3]canary.Counts{}, cf.b.ArmCounts("other"), "a service it does not have")
		assert.Len(t, *cf.b.services.Load(), 1, "and does not add")
		for a, want := range []uint64{200, 100, 100} {
			assert.Equal(t, want, counts[a].Requests, "%s arm's requests", Arm(a))
			assert.Zero(t, counts[a].Errors, "%s arm's errors", Arm(a))
			assert.Equal(t, want, sum(counts[a].Buckets[:]), "%s arm: a latency for each", Arm(a))
		}
		assert.Equal(t, 100.0, gathered(t, cf.reg, `herd_gateway_canary_requests_total{service="predictor",arm="canary",version="predictor:1.1.0",code="2xx"}`))
		assert.Equal(t, 200.0, gathered(t, cf.reg, `herd_gateway_canary_requests_total{service="predictor",arm="stable",version="predictor:1.0.0",code="2xx"}`))
		assert.Equal(t, 25.0, gathered(t, cf.reg, `herd_gateway_canary_weight{service="predictor",arm="canary"}`))
		assert.Equal(t, 50.0, gathered(t, cf.reg, `herd_gateway_canary_weight{service="predictor",arm="stable"}`))

		cf.svc.SetSplit(Split{})
		before := cf.can.hits.Load() + cf.bas.hits.Load()
		for range 50 {
			_, body := do(t, c, http.MethodGet, cf.f.URL, "")
			require.Equal(t, "stable", body)
		}
		assert.Equal(t, before, cf.can.hits.Load()+cf.bas.hits.Load(), "no split: the arms get nothing")
		assert.Equal(t, counts, cf.svc.ArmCounts(), "no split: nothing measured")
		assert.Equal(t, 0.0, gathered(t, cf.reg, `herd_gateway_canary_weight{service="predictor",arm="canary"}`))
		assert.Equal(t, 100.0, gathered(t, cf.reg, `herd_gateway_canary_weight{service="predictor",arm="stable"}`))
	})
}

func sum(b []uint64) uint64 {
	var n uint64
	for _, v := range b {
		n += v
	}
	return n
}

// TestVersionLabelFollowsTheSplit: a new canary version replaces the
// canary arm's series (the label set stays bounded); the arm's cumulative
// counts go on.
func TestVersionLabelFollowsTheSplit(t *testing.T) {
	cf := newCanaryFront(t, relays[0], testConfig(), says("canary"))
	cf.svc.SetSplit(Split{Canary: 50, CanaryVersion: "v2", StableVersion: "v1"})
	c := keepAliveClient()
	for range 100 {
		do(t, c, http.MethodGet, cf.f.URL, "")
	}
	cf.svc.SetSplit(Split{Canary: 50, CanaryVersion: "v3", StableVersion: "v1"})
	for range 100 {
		do(t, c, http.MethodGet, cf.f.URL, "")
	}
	assert.Equal(t, 50.0, gathered(t, cf.reg, `herd_gateway_canary_requests_total{service="predictor",arm="canary",version="v3",code="2xx"}`))
	assert.Equal(t, 100.0, gathered(t, cf.reg, `herd_gateway_canary_requests_total{service="predictor",arm="stable",version="v1",code="2xx"}`))
	mfs, err := cf.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				assert.NotEqual(t, "v2", l.GetValue(), "the old version's series are gone")
			}
		}
	}
	assert.Equal(t, uint64(100), cf.svc.ArmCounts()[ArmCanary].Requests)

	cf.b.RemoveService("predictor")
	mfs, err = cf.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		assert.NotContains(t, mf.GetName(), "canary", "a removed service's canary series are gone")
	}
}

// TestArmWithoutBackendsGivesWayToStable: a canary arm with no backend, or
// only ones out of rotation, sends its share to the stable arm; none is
// answered an error.
func TestArmWithoutBackendsGivesWayToStable(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		cf := newCanaryFront(t, rl, testConfig(), says("canary"))
		cf.svc.SetNodeArm("c", ArmCanary, nil)
		cf.svc.SetSplit(Split{Canary: 50})
		c := keepAliveClient()
		for range 40 {
			code, body := do(t, c, http.MethodGet, cf.f.URL, "")
			require.Equal(t, http.StatusOK, code)
			require.Equal(t, "stable", body)
		}
		cf.svc.SetNodeArm("c", ArmCanary, []netip.AddrPort{cf.can.addr})
		for _, h := range cf.svc.reg.set.Load().arms[ArmCanary] {
			h.eject(time.Minute, false)
		}
		for range 40 {
			code, body := do(t, c, http.MethodGet, cf.f.URL, "")
			require.Equal(t, http.StatusOK, code)
			require.Equal(t, "stable", body)
		}
		assert.Zero(t, cf.can.hits.Load())
		assert.Equal(t, uint64(80), cf.svc.ArmCounts()[ArmStable].Requests, "measured where they went")
		can := cf.svc.ArmCounts()[ArmCanary]
		// Its share of 40 requests (exact per 100 picks, not per 40), none
		// while it had no backend at all.
		assert.InDelta(t, 20, can.Requests, 2, "the requests an ejected canary could not take count against it")
		assert.Equal(t, can.Requests, can.Errors, "each one a failure")
	})
}

// TestCanary5xxRetriedOnStable: a canary that answers 500 costs GET, HEAD
// and idempotent requests nothing: each is answered by a stable backend;
// every 500 counts against the canary; the discarded answers leave its
// connections clean (reused when the answer was all read, closed when not).
// A POST whose body the canary consumed gets the canary's 500 as it is.
func TestCanary5xxRetriedOnStable(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		cf := newCanaryFront(t, rl, testConfig(), failsWith(http.StatusInternalServerError))
		cf.svc.SetSplit(Split{Canary: 50, CanaryVersion: "bad"})
		c := keepAliveClient()
		for i := range 100 {
			switch i % 3 {
			case 0:
				code, body := do(t, c, http.MethodGet, cf.f.URL+"/predict", "")
				require.Equal(t, http.StatusOK, code)
				require.Equal(t, "stable", body)
			case 1:
				code, _ := do(t, c, http.MethodHead, cf.f.URL+"/predict", "")
				require.Equal(t, http.StatusOK, code)
			case 2:
				code, body := do(t, c, http.MethodPost, cf.f.URL+"/predict", "x=1", "Idempotency-Key", "k1")
				require.Equal(t, http.StatusOK, code, "idempotent POST")
				require.Equal(t, "stable", body)
			}
		}
		assert.Equal(t, int64(50), cf.can.hits.Load(), "half the 100 went to the canary first")
		assert.Equal(t, int64(100), cf.stableHits(), "and all to a stable backend at last")
		assert.Equal(t, int64(1), cf.can.conns.Load(), "the canary's whole 500s were read: its one connection stays clean and in use")
		counts := cf.svc.ArmCounts()
		assert.Equal(t, uint64(50), counts[ArmCanary].Requests)
		assert.Equal(t, uint64(50), counts[ArmCanary].Errors)
		assert.Zero(t, sum(counts[ArmCanary].Buckets[:]), "failed requests have no latency")
		assert.Equal(t, uint64(100), counts[ArmStable].Requests, "50 sampled, 50 retries")
		assert.Zero(t, counts[ArmStable].Errors)
		assert.Equal(t, 50.0, gathered(t, cf.reg, `herd_gateway_canary_requests_total{service="predictor",arm="canary",version="bad",code="5xx"}`))

		var answered500 int
		for range 100 {
			code, body := do(t, c, http.MethodPost, cf.f.URL+"/predict", "x=1")
			switch code {
			case http.StatusInternalServerError:
				answered500++
				assert.Equal(t, "broken build\n", body, "the canary's own answer")
			case http.StatusOK:
				assert.Equal(t, "stable", body)
			default:
				t.Fatalf("status %d", code)
			}
		}
		assert.Equal(t, 50, answered500, "a POST that may not be sent again gets its arm's answer")
		assert.Equal(t, uint64(100), cf.svc.ArmCounts()[ArmCanary].Errors)
	})
}

// TestCanary5xxWithBodyStillComing: a canary's 500 whose body is not all
// there when its head is (a streamed, chunked body) is discarded by
// closing its connection: the next request to the canary gets a new one
// and no byte of the old answer.
func TestCanary5xxWithBodyStillComing(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		var n atomic.Int64
		cf := newCanaryFront(t, rl, testConfig(), func(w http.ResponseWriter, r *http.Request) {
			if n.Add(1)%2 == 0 {
				io.WriteString(w, "canary")
				return
			}
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, "partial ")
			w.(http.Flusher).Flush()
			time.Sleep(20 * time.Millisecond)
			io.WriteString(w, "answer")
		})
		cf.svc.SetSplit(Split{Canary: 50})
		c := keepAliveClient()
		got := map[string]int{}
		for range 40 {
			code, body := do(t, c, http.MethodGet, cf.f.URL, "")
			require.Equal(t, http.StatusOK, code)
			got[body]++
		}
		assert.Equal(t, map[string]int{"canary": 10, "stable": 30}, got)
		// c1 (502) on conn 1, closed; c2 (200) and c3 (502) on conn 2,
		// closed; ... c20 (200) on conn 11.
		assert.Equal(t, int64(11), cf.can.conns.Load(), "each streamed 502 closed its connection")
		assert.Equal(t, uint64(10), cf.svc.ArmCounts()[ArmCanary].Errors)
	})
}

// TestCanaryFailedExchangeRetriedOnStable: a canary that resets its
// connections costs a GET nothing, even with no retries configured; the
// failures count against it; a POST it consumed is answered 502.
func TestCanaryFailedExchangeRetriedOnStable(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		cfg := testConfig()
		cfg.Retries = 0
		cfg.EjectFor = time.Millisecond // keep the canary in rotation
		cf := newCanaryFront(t, rl, cfg, func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			c, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				c.(*net.TCPConn).SetLinger(0)
				c.Close() // a reset, no answer
			}
		})
		cf.svc.SetSplit(Split{Canary: 50})
		c := keepAliveClient()
		for range 20 {
			time.Sleep(2 * time.Millisecond) // past the ejection
			code, body := do(t, c, http.MethodGet, cf.f.URL, "")
			require.Equal(t, http.StatusOK, code)
			require.Equal(t, "stable", body)
		}
		counts := cf.svc.ArmCounts()
		assert.Equal(t, counts[ArmCanary].Requests, counts[ArmCanary].Errors)
		assert.Equal(t, uint64(cf.can.hits.Load()), counts[ArmCanary].Errors, "each reset counted once")
		assert.Positive(t, counts[ArmCanary].Errors)

		statuses := map[int]int{}
		for range 20 {
			time.Sleep(2 * time.Millisecond)
			code, _ := do(t, c, http.MethodPost, cf.f.URL, "payload")
			statuses[code]++
		}
		assert.Equal(t, 20, statuses[http.StatusOK]+statuses[http.StatusBadGateway])
		assert.Positive(t, statuses[http.StatusBadGateway], "a POST the canary read is not sent again")
	})
}

// TestCanaryConnectFailureRetriedOnStable: a canary arm whose backend
// refuses connections: the first request is retried on stable and counted
// against the canary; once it is ejected its share goes to stable, and each
// of those requests counts against it too (it could not take them).
func TestCanaryConnectFailureRetriedOnStable(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		cfg := testConfig()
		cfg.Retries = 0
		cf := newCanaryFront(t, rl, cfg, says("canary"))
		cf.svc.SetNodeArm("c", ArmCanary, []netip.AddrPort{closedPort(t)})
		cf.svc.SetSplit(Split{Canary: 50})
		c := keepAliveClient()
		for range 20 {
			code, body := do(t, c, http.MethodPost, cf.f.URL, "payload")
			require.Equal(t, http.StatusOK, code, "nothing reached the canary: even a POST goes to stable")
			require.Equal(t, "stable", body)
		}
		counts := cf.svc.ArmCounts()
		assert.Equal(t, []uint64{10, 10}, []uint64{counts[ArmCanary].Requests, counts[ArmCanary].Errors},
			"one refusal, then its share it could not take")
		assert.Equal(t, uint64(20), counts[ArmStable].Requests)
	})
}

// TestCanaryPinning: from a trusted proxy, with pinning on,
// "X-Herd-Canary: always" reaches the canary and "never" a stable backend,
// and neither is measured; with pinning off, or from another client, the
// header changes nothing.
func TestCanaryPinning(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pinning bool
		trusted string
		honours bool
	}{
		{"trusted", true, "127.0.0.0/8", true},
		{"untrusted", true, "10.0.0.0/8", false},
		{"off", false, "127.0.0.0/8", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eachRelay(t, func(t *testing.T, rl relay) {
				cfg := testConfig()
				cfg.CanaryPinning = tc.pinning
				cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix(tc.trusted)}
				cf := newCanaryFront(t, rl, cfg, says("canary"))
				cf.svc.SetSplit(Split{Canary: 10, Baseline: 10})
				c := keepAliveClient()
				got := map[string]int{}
				for range 50 {
					_, body := do(t, c, http.MethodGet, cf.f.URL, "", "X-Herd-Canary", "always")
					got["always "+body]++
					_, body = do(t, c, http.MethodGet, cf.f.URL, "", "X-Herd-Canary", "never")
					got["never "+body]++
				}
				counts := cf.svc.ArmCounts()
				var measured uint64
				for _, c := range counts {
					measured += c.Requests
				}
				if tc.honours {
					assert.Equal(t, map[string]int{"always canary": 50, "never stable": 50}, got)
					assert.Zero(t, measured, "pinned requests are not measured")
					return
				}
				assert.Equal(t, 10, got["always canary"]+got["never canary"], "the split's 10 %%: %v", got)
				assert.Equal(t, uint64(100), measured, "every request measured")
			})
		})
	}
}

// TestCanaryOverHTTP2: HTTP/2 streams are split and measured as HTTP/1
// requests are, and a canary's 500 to a GET is replaced by a stable
// backend's answer.
func TestCanaryOverHTTP2(t *testing.T) {
	cfg := testConfig()
	cfg.H2C = true
	cf := newCanaryFront(t, relays[0], cfg, failsWith(http.StatusServiceUnavailable))
	cf.svc.SetSplit(Split{Canary: 20, Baseline: 20})
	c := h2cClient()
	got := map[string]int{}
	for range 100 {
		code, body := do(t, c, http.MethodGet, cf.f.URL+"/predict", "")
		require.Equal(t, http.StatusOK, code)
		got[body]++
	}
	assert.Equal(t, map[string]int{"baseline": 20, "stable": 80}, got)
	assert.Equal(t, int64(20), cf.can.hits.Load())
	assert.Equal(t, int64(1), cf.can.conns.Load(), "the canary's whole 503s were read: its connection reused")
	counts := cf.svc.ArmCounts()
	assert.Equal(t, [3]uint64{80, 20, 20}, [3]uint64{counts[0].Requests, counts[1].Requests, counts[2].Requests})
	assert.Equal(t, uint64(20), counts[ArmCanary].Errors)

	var answered503 int
	for range 100 {
		code, _ := do(t, c, http.MethodPost, cf.f.URL+"/predict", "x=1")
		if code == http.StatusServiceUnavailable {
			answered503++
		}
	}
	assert.Equal(t, 20, answered503, "a POST over HTTP/2 gets its arm's answer")
}

// TestSetNodeArmMovesAnAddress: an address a member announces in another
// arm leaves the first (a fresh host in the new arm), and the arms' sets
// stay partitioned; removing a member's arm leaves its others.
func TestSetNodeArmMovesAnAddress(t *testing.T) {
	b, err := New(testConfig())
	require.NoError(t, err)
	defer b.Close()
	s := b.Service("predictor")
	a1, a2, a3 := netip.MustParseAddrPort("127.0.0.1:9001"), netip.MustParseAddrPort("127.0.0.1:9002"),
		netip.MustParseAddrPort("127.0.0.1:9003")
	s.SetNode("n", []netip.AddrPort{a1})
	s.SetNodeArm("n", ArmCanary, []netip.AddrPort{a2, a3})
	armsOf := func() map[netip.AddrPort]Arm {
		out := map[netip.AddrPort]Arm{}
		for _, st := range b.Backends() {
			out[st.Addr] = st.Arm
		}
		return out
	}
	assert.Equal(t, map[netip.AddrPort]Arm{a1: ArmStable, a2: ArmCanary, a3: ArmCanary}, armsOf())
	old := s.reg.set.Load().arms[ArmCanary][0]

	s.SetNode("n", []netip.AddrPort{a1, a2})
	assert.Equal(t, map[netip.AddrPort]Arm{a1: ArmStable, a2: ArmStable, a3: ArmCanary}, armsOf())
	assert.True(t, old.retired.Load(), "the canary host of the moved address is retired")
	set := s.reg.set.Load()
	assert.Len(t, set.hosts, 3)
	assert.Len(t, set.arms[ArmStable], 2)
	assert.Len(t, set.arms[ArmCanary], 1)
	assert.Empty(t, set.arms[ArmBaseline])

	s.SetNodeArm("n", ArmCanary, nil)
	set = s.reg.set.Load()
	assert.Len(t, set.hosts, 2)
	assert.Len(t, set.arms[ArmStable], 2)
	assert.Equal(t, 2, s.Len())
	assert.Same(t, set.hosts[0], set.arms[ArmStable][0], "no other arm: the stable arm is the whole set")

	s.SetNode("n", nil)
	assert.Zero(t, s.Len())
}
