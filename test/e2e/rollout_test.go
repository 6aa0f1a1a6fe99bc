package e2e

import (
	"encoding/json"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/rollout"
	"github.com/herd-cluster/herd/pkg/runtime/docker"
)

// clusterctl runs clusterctl against g and returns its output and exit code.
func (g *gatewayProc) clusterctl(t *testing.T, args ...string) (string, int) {
	t.Helper()
	return runToEnd(t, os.Environ(), append([]string{"clusterctl", "--addr", g.admin}, args...)...)
}

// versions asks the gateway n times and counts the versions answering.
func versions(t *testing.T, g *gatewayProc, n int) map[string]int {
	t.Helper()
	out := map[string]int{}
	for range n {
		v, err := getVersion(t, g.url)
		require.NoError(t, err)
		out[v.Version]++
	}
	return out
}

// TestRollout: 3 agents × 4 replicas on 1.0.0, rolled to 1.1.0 under a
// constant load: zero failed requests, and afterwards only 1.1.0 answers.
func TestRollout(t *testing.T) {
	g := startGateway(t)
	for i, ip := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"} {
		startAgent(t, g, "roll-"+string(rune('a'+i)), ip, 4)
	}
	g.waitBackends(t, 12, 30*time.Second)
	l := startLoad(t, g.url, 200, true)
	p := startProbe(t, g.url, 2)
	time.Sleep(2 * time.Second) // the first second warms connections up

	began := time.Now()
	out, code := g.clusterctl(t, "rollout", "--min-healthy", "1s", "--deadline", "30s", "predictor:1.1.0")
	took := time.Since(began)
	time.Sleep(time.Second)
	l.finish()
	p.finish()
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "succeeded")
	t.Logf("MEASURE rollout 3×4 1.0.0→1.1.0: took %s, load sent=%d failed=%d", took.Round(time.Millisecond), l.sent.Load(), l.failed.Load())
	require.Zero(t, l.failed.Load(), "failed requests:\n%s", l.failures())
	require.Zero(t, p.failed.Load(), "failed probe requests:\n%s", p.failures())
	assert.Equal(t, map[string]int{"1.1.0": 24}, versions(t, g, 24))

	// The throughput dip: the closed-loop probe's rate before the rollout
	// and while each host was being replaced.
	out, code = g.clusterctl(t, "rollout", "status", "--json")
	require.Equal(t, 0, code, out)
	var done rollout.Rollout
	require.NoError(t, json.Unmarshal([]byte(out), &done))
	ended := began.Add(took)
	t.Logf("MEASURE closed-loop probe (2 workers): %.0f req/s in the second before the rollout, %.0f in the second after",
		p.rate(began.Add(-time.Second), began), p.rate(ended, ended.Add(time.Second)))
	for _, h := range done.Hosts {
		t.Logf("MEASURE while %s was replaced (%s): %.0f req/s, lowest 250 ms window %.0f req/s", h.Node,
			h.HealthySince.Sub(h.Started).Round(time.Millisecond), p.rate(h.Started, h.HealthySince), p.lowest(h.Started, h.HealthySince, 250*time.Millisecond))
	}

	// History and status, as a script reads them.
	out, code = g.clusterctl(t, "rollout", "history", "--json")
	require.Equal(t, 0, code, out)
	var hist []rollout.Rollout
	require.NoError(t, json.Unmarshal([]byte(out), &hist))
	require.Len(t, hist, 1)
	assert.Equal(t, "predictor:1.0.0", hist[0].Previous)
	assert.Equal(t, rollout.StateSucceeded, hist[0].State)
	out, code = g.clusterctl(t, "rollout", "status")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "3/3 hosts")
}

