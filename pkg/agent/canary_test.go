package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/internal/testutil"
	"github.com/herd-cluster/herd/pkg/membership"
	"github.com/herd-cluster/herd/pkg/runtime"
)

// canaryConfig is agentConfig with room for maxReplicas replicas, canaries
// included: the ports BasePort to BasePort+maxReplicas-1 are free.
func canaryConfig(t *testing.T, g *testGateway, replicas, maxReplicas int) Config {
	cfg := agentConfig(t, g, replicas)
	cfg.MaxReplicas = maxReplicas
	cfg.BasePort = testutil.FreePortRange(t, maxReplicas, "127.0.0.1")
	return cfg
}

// sendCanary sends node a deploy request with a canary part through c, as
// the rollout coordinator does, and returns the agent's answer.
func sendCanary(t *testing.T, c *membership.Cluster, node, image string, cr membership.CanaryRequest) error {
	t.Helper()
	return sendDeploy(t, c, node, membership.DeployRequest{Rollout: "t", Image: image, Canary: &cr})
}

func sendDeploy(t *testing.T, c *membership.Cluster, node string, req membership.DeployRequest) error {
	t.Helper()
	err, ok := c.Deploy(context.Background(), []string{node}, req, 5*time.Second)[node]
	require.True(t, ok, "an answer for %s", node)
	return err
}

// seenCanary is node's canary tag as c sees it.
func seenCanary(t *testing.T, c *membership.Cluster, node string) *membership.Canary {
	t.Helper()
	n, ok := c.Member(node)
	require.True(t, ok, "%s is a member", node)
	return n.Tags.Canary
}

// waitCanary waits until c sees want as node's canary tag (nil: none).
func waitCanary(t *testing.T, c *membership.Cluster, node string, want *membership.Canary) {
	t.Helper()
	require.Eventually(t, func() bool { return sameCanary(seenCanary(t, c, node), want) }, 20*time.Second,
		10*time.Millisecond, "the canary tag %+v (seen: %+v)", want, seenCanary(t, c, node))
}

