package e2e

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/internal/testutil"
	"github.com/herd-cluster/herd/pkg/api"
)

// startScalableAgent starts a process-runtime agent with replicas replicas
// and room for max on ports of its own.
func startScalableAgent(t *testing.T, g *gatewayProc, node, ip string, replicas, max int, extra ...string) *agentProc {
	t.Helper()
	base := testutil.FreePortRange(t, max, ip)
	return startAgent(t, g, node, ip, replicas, append([]string{"--base-port", strconv.Itoa(int(base)),
		"--max-replicas", strconv.Itoa(max)}, extra...)...)
}

// scaleStatus is the gateway's view of the service's count.
func (g *gatewayProc) scaleStatus(t *testing.T) api.ScaleStatus {
	t.Helper()
	st, err := g.client().ScaleStatus(context.Background(), "predictor")
	require.NoError(t, err)
	return st
}

// TestScaleUnderLoad: 3 agents × 4 replicas scaled 12 → 24 → 6 with
// `clusterctl scale predictor N --wait` under an open-loop GET and POST
// /predict load: no request fails, every step is reached (the agents'
// counts, every replica healthy and routed, the removed ones stopped).
// Then what is refused is refused with one line, exit 2, nothing changed,
// and one agent's count is set alone.
func TestScaleUnderLoad(t *testing.T) {
	g := startGateway(t)
	agents := []*agentProc{
		startScalableAgent(t, g, "scale-a", "127.0.0.2", 4, 10),
		startScalableAgent(t, g, "scale-b", "127.0.0.3", 4, 10),
		startScalableAgent(t, g, "scale-c", "127.0.0.4", 4, 10),
	}
	g.waitBackends(t, 12, 30*time.Second)
	l := startMixedLoad(t, g.url, 200)
	time.Sleep(time.Second)

	step := func(n, each int) {
		t.Helper()
		began := time.Now()
		out, code := g.clusterctl(t, "scale", "predictor", strconv.Itoa(n), "--wait", "--timeout", "60s")
		took := time.Since(began)
		require.Equal(t, 0, code, out)
		assert.Contains(t, out, "done: predictor: "+strconv.Itoa(n)+" replicas, "+strconv.Itoa(n)+" healthy, "+strconv.Itoa(n)+" routed")
		assert.Len(t, g.backends(t), n)
		for _, a := range agents {
			rs := a.replicas(t)
			require.Len(t, rs, each, "%s's replicas: %+v", a.node, rs)
			for _, r := range rs {
				assert.Equal(t, api.ReplicaHealthy, r.State, "%s replica %d", a.node, r.Index)
			}
		}
		t.Logf("MEASURE clusterctl scale predictor %d --wait (process runtime, 3 agents, under 200 req/s): %s",
			n, took.Round(time.Millisecond))
	}
	before := agents[0].replicas(t)
	step(24, 8)
	step(6, 2)
	for _, r := range before[:2] {
		assert.Contains(t, agents[0].replicas(t), r, "the lowest ports' replicas kept, untouched")
	}
	for _, r := range before[2:] {
		assert.False(t, pidAlive(r.PID), "replica %d stopped", r.Index)
	}
	time.Sleep(500 * time.Millisecond)
	l.finish()
	t.Logf("MEASURE load through scale 12 → 24 → 6 (GET and POST /predict): sent=%d failed=%d", l.sent.Load(), l.failed.Load())
	require.Zero(t, l.failed.Load(), "failed requests:\n%s", l.failures())
	require.Greater(t, l.sent.Load(), int64(300), "the load ran through both scales")

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"scale", "predictor", "-1"}, "clusterctl: scale refused: replica count -1: must be 0 or more"},
		{[]string{"scale", "predictor", "0"}, "clusterctl: scale refused: 0 replicas would stop service predictor; zero must be allowed explicitly (--allow-zero)"},
		{[]string{"scale", "predictor", "31"}, "clusterctl: scale refused: service predictor: 31 replicas do not fit: the agents have room for 30 " +
			"(scale-a 10 (its maximum is 10), scale-b 10 (its maximum is 10), scale-c 10 (its maximum is 10))"},
		{[]string{"scale", "nope", "3"}, `clusterctl: scale refused: no agents of service "nope" in the cluster`},
		{[]string{"scale", "--node", "nobody", "3"}, `clusterctl: scale refused: no member named "nobody"`},
		{[]string{"scale", "--node", "scale-a", "11"}, "clusterctl: scale refused: scale-a has room for 10 replicas (its maximum is 10), not 11"},
	} {
		out, code := g.clusterctl(t, tc.args...)
		assert.Equal(t, 2, code, "%v: %s", tc.args, out)
		assert.Equal(t, tc.want+"\n", out, tc.args)
	}
	assert.Equal(t, 6, g.scaleStatus(t).Replicas, "nothing changed")

	out, code := g.clusterctl(t, "scale", "--node", "scale-b", "5", "--wait")
	require.Equal(t, 0, code, out)
	assert.Len(t, agents[1].replicas(t), 5)
	assert.Len(t, agents[0].replicas(t), 2)
	out, code = g.clusterctl(t, "scale", "status", "predictor")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "predictor: 9 replicas, 9 healthy, 9 routed")
}

