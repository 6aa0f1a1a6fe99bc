package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/internal/testutil"
	"github.com/herd-cluster/herd/pkg/api"
)

// predictLoad is an open-loop load of /predict through the gateway, every
// other request a GET (safe to retry) and the others a POST with a body,
// each method's requests and failures counted apart.
type predictLoad struct {
	sent, failed [2]atomic.Int64 // by method: 0 GET, 1 POST
	stop         chan struct{}
	done         sync.WaitGroup
	mu           sync.Mutex
	errs         []string
}

func startPredictLoad(t *testing.T, base string, rate int) *predictLoad {
	t.Helper()
	l := &predictLoad{stop: make(chan struct{})}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	get := base + "/predict?text=" + url.QueryEscape("I love this, it is wonderful")
	l.done.Go(func() {
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		var inflight sync.WaitGroup
		defer inflight.Wait()
		for {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			m := rand.IntN(2) // at random: a fault every N-th request must not always land on one method
			inflight.Go(func() {
				req, _ := http.NewRequest(http.MethodGet, get, nil)
				if m == 1 {
					req = testutil.PredictRequest(base, "I love this, it is wonderful")
				}
				l.sent[m].Add(1)
				if why := testutil.Failure(client, req); why != "" {
					l.failed[m].Add(1)
					l.mu.Lock()
					if len(l.errs) < 5 {
						l.errs = append(l.errs, req.Method+": "+why)
					}
					l.mu.Unlock()
				}
			})
		}
	})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { l.finish() }) })
	return l
}

func (l *predictLoad) finish() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.done.Wait()
}

func (l *predictLoad) String() string {
	return fmt.Sprintf("GET sent=%d failed=%d, POST sent=%d failed=%d %v", l.sent[0].Load(), l.failed[0].Load(),
		l.sent[1].Load(), l.failed[1].Load(), l.errs)
}

// lastRollout is the service's running or last rollout.
func lastRollout(t *testing.T, g *gatewayProc) api.Rollout {
	t.Helper()
	out, code := g.clusterctl(t, "rollout", "status", "--json")
	require.Equal(t, 0, code, out)
	var r api.Rollout
	require.NoError(t, json.Unmarshal([]byte(out), &r), out)
	return r
}