func pids(rs []ReplicaStatus) []int {
	var out []int
	for _, r := range rs {
		out = append(out, r.PID)
	}
	return out
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// TestCanaryStartWeightEnd: a canary of 2 replicas with a baseline starts
// beside the agent's 2 replicas on the next ports, is announced with its
// weight, changes only its weight when asked, refuses what would disturb
// it, and ends: withdrawn, acknowledged, stopped, its tag gone. The
// agent's own replicas and desired state are never touched.
func TestCanaryStartWeightEnd(t *testing.T) {
	testutil.BuildPredictorImages(t, imagesDir, "1.0.0", "1.1.0")
	g := startGateway(t)
	cfg := canaryConfig(t, g, 2, 6)
	cfg.DataDir = t.TempDir()
	b := cfg.BasePort
	ta := runAgent(t, cfg, newDriver(t, t.TempDir()))
	g.waitBackends(t, 2)
	stable := ta.Replicas()
	stableTags := func(t *testing.T) {
		t.Helper()
		assert.Equal(t, stable, ta.Replicas(), "the agent's own replicas untouched")
		tags := ta.cluster.Tags()
		assert.Equal(t, []uint16{b, b + 1}, tags.Ports)
		assert.Equal(t, 2, tags.Count)
		assert.Equal(t, "predictor:1.0.0", tags.Image)
		assert.Equal(t, "predictor:1.0.0", tags.Want)
		assert.NoFileExists(t, filepath.Join(cfg.DataDir, DesiredFile), "a canary is not persisted")
	}

	began := time.Now()
	require.NoError(t, sendCanary(t, g.cluster, cfg.Node, "predictor:1.1.0",
		membership.CanaryRequest{Replicas: 2, Weight: 5, Baseline: true}))
	answered := time.Since(began)
	want := &membership.Canary{Weight: 5, Image: "predictor:1.1.0", Ports: []uint16{b + 2, b + 3},
		Baseline: []uint16{b + 4, b + 5}, Count: 2}
	waitCanary(t, g.cluster, cfg.Node, want)
	t.Logf("MEASURE canary of 2 replicas and a baseline of 2 (process runtime): answered in %s, all announced at the gateway in %s",
		answered.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	arms := ta.CanaryReplicas()
	require.Len(t, arms, 4)
	for i, r := range arms {
		arm, image, port := "canary", "predictor:1.1.0", b+2+uint16(i)
		if i >= 2 {
			arm, image = "baseline", "predictor:1.0.0"
		}
		assert.Equal(t, ReplicaStatus{Arm: arm, Index: i % 2, Addr: fmt.Sprintf("127.0.0.1:%d", port), Image: image,
			State: stateHealthy, ID: r.ID, PID: r.PID}, r)
	}
	assert.Contains(t, testutil.WaitOK(t, fmt.Sprintf("127.0.0.1:%d", b+3), "/version", 5*time.Second),
		`"instance":"`+cfg.Node+`/canary1","version":"1.1.0"`)
	assert.Contains(t, testutil.WaitOK(t, fmt.Sprintf("127.0.0.1:%d", b+4), "/version", 5*time.Second),
		`"instance":"`+cfg.Node+`/baseline0","version":"1.0.0"`)
	stableTags(t)

	// Another weight changes the tag's weight only; the same request again
	// changes nothing at all.
	require.NoError(t, sendCanary(t, g.cluster, cfg.Node, "predictor:1.1.0",
		membership.CanaryRequest{Replicas: 2, Weight: 25, Baseline: true}))
	want.Weight = 25
	waitCanary(t, g.cluster, cfg.Node, want)
	assert.Equal(t, pids(arms), pids(ta.CanaryReplicas()), "the same replicas")
	gen := ta.cluster.Tags().Gen
	require.NoError(t, sendCanary(t, g.cluster, cfg.Node, "predictor:1.1.0",
		membership.CanaryRequest{Replicas: 2, Weight: 25, Baseline: true}))
	assert.Never(t, func() bool { return ta.cluster.Tags().Gen != gen }, 300*time.Millisecond, 10*time.Millisecond,
		"no new tags for the same request")

	// What would disturb the canary is refused, naming it; what changes
	// nothing passes.
	const running = "predictor:1.1.0 (2 replicas per arm, with a baseline, weight 25%)"
	ans := scaleAgent(t, g.cluster, cfg.Node, membership.ScaleRequest{Replicas: 3})
	assert.EqualError(t, ans.Err, cfg.Node+" hosts a canary of "+running+": its replica count changes once the canary has ended")
	err := sendDeploy(t, g.cluster, cfg.Node, membership.DeployRequest{Rollout: "t", Image: "predictor:1.1.0"})
	assert.EqualError(t, err, cfg.Node+" hosts a canary of "+running+": a deploy of predictor:1.1.0 waits until the canary has ended")
	require.NoError(t, sendDeploy(t, g.cluster, cfg.Node, membership.DeployRequest{Rollout: "t", Image: "predictor:1.0.0"}),
		"a deploy of the image the replicas run changes nothing")
	require.NoError(t, sendDeploy(t, g.cluster, cfg.Node, membership.DeployRequest{Rollout: "t", Image: "predictor:1.1.0", CheckOnly: true}),
		"a check changes nothing")
	err = sendCanary(t, g.cluster, cfg.Node, "predictor:1.0.0", membership.CanaryRequest{Replicas: 2, Weight: 5, Baseline: true})
	assert.EqualError(t, err, cfg.Node+" hosts a canary of "+running+": end it before starting one of predictor:1.0.0")
	err = sendCanary(t, g.cluster, cfg.Node, "predictor:1.1.0", membership.CanaryRequest{Replicas: 1, Weight: 5, Baseline: true})
	assert.EqualError(t, err, cfg.Node+" hosts a canary of "+running+": end it to change its replicas")
	err = sendCanary(t, g.cluster, cfg.Node, "predictor:1.1.0", membership.CanaryRequest{Replicas: 2, Weight: 5})
	assert.EqualError(t, err, cfg.Node+" hosts a canary of "+running+": end it to change its replicas")
	waitCanary(t, g.cluster, cfg.Node, want)
	assert.Equal(t, pids(arms), pids(ta.CanaryReplicas()), "nothing changed by the refusals")
	stableTags(t)

	// The end: withdrawn, acknowledged, stopped, and the tag gone.
	began = time.Now()
	require.NoError(t, sendCanary(t, g.cluster, cfg.Node, "predictor:1.1.0", membership.CanaryRequest{}))
	waitCanary(t, g.cluster, cfg.Node, nil)
	t.Logf("MEASURE canary end (4 replicas): tag gone at the gateway in %s", time.Since(began).Round(time.Millisecond))
	for _, r := range arms {
		assert.False(t, alive(r.PID), "%s replica %d (pid %d) stopped", r.Arm, r.Index, r.PID)
	}
	assert.Empty(t, ta.CanaryReplicas())
	stableTags(t)
	require.NoError(t, sendCanary(t, g.cluster, cfg.Node, "predictor:1.1.0", membership.CanaryRequest{}),
		"ending no canary is a success")

	// Its ports are free again: a scale may take them.
	ans = scaleAgent(t, g.cluster, cfg.Node, membership.ScaleRequest{Replicas: 4})
	require.NoError(t, ans.Err)
	g.waitBackends(t, 4)
	ta.healthy(t, 4)
}

// TestCanaryEndWaitsForEveryGateway: a live gateway that does not
// acknowledge the withdrawal keeps the canary's replicas running, withdrawn
// (the tag has weight 0 and no ports), and the end is tried again until
// every live gateway has acknowledged: here once the silent one has left.
func TestCanaryEndWaitsForEveryGateway(t *testing.T) {
	testutil.BuildPredictorImages(t, imagesDir, "1.0.0", "1.1.0")
	g := startGateway(t)
	silent := startSilentGateway(t, g)
	cfg := canaryConfig(t, g, 1, 3)
	cfg.SyncTimeout = time.Second
	cfg.RestartBackoff = 200 * time.Millisecond
	ta := runAgent(t, cfg, newDriver(t, t.TempDir()))
	g.waitBackends(t, 1)

	require.NoError(t, sendCanary(t, g.cluster, cfg.Node, "predictor:1.1.0",
		membership.CanaryRequest{Replicas: 1, Weight: 50, Baseline: true}))
	waitCanary(t, g.cluster, cfg.Node, &membership.Canary{Weight: 50, Image: "predictor:1.1.0",
		Ports: []uint16{cfg.BasePort + 1}, Baseline: []uint16{cfg.BasePort + 2}, Count: 1})
	arms := ta.CanaryReplicas()
	require.Len(t, arms, 2)

	require.NoError(t, sendCanary(t, g.cluster, cfg.Node, "predictor:1.1.0", membership.CanaryRequest{}))
	withdrawn := &membership.Canary{Image: "predictor:1.1.0", Count: 1}
	waitCanary(t, g.cluster, cfg.Node, withdrawn)
	assert.Never(t, func() bool {
		return !alive(arms[0].PID) || !alive(arms[1].PID) || !sameCanary(seenCanary(t, g.cluster, cfg.Node), withdrawn)
	}, 3*cfg.SyncTimeout, 20*time.Millisecond, "kept running and withdrawn while a live gateway has not acknowledged")
	err := sendCanary(t, g.cluster, cfg.Node, "predictor:1.1.0", membership.CanaryRequest{Replicas: 1, Weight: 5})
	assert.EqualError(t, err, cfg.Node+" is ending its canary of predictor:1.1.0: ask again once it has ended")
	ans := scaleAgent(t, g.cluster, cfg.Node, membership.ScaleRequest{Replicas: 2})
	assert.ErrorContains(t, ans.Err, "hosts a canary of predictor:1.1.0", "its ports are still taken")

	require.NoError(t, silent.Leave())
	waitCanary(t, g.cluster, cfg.Node, nil)
	for _, r := range arms {
		assert.False(t, alive(r.PID), "%s replica %d (pid %d) stopped", r.Arm, r.Index, r.PID)
	}
	assert.Empty(t, ta.CanaryReplicas())
	g.waitBackends(t, 1)
}

// TestCanaryRefusals: a canary waits for a scale or a rollout of the
// agent's replicas to finish, needs a baseline the replicas all run, ports
// for both arms and its image; a check changes nothing.
func TestCanaryRefusals(t *testing.T) {
	testutil.BuildPredictorImages(t, imagesDir, "1.0.0", "1.1.0")
	g := startGateway(t)
	silent := startSilentGateway(t, g) // holds a scale-down and a rollout for SyncTimeout
	cfg := canaryConfig(t, g, 3, 6)
	cfg.SyncTimeout = 2 * time.Second
	ta := runAgent(t, cfg, newDriver(t, t.TempDir()))
	g.waitBackends(t, 3)
	canary := membership.CanaryRequest{Replicas: 1, Weight: 5, Baseline: true}
	tags := func() membership.Tags { return ta.cluster.Tags() }

	ans := scaleAgent(t, g.cluster, cfg.Node, membership.ScaleRequest{Replicas: 2})
	require.NoError(t, ans.Err)
	err := sendCanary(t, g.cluster, cfg.Node, "predictor:1.1.0", canary)
	assert.EqualError(t, err, cfg.Node+" is changing its replica count to 2 (a scale): a canary waits until that is done")
	require.Eventually(t, func() bool { return tags().Fail != "" }, 10*time.Second, 20*time.Millisecond, "the scale-down given up")

	require.NoError(t, sendDeploy(t, g.cluster, cfg.Node, membership.DeployRequest{Rollout: "t", Image: "predictor:1.1.0"}))
	err = sendCanary(t, g.cluster, cfg.Node, "predictor:1.1.0", canary)
	assert.EqualError(t, err, cfg.Node+" is replacing its replicas with predictor:1.1.0 (a rollout): a canary waits until that is done")
	require.Eventually(t, func() bool { return tags().Fail != "" && tags().Want == "predictor:1.1.0" }, 10*time.Second,
		20*time.Millisecond, "the rollout given up")
	err = sendCanary(t, g.cluster, cfg.Node, "predictor:1.1.0", canary)
	assert.ErrorContains(t, err, cfg.Node+" gave up its deploy of predictor:1.1.0 (gateway silent-gw did not acknowledge")
	assert.ErrorContains(t, err, "its replicas run mixed images, no baseline for a canary")
	require.NoError(t, sendDeploy(t, g.cluster, cfg.Node, membership.DeployRequest{Rollout: "t", Image: "predictor:1.0.0"}))
	require.Eventually(t, func() bool { return tags().Fail == "" }, 10*time.Second, 20*time.Millisecond, "reverted")
	require.NoError(t, silent.Leave())

	// Ports: a port something else holds is skipped; the room ends at the
	// agent's maximum.
	busy, err := netListen(fmt.Sprintf("127.0.0.1:%d", cfg.BasePort+3))
	require.NoError(t, err)
	defer busy.Close()
	err = sendCanary(t, g.cluster, cfg.Node, "predictor:1.1.0", membership.CanaryRequest{Replicas: 2, Weight: 5, Baseline: true})
	assert.EqualError(t, err, fmt.Sprintf("%s has room for 2 canary replicas after its 3 (its maximum is 6; ports %d in use), "+
		"not the 4 of a canary of 2 and its baseline", cfg.Node, cfg.BasePort+3))
	err = sendCanary(t, g.cluster, cfg.Node, "predictor:9.9.9", canary)
	assert.ErrorContains(t, err, "predictor:9.9.9")
	assert.ErrorContains(t, err, runtime.ErrImageNotFound.Error())
	require.NoError(t, sendDeploy(t, g.cluster, cfg.Node, membership.DeployRequest{Rollout: "t", Image: "predictor:1.1.0",
		CheckOnly: true, Canary: &canary}), "a canary that fits, checked")
	assert.Nil(t, tags().Canary, "a check starts nothing")
	assert.Empty(t, ta.CanaryReplicas())

	require.NoError(t, sendCanary(t, g.cluster, cfg.Node, "predictor:1.1.0", canary))
	waitCanary(t, g.cluster, cfg.Node, &membership.Canary{Weight: 5, Image: "predictor:1.1.0",
		Ports: []uint16{cfg.BasePort + 4}, Baseline: []uint16{cfg.BasePort + 5}, Count: 1})
}

// TestCanaryReplicaSupervised: a canary replica that crashes is withdrawn
// and restarted like any replica; one that never passes its check is never
// announced and is retried with backoff, its arm short of the count in
// the tag, the weight announced all along.
func TestCanaryReplicaSupervised(t *testing.T) {
	testutil.BuildPredictorImages(t, imagesDir, "1.0.0", "1.1.0", "1.2.0-broken")
	g := startGateway(t)
	cfg := canaryConfig(t, g, 1, 3)
	cfg.StartTimeout = time.Second
	cfg.RestartBackoff, cfg.MaxRestartBackoff = 200*time.Millisecond, time.Second
	ta := runAgent(t, cfg, newDriver(t, t.TempDir()))
	g.waitBackends(t, 1)
	c, b := g.cluster, cfg.BasePort

	require.NoError(t, sendCanary(t, c, cfg.Node, "predictor:1.1.0", membership.CanaryRequest{Replicas: 1, Weight: 10, Baseline: true}))
	healthy := &membership.Canary{Weight: 10, Image: "predictor:1.1.0", Ports: []uint16{b + 1}, Baseline: []uint16{b + 2}, Count: 1}
	waitCanary(t, c, cfg.Node, healthy)
	victim := ta.CanaryReplicas()[0]
	require.NoError(t, syscall.Kill(victim.PID, syscall.SIGKILL))
	require.Eventually(t, func() bool {
		r := ta.CanaryReplicas()[0]
		return r.State == stateHealthy && r.PID != victim.PID && r.Restarts == 1
	}, 15*time.Second, 10*time.Millisecond, "canary replica replaced: %+v", ta.CanaryReplicas())
	waitCanary(t, c, cfg.Node, healthy)
	require.NoError(t, sendCanary(t, c, cfg.Node, "predictor:1.1.0", membership.CanaryRequest{}))
	waitCanary(t, c, cfg.Node, nil)

	require.NoError(t, sendCanary(t, c, cfg.Node, "predictor:1.2.0-broken", membership.CanaryRequest{Replicas: 1, Weight: 10, Baseline: true}))
	short := &membership.Canary{Weight: 10, Image: "predictor:1.2.0-broken", Baseline: []uint16{b + 2}, Count: 1}
	waitCanary(t, c, cfg.Node, short)
	require.Eventually(t, func() bool { return ta.CanaryReplicas()[0].Restarts >= 2 }, 15*time.Second, 20*time.Millisecond,
		"the broken replica retried: %+v", ta.CanaryReplicas())
	assert.NotEqual(t, stateHealthy, ta.CanaryReplicas()[0].State)
	assert.True(t, sameCanary(short, seenCanary(t, c, cfg.Node)), "never announced")
	require.NoError(t, sendCanary(t, c, cfg.Node, "predictor:1.2.0-broken", membership.CanaryRequest{}))
	waitCanary(t, c, cfg.Node, nil)
	assert.Empty(t, ta.CanaryReplicas())
	for _, port := range []uint16{b + 1, b + 2} {
		assert.NoError(t, runtime.CheckPortFree(cfg.HostIP, port), "nothing left on port %d", port)
	}
}

// TestCanaryNotKept: a canary's replicas left by an agent that crashed are
// stopped by the next one, which adopts its own replicas and announces no
// canary; an agent leaving stops its canary's replicas even when it keeps
// its own for the next one.
func TestCanaryNotKept(t *testing.T) {
	testutil.BuildPredictorImages(t, imagesDir, "1.0.0", "1.1.0")
	g := startGateway(t)
	cfg := canaryConfig(t, g, 2, 4)
	cfg.KeepReplicas = true
	stateDir := t.TempDir()

	// What a crashed agent left: its replicas and a canary's.
	d := newDriver(t, stateDir)
	left := map[runtime.Arm][]int{}
	for _, r := range []struct {
		arm   runtime.Arm
		index int
		image string
	}{{runtime.ArmStable, 0, "1.0.0"}, {runtime.ArmStable, 1, "1.0.0"}, {runtime.ArmCanary, 0, "1.1.0"}, {runtime.ArmBaseline, 0, "1.0.0"}} {
		port := cfg.BasePort + uint16(len(left[runtime.ArmStable])+len(left[runtime.ArmCanary])+len(left[runtime.ArmBaseline]))
		rep, err := d.Start(context.Background(), runtime.Spec{Service: cfg.Service, Node: cfg.Node, Arm: r.arm, Index: r.index,
			Image: runtime.Image{Name: "predictor", Tag: r.image}, HostIP: cfg.HostIP, Port: port})
		require.NoError(t, err)
		t.Cleanup(func() { _ = syscall.Kill(-rep.PID, syscall.SIGKILL) })
		left[r.arm] = append(left[r.arm], rep.PID)
	}
	ta := runAgent(t, cfg, newDriver(t, stateDir))
	g.waitBackends(t, 2)
	assert.Equal(t, left[runtime.ArmStable], pids(ta.Replicas()), "its own replicas adopted")
	for _, pid := range append(left[runtime.ArmCanary], left[runtime.ArmBaseline]...) {
		assert.False(t, alive(pid), "the canary's replica (pid %d) stopped", pid)
	}
	assert.Nil(t, seenCanary(t, g.cluster, cfg.Node), "no canary announced")
	assert.Empty(t, ta.CanaryReplicas())
	list, err := d.List(context.Background())
	require.NoError(t, err)
	assert.Len(t, list, 2, "only the agent's own replicas left: %+v", list)

	// Leaving with KeepReplicas: the canary's replicas stop, the agent's
	// own do not; the next agent adopts them and hosts no canary.
	require.NoError(t, sendCanary(t, g.cluster, cfg.Node, "predictor:1.1.0", membership.CanaryRequest{Replicas: 1, Weight: 5, Baseline: true}))
	waitCanary(t, g.cluster, cfg.Node, &membership.Canary{Weight: 5, Image: "predictor:1.1.0",
		Ports: []uint16{cfg.BasePort + 2}, Baseline: []uint16{cfg.BasePort + 3}, Count: 1})
	arms := ta.CanaryReplicas()
	ta.stop(t)
	for _, r := range arms {
		assert.False(t, alive(r.PID), "%s replica %d (pid %d) stopped on leaving", r.Arm, r.Index, r.PID)
	}
	for _, pid := range left[runtime.ArmStable] {
		assert.True(t, alive(pid), "replica (pid %d) kept for the next agent", pid)
	}
	ta = runAgent(t, cfg, newDriver(t, stateDir))
	g.waitBackends(t, 2)
	assert.Equal(t, left[runtime.ArmStable], pids(ta.Replicas()))
	assert.Nil(t, seenCanary(t, g.cluster, cfg.Node))
}