// TestRolloutBrokenVersionReverts: a version whose health check fails is
// reverted on the first host; the command exits non-zero; no request fails
// and the cluster still serves 1.0.0. Unknown and malformed images are
// refused before anything is stopped.
func TestRolloutBrokenVersionReverts(t *testing.T) {
	g := startGateway(t)
	buildAll(t)
	startAgent(t, g, "brk-a", "127.0.0.2", 3)
	startAgent(t, g, "brk-b", "127.0.0.3", 3)
	g.waitBackends(t, 6, 30*time.Second)

	out, code := g.clusterctl(t, "rollout", "predictor:9.9.9")
	assert.Equal(t, 2, code, out)
	assert.Contains(t, out, "predictor:9.9.9")
	out, code = g.clusterctl(t, "rollout", "predictor")
	assert.Equal(t, 2, code, out)
	assert.Contains(t, out, "want name:tag")

	l := startLoad(t, g.url, 200, true)
	out, code = g.clusterctl(t, "rollout", "--min-healthy", "1s", "--deadline", "4s", "predictor:1.1.0-broken")
	time.Sleep(500 * time.Millisecond)
	l.finish()
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "failed")
	assert.Contains(t, out, "reverted to predictor:1.0.0")
	t.Logf("MEASURE broken rollout reverted: load sent=%d failed=%d", l.sent.Load(), l.failed.Load())
	require.Zero(t, l.failed.Load(), "failed requests:\n%s", l.failures())
	g.waitBackends(t, 6, 10*time.Second)
	assert.Equal(t, map[string]int{"1.0.0": 12}, versions(t, g, 12))
	out, _ = g.clusterctl(t, "rollout", "status", "--json")
	var r rollout.Rollout
	require.NoError(t, json.Unmarshal([]byte(out), &r))
	assert.Equal(t, rollout.StateFailed, r.State)
	assert.True(t, r.Reverted)
	assert.Equal(t, rollout.HostPending, r.Hosts[1].State, "the second host was never touched")
	assert.True(t, strings.HasPrefix(r.Message, "brk-a not healthy"), r.Message)
}

// TestRolloutSingleHost: one agent with 3 replicas; the rollout replaces
// them one at a time, so capacity never drops to zero: no failed request.
func TestRolloutSingleHost(t *testing.T) {
	g := startGateway(t)
	startAgent(t, g, "solo", "127.0.0.2", 3)
	g.waitBackends(t, 3, 30*time.Second)
	l := startLoad(t, g.url, 200, true)
	t.Setenv("HERD_ROLLOUT_MIN_HEALTHY", "500ms") // every flag also reads HERD_*
	out, code := g.clusterctl(t, "rollout", "--json", "predictor:1.1.0")
	time.Sleep(300 * time.Millisecond)
	l.finish()
	require.Equal(t, 0, code, out)
	var r rollout.Rollout
	require.NoError(t, json.Unmarshal([]byte(out), &r))
	assert.Equal(t, rollout.Duration(500*time.Millisecond), r.MinHealthy)
	t.Logf("MEASURE rollout 1×3: load sent=%d failed=%d", l.sent.Load(), l.failed.Load())
	require.Zero(t, l.failed.Load(), "failed requests:\n%s", l.failures())
	assert.Equal(t, map[string]int{"1.1.0": 6}, versions(t, g, 6))
}

