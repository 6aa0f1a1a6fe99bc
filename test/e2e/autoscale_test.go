package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/api"
)

// workLoad is an open-loop load of GET /work?ms=N spread over gateways:
// requests per second set at any time, each held N ms by a replica, so
// the requests in flight are rate × N.
type workLoad struct {
	rate         atomic.Int64
	sent, failed atomic.Int64
	firstErr     sync.Once
	err          atomic.Value
	stop         chan struct{}
	done         sync.WaitGroup
}

func startWorkLoad(t *testing.T, ms int, rate int, urls ...string) *workLoad {
	t.Helper()
	l := &workLoad{stop: make(chan struct{})}
	l.rate.Store(int64(rate))
	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	var urlMu sync.Mutex
	l.done.Go(func() {
		var inflight sync.WaitGroup
		defer inflight.Wait()
		next := time.Now()
		for i := 0; ; i++ {
			next = next.Add(time.Second / time.Duration(l.rate.Load()))
			select {
			case <-l.stop:
				return
			case <-time.After(time.Until(next)):
			}
			urlMu.Lock()
			url := urls[i%len(urls)]
			urlMu.Unlock()
			inflight.Go(func() {
				l.sent.Add(1)
				resp, err := client.Get(url + "/work?ms=" + strconv.Itoa(ms))
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("%s", resp.Status)
					}
				}
				if err != nil {
					l.failed.Add(1)
					l.firstErr.Do(func() { l.err.Store(err.Error()) })
				}
			})
		}
	})
	t.Cleanup(l.finish)
	return l
}

func (l *workLoad) finish() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.done.Wait()
}

func (l *workLoad) firstError() string {
	if v := l.err.Load(); v != nil {
		return v.(string)
	}
	return ""
}

// autoscaleStatus is the service's autoscaling as gateway g reports it.
func autoscaleStatus(t *testing.T, g *gatewayProc) (api.AutoscaleStatus, api.AutoscaleService) {
	t.Helper()
	st, err := g.client().AutoscaleStatus(context.Background())
	require.NoError(t, err)
	for _, s := range st.Services {
		if s.Service == "predictor" {
			return st, s
		}
	}
	return st, api.AutoscaleService{}
}

// replicasOf is the service's count as g's scale status says.
func replicasOf(t *testing.T, g *gatewayProc) int { return g.scaleStatus(t).Replicas }