// TestScaleDuringRollout: a scale of a service whose rollout runs is
// refused (exit 2, naming the rollout), or with --after-rollout queued and
// done once the rollout has ended, never mixed with it. An agent restarted
// afterwards keeps the count.
func TestScaleDuringRollout(t *testing.T) {
	g := startGateway(t)
	a := startScalableAgent(t, g, "scroll-a", "127.0.0.2", 2, 4)
	g.waitBackends(t, 2, 30*time.Second)

	out, code := g.clusterctl(t, "rollout", "--detach", "--min-healthy", "2s", "--deadline", "30s", "predictor:1.1.0")
	require.Equal(t, 0, code, out)
	out, code = g.clusterctl(t, "scale", "predictor", "3")
	assert.Equal(t, 2, code, out)
	assert.Contains(t, out, "a rollout of the service is running: predictor (rollout ")
	assert.Contains(t, out, "--after-rollout")

	out, code = g.clusterctl(t, "scale", "predictor", "3", "--after-rollout", "--wait", "--timeout", "60s")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "queued: it runs once the rollout of predictor has ended")
	r, err := g.client().Rollout(context.Background(), "predictor", "current")
	require.NoError(t, err)
	require.True(t, r.Succeeded(), "the rollout went its way: %+v", r)
	rs := a.replicas(t)
	require.Len(t, rs, 3)
	for _, rep := range rs {
		assert.Equal(t, "predictor:1.1.0", rep.Image, "the new replica runs the rolled-out image")
	}

	a.stop(t, 15*time.Second)
	g.waitBackends(t, 0, 10*time.Second)
	a.restart(t)
	g.waitBackends(t, 3, 30*time.Second)
	st := g.scaleStatus(t)
	assert.Equal(t, 3, st.Replicas, "the count survives a restart of the agent")
}