// TestRolloutCoordinatorRestart: a second rollout is refused while one runs,
// naming it; the coordinator (the gateway) is killed mid-rollout and, started
// again, shows where the rollout stood and resumes it to success. An agent
// restarted afterwards comes back on the new version.
func TestRolloutCoordinatorRestart(t *testing.T) {
	// Parallel, with TestAutoscale: see harness_test.go.
	t.Parallel()
	g := startGateway(t)
	a := startAgent(t, g, "rs-a", "127.0.0.2", 2)
	startAgent(t, g, "rs-b", "127.0.0.3", 2)
	g.waitBackends(t, 4, 30*time.Second)
	// The load goes to a second gateway, as clients of a cluster with two
	// would: the coordinator's gateway is killed on purpose.
	g2 := startGateway(t, "--join", g.gossip, "--node", "gateway-2")
	g2.waitBackends(t, 4, 30*time.Second)
	l := startLoad(t, g2.url, 100, true)

	out, code := g.clusterctl(t, "rollout", "--detach", "--json", "--min-healthy", "3s", "predictor:1.1.0")
	require.Equal(t, 0, code, out)
	var r rollout.Rollout
	require.NoError(t, json.Unmarshal([]byte(out), &r))

	out, code = g.clusterctl(t, "rollout", "predictor:1.0.0")
	assert.Equal(t, 2, code, out)
	assert.Contains(t, out, "already running")
	assert.Contains(t, out, r.ID)

	// Kill the coordinator once the first host is on its way.
	require.Eventually(t, func() bool {
		out, _ := g.clusterctl(t, "rollout", "status", "--json", r.ID)
		var cur rollout.Rollout
		return json.Unmarshal([]byte(out), &cur) == nil && cur.Hosts[0].State == rollout.HostVerifying
	}, 20*time.Second, 50*time.Millisecond)
	g.signal(syscall.SIGKILL)
	<-g.done
	g.restart(t)
	out, code = g.clusterctl(t, "rollout", "status", "--json", r.ID)
	require.Equal(t, 0, code, out)
	var after rollout.Rollout
	require.NoError(t, json.Unmarshal([]byte(out), &after))
	assert.Equal(t, rollout.StateRunning, after.State, "status after the restart shows the rollout where it stood")
	assert.Equal(t, rollout.HostPending, after.Hosts[1].State)

	require.Eventually(t, func() bool {
		out, _ := g.clusterctl(t, "rollout", "status", "--json", r.ID)
		var cur rollout.Rollout
		return json.Unmarshal([]byte(out), &cur) == nil && cur.State == rollout.StateSucceeded
	}, 60*time.Second, 100*time.Millisecond, "the rollout resumes and succeeds")
	g.waitBackends(t, 4, 30*time.Second)
	assert.Equal(t, map[string]int{"1.1.0": 8}, versions(t, g, 8))
	l.finish()
	t.Logf("MEASURE coordinator killed mid-rollout, load through a second gateway: sent=%d failed=%d", l.sent.Load(), l.failed.Load())
	require.Zero(t, l.failed.Load(), "failed requests:\n%s", l.failures())

	// Agents persist the desired image: restarted with --image 1.0.0, it
	// still runs 1.1.0.
	a.stop(t, 30*time.Second)
	g.waitBackends(t, 2, 10*time.Second)
	a.restart(t)
	g.waitBackends(t, 4, 30*time.Second)
	assert.Equal(t, map[string]int{"1.1.0": 8}, versions(t, g, 8))
}

// TestDockerRollout: 2 agents × 2 containers on the Docker runtime, rolled
// to predictor:1.1.0 under a constant load: zero failed requests; the
// containers afterwards are 1.1.0 ones, the old ones removed.
func TestDockerRollout(t *testing.T) {
	dockerCluster(t, "1.0.0", "1.1.0")
	g := startGateway(t)
	n1, n2 := uniqueNode("droll-1"), uniqueNode("droll-2")
	startDockerAgent(t, g, n1, "127.0.0.2", 2)
	startDockerAgent(t, g, n2, "127.0.0.3", 2)
	g.waitBackends(t, 4, 60*time.Second)
	l := startLoad(t, g.url, 200, true)
	time.Sleep(500 * time.Millisecond)

	began := time.Now()
	out, code := g.clusterctl(t, "rollout", "--min-healthy", "1s", "--deadline", "60s", "predictor:1.1.0")
	took := time.Since(began)
	time.Sleep(500 * time.Millisecond)
	l.finish()
	require.Equal(t, 0, code, out)
	t.Logf("MEASURE docker rollout 2×2 1.0.0→1.1.0: took %s, load sent=%d failed=%d", took.Round(time.Millisecond), l.sent.Load(), l.failed.Load())
	require.Zero(t, l.failed.Load(), "failed requests:\n%s", l.failures())
	assert.Equal(t, map[string]int{"1.1.0": 8}, versions(t, g, 8))
	for _, n := range []string{n1, n2} {
		list := containers(t, n, true)
		require.Len(t, list, 2, "old containers removed")
		for _, c := range list {
			assert.Equal(t, "predictor:1.1.0", c.Labels[docker.LabelImage])
			assert.Equal(t, "running", c.State)
		}
	}
}