// TestAutoscale: two gateways, two agents, an open-loop load on an
// endpoint that holds each request 200 ms, spread over both gateways (the
// signal is their sum). A step up scales up within the panic window; two
// minutes of steady load make at most one change; a rollout freezes the
// autoscaler; a step down scales down only after the stabilization; the
// deciding gateway killed, the other decides. No request fails.
func TestAutoscale(t *testing.T) {
	// Parallel: see harness_test.go.
	t.Parallel()
	ga := startGateway(t, "--node", "gw-a")
	gb := startGateway(t, "--node", "gw-b", "--join", ga.gossip)
	startScalableAgent(t, ga, "as-1", "127.0.0.2", 1, 8)
	startScalableAgent(t, ga, "as-2", "127.0.0.3", 1, 8)
	ga.waitBackends(t, 2, 30*time.Second)
	gb.waitBackends(t, 2, 30*time.Second)

	// Bad settings: one line, exit 2, nothing set.
	for _, bad := range [][]string{
		{"predictor", "--min", "5", "--max", "3", "--target-inflight", "4"},
		{"predictor", "--max", "3", "--target-inflight", "0"},
		{"nosuch", "--max", "3", "--target-inflight", "4"},
		{"predictor", "--off"},
	} {
		out, code := ga.clusterctl(t, append([]string{"autoscale"}, bad...)...)
		assert.Equal(t, 2, code, "%v: %s", bad, out)
		assert.Contains(t, out, "autoscale refused: ", bad)
	}
	_, none := autoscaleStatus(t, ga)
	require.Empty(t, none.Service, "nothing set")

	out, code := ga.clusterctl(t, "autoscale", "predictor", "--min", "1", "--max", "12", "--target-inflight", "4",
		"--stable-window", "10s", "--panic-window", "2s", "--scale-down-stabilization", "15s")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "autoscaling predictor: 1 to 12 replicas, 4 requests in flight each")
	st, svc := autoscaleStatus(t, gb)
	assert.Equal(t, "gw-a", st.Decider, "the alive gateway with the lowest name decides")
	assert.Equal(t, 12, svc.Settings.Max, "the other gateway took the settings")

	// 25 req/s × 200 ms = 5 in flight: 2 replicas at 4 each.
	l := startWorkLoad(t, 200, 25, ga.url, gb.url)
	time.Sleep(12 * time.Second)
	assert.Equal(t, 2, replicasOf(t, ga))

	// Step up: 150 req/s = 30 in flight: 8 replicas.
	step := time.Now()
	l.rate.Store(150)
	var firstUp time.Duration
	require.Eventually(t, func() bool {
		_, s := autoscaleStatus(t, ga)
		for _, e := range s.Events {
			if e.To > e.From && e.At.After(step) {
				firstUp = e.At.Sub(step)
				return true
			}
		}
		return false
	}, 15*time.Second, 100*time.Millisecond, "a scale-up after the step")
	t.Logf("MEASURE autoscale: first scale-up %s after the load stepped from 5 to 30 in flight (panic window 2s)", firstUp.Round(10*time.Millisecond))
	assert.LessOrEqual(t, firstUp, 4*time.Second, "up within the panic window and a decision")
	require.Eventually(t, func() bool { return replicasOf(t, ga) >= 7 }, 30*time.Second, 200*time.Millisecond)
	ga.waitBackends(t, replicasOf(t, ga), 30*time.Second)

	// Two minutes of steady load: at most one change.
	time.Sleep(5 * time.Second)
	_, s := autoscaleStatus(t, ga)
	before, count := len(s.Events), replicasOf(t, ga)
	steadyFrom := time.Now()
	// Meanwhile the dashboard shows it: the count, the state, the last
	// decision.
	ctx, _ := chrome(t)
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate("http://"+ga.admin+"/")))
	var shown map[string]string
	require.Eventually(t, func() bool {
		shown = tableRows(t, ctx, "#autoscale", "data-service", 0, 4, 7)
		return shown["predictor"] == "predictor "+strconv.Itoa(count)+" steady"
	}, 15*time.Second, 200*time.Millisecond, "the dashboard's autoscaling row: %v", shown)
	assert.Contains(t, tableRows(t, ctx, "#autoscale", "data-service", 8)["predictor"], " → ", "the last decision, with its reason")
	time.Sleep(2*time.Minute - time.Since(steadyFrom))
	_, s = autoscaleStatus(t, ga)
	changes := 0
	for _, e := range s.Events[min(before, len(s.Events)):] {
		if e.From != e.To {
			changes++
		}
	}
	t.Logf("MEASURE autoscale: %d changes in 2 min of steady load at 30 in flight (count %d → %d)", changes, count, replicasOf(t, ga))
	assert.LessOrEqual(t, changes, 1, "no flapping: %+v", s.Events)

	// A rollout freezes it.
	rollout := make(chan string, 1)
	go func() {
		out, _ := ga.clusterctl(t, "rollout", "predictor:1.1.0")
		rollout <- out
	}()
	require.Eventually(t, func() bool {
		_, s := autoscaleStatus(t, ga)
		return s.Frozen == "a rollout of the service runs"
	}, 30*time.Second, 50*time.Millisecond, "frozen during the rollout")
	t.Log(<-rollout)

	// Step down: 25 req/s. Down only after the stabilization (15 s).
	down := time.Now()
	l.rate.Store(25)
	require.Eventually(t, func() bool { return replicasOf(t, ga) <= 2 }, 60*time.Second, 200*time.Millisecond)
	tookDown := time.Since(down)
	t.Logf("MEASURE autoscale: down to 2 replicas %s after the load stepped down (stabilization 15s)", tookDown.Round(100*time.Millisecond))
	assert.GreaterOrEqual(t, tookDown, 15*time.Second, "not before the stabilization")

	// The deciding gateway dies: the other decides.
	l.finish()
	l2 := startWorkLoad(t, 200, 150, gb.url)
	ga.signal(syscall.SIGKILL)
	require.Eventually(t, func() bool {
		st, s := autoscaleStatus(t, gb)
		return st.Decider == "gw-b" && s.Deciding
	}, 30*time.Second, 200*time.Millisecond, "gw-b decides once gw-a has failed")
	require.Eventually(t, func() bool { return replicasOf(t, gb) >= 7 }, 30*time.Second, 200*time.Millisecond, "gw-b scales up")
	l2.finish()

	assert.Zero(t, l.failed.Load(), "failed requests: first %s", l.firstError())
	assert.Zero(t, l2.failed.Load(), "failed requests after the failover: first %s", l2.firstError())
	t.Logf("MEASURE autoscale: %d requests, %d failed; after the failover %d, %d failed",
		l.sent.Load(), l.failed.Load(), l2.sent.Load(), l2.failed.Load())
}
