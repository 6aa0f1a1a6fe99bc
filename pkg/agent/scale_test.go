package agent

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/internal/testutil"
	"github.com/herd-cluster/herd/pkg/membership"
)

// scaleAgent sends one scale request to node through c, as a gateway does.
func scaleAgent(t *testing.T, c *membership.Cluster, node string, req membership.ScaleRequest) membership.ScaleAnswer {
	t.Helper()
	if req.Service == "" {
		req.Service = "predictor"
	}
	ans, ok := c.Scale(context.Background(), []string{node}, req, 5*time.Second)[node]
	require.True(t, ok, "an answer for %s", node)
	return ans
}

// closedLoad keeps 4 clients busy through url, every other request a POST
// /predict, until the returned function is called; that returns how many
// were sent and the failures.
func closedLoad(t *testing.T, url string) func() (sent int64, failures []string) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	var sent atomic.Int64
	var mu sync.Mutex
	var failures []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				req := testutil.PredictRequest(url, "fine")
				if sent.Add(1)%2 != 0 {
					req, _ = http.NewRequest(http.MethodGet, url+"/version", nil)
				}
				if why := testutil.Failure(client, req); why != "" {
					mu.Lock()
					failures = append(failures, why)
					mu.Unlock()
				}
			}
		})
	}
	var once sync.Once
	return func() (int64, []string) {
		once.Do(func() { close(stop) })
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return sent.Load(), failures
	}
}

func (ta *testAgent) healthy(t *testing.T, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		rs := ta.Replicas()
		if len(rs) != n {
			return false
		}
		for _, r := range rs {
			if r.State != stateHealthy {
				return false
			}
		}
		return true
	}, 20*time.Second, 10*time.Millisecond, "%d replicas, all healthy: %+v", n, ta.Replicas())
}

// TestScaleUpAndDown: an agent goes 2 → 5 → 1 replicas without
// restarting, under load through a real gateway: new replicas are routed
// once healthy, removed ones (the highest ports) are withdrawn, acknowledged
// and stopped with no request failing. The count survives a restart, the
// --replicas flag wins when it changed, and what does not fit is refused
// with the room.
func TestScaleUpAndDown(t *testing.T) {
	testutil.BuildPredictorImages(t, imagesDir, "1.0.0")
	g := startGateway(t)
	cfg := agentConfig(t, g, 2)
	cfg.MaxReplicas = 6
	cfg.BasePort = testutil.FreePortRange(t, 6, "127.0.0.1")
	cfg.DataDir = t.TempDir()
	stateDir := t.TempDir()
	ta := runAgent(t, cfg, newDriver(t, stateDir))
	g.waitBackends(t, 2)

	ans := scaleAgent(t, g.cluster, cfg.Node, membership.ScaleRequest{Check: true})
	require.NoError(t, ans.Err)
	assert.Equal(t, membership.ScaleResponse{Replicas: 2, Room: 6, Limit: "its maximum is 6"}, ans.Response)

	began := time.Now()
	ans = scaleAgent(t, g.cluster, cfg.Node, membership.ScaleRequest{Replicas: 5, Reason: "test"})
	require.NoError(t, ans.Err)
	assert.Equal(t, 2, ans.Response.Replicas, "the count before")
	g.waitBackends(t, 5)
	t.Logf("MEASURE agent scale 2 → 5 (process runtime) to 5 backends routed: %s", time.Since(began).Round(time.Millisecond))
	ta.healthy(t, 5)
	assert.Equal(t, 5, ta.cluster.Tags().Count)

	stop := closedLoad(t, g.url)
	time.Sleep(300 * time.Millisecond)
	before := ta.Replicas()
	ans = scaleAgent(t, g.cluster, cfg.Node, membership.ScaleRequest{Replicas: 1})
	require.NoError(t, ans.Err)
	g.waitBackends(t, 1)
	ta.healthy(t, 1)
	time.Sleep(300 * time.Millisecond)
	sent, failures := stop()
	assert.Empty(t, failures, "of %d requests", sent)
	assert.Greater(t, sent, int64(50))
	assert.Equal(t, before[0], ta.Replicas()[0], "the lowest port's replica is kept, untouched")
	assert.Equal(t, []uint16{cfg.BasePort}, ta.cluster.Tags().Ports)
	for _, r := range before[1:] {
		assert.Error(t, syscall.Kill(r.PID, 0), "replica %d (pid %d) stopped", r.Index, r.PID)
	}

	ans = scaleAgent(t, g.cluster, cfg.Node, membership.ScaleRequest{Replicas: 7})
	assert.EqualError(t, ans.Err, cfg.Node+" has room for 6 replicas (its maximum is 6), not 7")
	ans = scaleAgent(t, g.cluster, cfg.Node, membership.ScaleRequest{Service: "other", Replicas: 2})
	assert.EqualError(t, ans.Err, cfg.Node+" runs service predictor, not other")
	busy, err := netListen(fmt.Sprintf("127.0.0.1:%d", cfg.BasePort+3))
	require.NoError(t, err)
	ans = scaleAgent(t, g.cluster, cfg.Node, membership.ScaleRequest{Replicas: 5})
	assert.EqualError(t, ans.Err, fmt.Sprintf("%s has room for 3 replicas (port %d in use), not 5", cfg.Node, cfg.BasePort+3))
	ans = scaleAgent(t, g.cluster, cfg.Node, membership.ScaleRequest{Check: true})
	assert.Equal(t, membership.ScaleResponse{Replicas: 1, Room: 3, Limit: fmt.Sprintf("port %d in use", cfg.BasePort+3)}, ans.Response)
	busy.Close()
	assert.Len(t, ta.Replicas(), 1, "nothing changed by the refusals")

	// A restart keeps the count; a changed --replicas wins over it.
	ta.stop(t)
	ta = runAgent(t, cfg, newDriver(t, stateDir))
	g.waitBackends(t, 1)
	assert.Len(t, ta.Replicas(), 1)
	changed := cfg
	changed.Replicas = 3
	a, err := New(changed, newDriver(t, stateDir), memberConfig())
	require.NoError(t, err)
	assert.Equal(t, 3, a.count)
	require.NoError(t, a.Close())

	// Zero: nothing routed, the agent stays a member.
	ans = scaleAgent(t, g.cluster, cfg.Node, membership.ScaleRequest{Replicas: 0})
	require.NoError(t, ans.Err)
	g.waitBackends(t, 0)
	require.Eventually(t, func() bool { return len(ta.Replicas()) == 0 }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		n, ok := g.cluster.Member(cfg.Node)
		return ok && n.Status == membership.StatusAlive && n.Tags.Count == 0
	}, 10*time.Second, 10*time.Millisecond, "a member announcing 0 replicas once they stopped")
}