// TestScaleAgentFlags: --max-replicas is checked like --replicas, and a
// --replicas beyond it is refused naming it.
func TestScaleAgentFlags(t *testing.T) {
	// Parallel, with TestAutoscale: see harness_test.go.
	t.Parallel()
	buildAll(t)
	base := []string{"agent", "join", "--node", "bad", "--bind", "127.0.0.5:0", "--join", "127.0.0.1:1",
		"--admin", "127.0.0.5:0", "--runtime", "process", "--images-dir", filepath.Join(binDir, "images"), "--data-dir", t.TempDir()}
	for args, want := range map[string]string{
		"--max-replicas 0":                 "agent: --max-replicas 0: must be between 1 and 1000",
		"--max-replicas 1001":              "agent: --max-replicas 1001: must be between 1 and 1000",
		"--replicas 11 --max-replicas 10":  "agent: --replicas 11: must be between 1 and 10",
		"--replicas 3 --max-replicas many": "invalid value \"many\" for flag -max-replicas",
	} {
		code, last := runBinary(t, append(base, strings.Fields(args)...)...)
		assert.Equal(t, 2, code, args)
		assert.Contains(t, last, want, args)
	}
	// The variable works as the flag does.
	code, last := runBinaryEnv(t, []string{"HERD_MAX_REPLICAS=0"}, base...)
	assert.Equal(t, 2, code)
	assert.Contains(t, last, "--max-replicas 0: must be between 1 and 1000")
}

// TestScaleServices: behind one gateway routing two services by host, a
// scale of one service changes only its agents, under load on both, while
// a rollout of the other runs; a scale of the service being rolled out is
// refused, naming its rollout.
func TestScaleServices(t *testing.T) {
	g := startGateway(t)
	pred := startScalableAgent(t, g, "svc-pred", "127.0.0.2", 2, 6, "--service", "predictor", "--route", "api.example.com")
	tones := []*agentProc{
		startScalableAgent(t, g, "svc-tone-a", "127.0.0.3", 2, 6, "--service", "tone", "--route", "tone.example.com"),
		startScalableAgent(t, g, "svc-tone-b", "127.0.0.4", 2, 6, "--service", "tone", "--route", "tone.example.com"),
	}
	g.waitBackends(t, 6, 30*time.Second)
	lp := startHostLoad(t, g.url, "api.example.com", 50)
	lt := startHostLoad(t, g.url, "tone.example.com", 50)

	out, code := g.clusterctl(t, "rollout", "--service", "predictor", "--min-healthy", "2s", "--detach", "--json", "predictor:1.1.0")
	require.Zero(t, code, out)
	var r api.Rollout
	require.NoError(t, json.Unmarshal([]byte(out), &r))
	out, code = g.clusterctl(t, "scale", "predictor", "4")
	assert.Equal(t, 2, code, out)
	assert.Contains(t, out, "a rollout of the service is running: predictor (rollout "+r.ID)

	began := time.Now()
	out, code = g.clusterctl(t, "scale", "tone", "8", "--wait", "--timeout", "60s")
	require.Zero(t, code, "another service's rollout does not hold a scale back: %s", out)
	t.Logf("MEASURE clusterctl scale tone 8 --wait during a rollout of predictor: %s", time.Since(began).Round(time.Millisecond))
	assert.Contains(t, out, "done: tone: 8 replicas, 8 healthy, 8 routed")
	for _, a := range tones {
		assert.Len(t, a.replicas(t), 4, a.node)
	}
	waitRollout(t, g, "predictor", r.ID)
	assert.Len(t, pred.replicas(t), 2, "predictor's count untouched")
	assert.Len(t, backendsOf(t, g, "tone"), 8)
	assert.Len(t, backendsOf(t, g, "predictor"), 2)

	out, code = g.clusterctl(t, "scale", "tone", "2", "--wait", "--timeout", "60s")
	require.Zero(t, code, out)
	out, code = g.clusterctl(t, "scale", "status", "predictor")
	require.Zero(t, code, out)
	assert.Contains(t, out, "predictor: 2 replicas, 2 healthy, 2 routed")
	lp.finish()
	lt.finish()
	t.Logf("MEASURE scale of tone 4 → 8 → 2 during a rollout of predictor: predictor sent=%d failed=%d, tone sent=%d failed=%d",
		lp.sent.Load(), lp.failed.Load(), lt.sent.Load(), lt.failed.Load())
	assert.Zero(t, lp.failed.Load(), "predictor: %s", lp.failures())
	assert.Zero(t, lt.failed.Load(), "tone: %s", lt.failures())
}
