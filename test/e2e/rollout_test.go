package e2e

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/rollout"
)

// clusterctl runs clusterctl against g and returns its output and exit code.
func (g *gatewayProc) clusterctl(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "clusterctl"), append([]string{"--addr", g.admin}, args...)...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return string(out), code
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
	time.Sleep(500 * time.Millisecond)

	began := time.Now()
	out, code := g.clusterctl(t, "rollout", "--min-healthy", "1s", "--deadline", "30s", "predictor:1.1.0")
	took := time.Since(began)
	time.Sleep(500 * time.Millisecond)
	l.finish()
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "succeeded")
	t.Logf("MEASURE rollout 3×4 1.0.0→1.1.0: took %s, load sent=%d failed=%d", took.Round(time.Millisecond), l.sent.Load(), l.failed.Load())
	require.Zero(t, l.failed.Load(), "failed requests:\n%s", l.failures())
	assert.Equal(t, map[string]int{"1.1.0": 24}, versions(t, g, 24))

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