// TestCanary: one cluster (2 agents × 2 replicas of 1.0.0) for every case
// of a canary rollout, each under an open-loop load of GET and POST
// /predict: bad input; three bad versions, each caught at the first step
// and removed with the clients' failures counted; a step with no traffic
// failing closed; a good version through every step and the host-by-host
// rollout with no failed request; a rollback promoted from its first step.
func TestCanary(t *testing.T) {
	g := startGateway(t)
	buildAll(t)
	startAgent(t, g, "cn-a", "127.0.0.2", 2)
	startAgent(t, g, "cn-b", "127.0.0.3", 2)
	g.waitBackends(t, 4, 30*time.Second)
	quick := []string{"rollout", "--canary", "--step-time", "3s", "--min-requests", "100", "--min-healthy", "1s"}

	t.Run("bad input: one line, exit 2, nothing started", func(t *testing.T) {
		for _, bad := range []struct{ args, want string }{
			{"--canary --steps 25,5", "must be ascending"},
			{"--canary --steps 0,5", "from 1 to 99"},
			{"--canary --steps 5,100", "from 1 to 99"},
			{"--canary --max-error-rate 150%", "--max-error-rate"},
			{"--canary --max-error-rate lots", "--max-error-rate"},
			{"--canary --max-p99-ratio 0.9", "must be above 1"},
			{"--canary --min-requests 10", "at least 50"},
			{"--steps 5,25", "add --canary"},
			{"--canary --canary-node nosuch", "not an alive agent"},
		} {
			out, code := g.clusterctl(t, append(append([]string{"rollout"}, strings.Fields(bad.args)...), "predictor:1.1.0")...)
			assert.Equal(t, 2, code, "%s: %s", bad.args, out)
			assert.Contains(t, out, bad.want, bad.args)
		}
		out, code := g.clusterctl(t, "rollout", "promote")
		assert.Equal(t, 2, code, out)
		assert.Contains(t, out, "no canary is running")
		_, code = g.clusterctl(t, "rollout", "status")
		assert.NotEqual(t, 0, code, "no rollout was started")
	})

	for _, bad := range []struct{ image, caught string }{
		{"predictor:1.1.0-err5", "canary error rate"},
		{"predictor:1.1.0-slow50", "canary p99"},
		{"predictor:1.1.0-crash100", "stopped being healthy"},
	} {
		t.Run(bad.image, func(t *testing.T) {
			l := startPredictLoad(t, g.url, 200)
			began := time.Now()
			out, code := g.clusterctl(t, append(quick, "--steps", "20,50", bad.image)...)
			took := time.Since(began)
			time.Sleep(300 * time.Millisecond)
			l.finish()
			require.Equal(t, 1, code, out)
			r := lastRollout(t, g)
			require.NotNil(t, r.Canary, out)
			assert.Equal(t, api.RolloutFailed, r.State)
			assert.Equal(t, api.CanaryFailed, r.Canary.Phase)
			assert.Contains(t, r.Message, "step 1 (20 %) failed")
			assert.Contains(t, r.Message, bad.caught)
			assert.Contains(t, r.Message, "canary removed, no host changed")
			var canaryErrors uint64
			if n := len(r.Canary.Steps); n > 0 {
				canaryErrors = r.Canary.Steps[n-1].Verdict.Canary.Errors
			}
			t.Logf("MEASURE canary %s: caught in %s; %s; canary errors counted %d; reason: %s", bad.image,
				took.Round(100*time.Millisecond), l, canaryErrors, r.Message)
			assert.Zero(t, l.failed[0].Load(), "GET requests failed on the canary are retried on the stable arm: %s", l)
			if bad.image != "predictor:1.1.0-crash100" { // a crash's in-flight POSTs are not counted as answers
				assert.LessOrEqual(t, uint64(l.failed[1].Load()), canaryErrors, "POST failures are the canary's own: %s", l)
			} else {
				assert.LessOrEqual(t, l.failed[1].Load(), int64(5), "POST failures: only those in flight at the crash: %s", l)
			}
			g.waitBackends(t, 4, 10*time.Second)
			assert.Equal(t, map[string]int{"1.0.0": 8}, versions(t, g, 8), "no host changed")
		})
	}

	t.Run("no traffic: inconclusive, then failed closed", func(t *testing.T) {
		out, code := g.clusterctl(t, "rollout", "--canary", "--steps", "20", "--step-time", "1s", "--step-deadline", "4s",
			"predictor:1.1.0")
		require.Equal(t, 1, code, out)
		r := lastRollout(t, g)
		assert.Contains(t, r.Message, "failed closed: still inconclusive at its 4s deadline: too few requests to judge")
		require.Len(t, r.Canary.Steps, 1)
		assert.Equal(t, api.VerdictInconclusive, r.Canary.Steps[0].Verdict.Result)
	})

	t.Run("good version: every step passes, then every host, no failed request", func(t *testing.T) {
		l := startPredictLoad(t, g.url, 200)
		metrics := make(chan string, 1)
		go func() { // the canary's series while it runs
			deadline := time.Now().Add(time.Minute)
			for time.Now().Before(deadline) {
				if m := getMetrics(t, g.admin); strings.Contains(m, `arm="canary"`) {
					metrics <- m
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
			metrics <- ""
		}()
		out, code := g.clusterctl(t, append(quick, "--steps", "20,50", "predictor:1.1.0")...)
		time.Sleep(300 * time.Millisecond)
		l.finish()
		require.Equal(t, 0, code, out)
		assert.Contains(t, out, "canary step 1 (20 %): pass")
		assert.Contains(t, out, "canary step 2 (50 %): pass")
		t.Logf("MEASURE canary good version: %s", l)
		assert.Zero(t, l.failed[0].Load()+l.failed[1].Load(), "%s", l)
		r := lastRollout(t, g)
		require.Len(t, r.Canary.Steps, 2)
		for _, s := range r.Canary.Steps {
			assert.GreaterOrEqual(t, s.Verdict.Canary.Requests, uint64(100), "the history keeps each step's figures")
			assert.GreaterOrEqual(t, s.Verdict.Baseline.Requests, uint64(100))
			assert.NotZero(t, s.Verdict.Canary.P99)
		}
		assert.Equal(t, api.CanaryPassed, r.Canary.Phase)
		assert.Equal(t, map[string]int{"1.1.0": 8}, versions(t, g, 8))
		m := <-metrics
		assert.Contains(t, m, `version="predictor:1.1.0"`, "the canary's series carry its version")
	})

	t.Run("promote: a rollback's canary skips its remaining steps", func(t *testing.T) {
		out, code := g.clusterctl(t, "rollback", "--canary", "--steps", "10,20,30", "--step-time", "1m", "--detach")
		require.Equal(t, 0, code, out)
		require.Eventually(t, func() bool {
			r := lastRollout(t, g)
			return r.Canary != nil && r.Canary.Phase == api.CanaryMeasuring
		}, 30*time.Second, 100*time.Millisecond)
		// The dashboard shows the canary live: its weight and the two arms side by side.
		ctx, _ := chrome(t)
		var weight, arms string
		tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		require.NoError(t, chromedp.Run(tctx, chromedp.Navigate("http://"+g.admin+"/"),
			chromedp.WaitVisible(`.canary[data-phase="measuring"] .canary-arms tbody tr`, chromedp.ByQuery),
			chromedp.Text(".canary-weight", &weight, chromedp.ByQuery),
			chromedp.Text(".canary-arms tbody", &arms, chromedp.ByQuery)))
		cancel()
		assert.Contains(t, weight, "step 1: canary 10 %")
		assert.Contains(t, arms, "1 (live)")
		assert.Contains(t, arms, "baseline")

		out, code = g.clusterctl(t, "rollout", "promote")
		require.Equal(t, 0, code, out)
		require.Eventually(t, func() bool { return lastRollout(t, g).Done() }, time.Minute, 200*time.Millisecond)
		r := lastRollout(t, g)
		assert.Equal(t, api.RolloutSucceeded, r.State, r.Message)
		assert.Equal(t, api.CanaryPromoted, r.Canary.Phase)
		assert.Equal(t, map[string]int{"1.0.0": 8}, versions(t, g, 8))
	})
}