// TestScaleDownUnacknowledged: a live gateway that never acknowledges the
// withdrawal keeps the replicas: the scale-down is given up, the count goes
// back, the Fail tag says why, and the next request clears it.
func TestScaleDownUnacknowledged(t *testing.T) {
	testutil.BuildPredictorImages(t, imagesDir, "1.0.0")
	g := startGateway(t)
	startSilentGateway(t, g)

	cfg := agentConfig(t, g, 3)
	cfg.SyncTimeout = 1500 * time.Millisecond
	cfg.DataDir = t.TempDir()
	ta := runAgent(t, cfg, newDriver(t, t.TempDir()))
	g.waitBackends(t, 3)
	pids := map[int]bool{}
	for _, r := range ta.Replicas() {
		pids[r.PID] = true
	}

	ans := scaleAgent(t, g.cluster, cfg.Node, membership.ScaleRequest{Replicas: 1})
	require.NoError(t, ans.Err)
	require.Eventually(t, func() bool { return ta.cluster.Tags().Fail != "" }, 10*time.Second, 20*time.Millisecond,
		"the failure is announced")
	tags := ta.cluster.Tags()
	assert.Contains(t, tags.Fail, "gateway silent-gw did not acknowledge the withdrawal of replica")
	assert.Contains(t, tags.Fail, "scale-down to 1 given up")
	g.waitBackends(t, 3) // the kept replicas are announced again
	ta.healthy(t, 3)
	for _, r := range ta.Replicas() {
		assert.True(t, pids[r.PID], "replica %d is the one it was", r.Index)
	}
	assert.Equal(t, 3, ta.cluster.Tags().Count)

	ans = scaleAgent(t, g.cluster, cfg.Node, membership.ScaleRequest{Replicas: 3})
	require.NoError(t, ans.Err)
	require.Eventually(t, func() bool { return ta.cluster.Tags().Fail == "" }, 10*time.Second, 20*time.Millisecond,
		"cleared by the next request")
}
