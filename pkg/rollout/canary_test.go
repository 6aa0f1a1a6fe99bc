package rollout

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/canary"
	"github.com/herd-cluster/herd/pkg/membership"
)

// The canary phase, on step alone: an agent "a" hosts the canary (its tag
// is what the test says), the gateways' counts are what the test records.

// canaryRollout is a rollout of hosts a, b with a canary on a: steps 5 and
// 25, 10 s each, deadline 30 s.
func canaryRollout(baseline string) Rollout {
	r := fresh(v11, 2, 1)
	r.Options.Canary = &CanaryOptions{Steps: []int{5, 25}, StepTime: Duration(10 * time.Second),
		StepDeadline: Duration(30 * time.Second), Replicas: 1, Baseline: baseline,
		Criteria: canary.Criteria{MaxErrorRate: 0.01, MaxP99Ratio: 1.2, MinRequests: 200, Alpha: 0.01}}
	r.Canary = &CanaryStatus{Node: "a", Phase: CanaryStarting, Started: t0}
	return r
}

// withCanary is n hosting a canary of v11 at weight w: one canary and one
// baseline replica, both healthy when ready.
func withCanary(n membership.Node, w int, ready bool) membership.Node {
	c := &membership.Canary{Weight: w, Image: v11, Count: 1}
	if ready {
		c.Ports, c.Baseline = []uint16{8010}, []uint16{8011}
	}
	n.Tags.Canary = c
	return n
}

// arms records requests into cumulative per-arm counts, as a gateway does.
type arms struct{ stable, canary, baseline canary.Recorder }

func (a *arms) record(r *canary.Recorder, n int, latency time.Duration, errEvery int) {
	for i := range n {
		r.Record(latency+time.Duration(i%7)*time.Microsecond, errEvery > 0 && i%errEvery == 0)
	}
}

func (a *arms) counts() map[string]GatewayCounts {
	return map[string]GatewayCounts{"g1": {Stable: a.stable.Snapshot(), Canary: a.canary.Snapshot(), Baseline: a.baseline.Snapshot()}}
}

// run steps p with one observation.
func run(t *testing.T, p progress, at time.Duration, m map[string]membership.Node, counts map[string]GatewayCounts,
	mod func(*observation)) (progress, decision) {
	t.Helper()
	o := observation{now: t0.Add(at), members: m, counts: counts}
	if mod != nil {
		mod(&o)
	}
	return step(p, o)
}

func TestCanaryGoodVersionPassesEveryStepThenReplacesHosts(t *testing.T) {
	p := newProgress(canaryRollout(BaselineFresh), nil, time.Second)
	var g arms

	p, d := run(t, p, 0, members(on(v10), on(v10)), nil, nil)
	require.Equal(t, CanaryStarting, p.Canary.Phase)
	assert.Equal(t, []string{"a"}, d.deploy.nodes)
	assert.Equal(t, &membership.CanaryRequest{Replicas: 1, Weight: 0, Baseline: true}, d.deploy.canary)
	assert.Equal(t, "pending pending", hostStates(p), "no host is touched while the canary runs")

	// Ready: step 1 asks for 5 %; the measurement starts once the tag says 5.
	p, d = run(t, p, time.Second, members(withCanary(on(v10), 0, true), on(v10)), g.counts(),
		func(o *observation) { o.answers = took(d.deploy.key, "a") })
	require.Equal(t, CanaryMeasuring, p.Canary.Phase)
	assert.Equal(t, 5, p.Canary.Weight)
	assert.Equal(t, &membership.CanaryRequest{Replicas: 1, Weight: 5, Baseline: true}, d.deploy.canary)
	assert.True(t, p.Canary.StepStarted.IsZero())
	p, _ = run(t, p, 2*time.Second, members(withCanary(on(v10), 5, true), on(v10)), g.counts(),
		func(o *observation) { o.answers = took(d.deploy.key, "a") })
	assert.Equal(t, t0.Add(2*time.Second), p.Canary.StepStarted)

	// Enough good requests but the step time is not over: live pass, still step 1.
	g.record(&g.canary, 300, 2*time.Millisecond, 0)
	g.record(&g.baseline, 300, 2*time.Millisecond, 0)
	g.record(&g.stable, 5000, 2*time.Millisecond, 0)
	p, d = run(t, p, 5*time.Second, members(withCanary(on(v10), 5, true), on(v10)), g.counts(), nil)
	require.NotNil(t, p.Canary.Live)
	assert.Equal(t, canary.Pass, p.Canary.Live.Result)
	assert.Equal(t, 1, p.Canary.Step)
	assert.Equal(t, t0.Add(6*time.Second), d.wake, "judged again a second later")

	// Step time over: step 2 at 25 %.
	p, d = run(t, p, 12*time.Second, members(withCanary(on(v10), 5, true), on(v10)), g.counts(), nil)
	require.Len(t, p.Canary.Steps, 1)
	assert.Equal(t, 5, p.Canary.Steps[0].Weight)
	assert.Equal(t, uint64(300), p.Canary.Steps[0].Verdict.Figures.Canary.Requests)
	assert.Equal(t, 25, p.Canary.Weight)
	assert.Equal(t, 25, d.deploy.canary.Weight)

	// Step 2 counts from its own start: the 300 of step 1 do not count.
	p, _ = run(t, p, 13*time.Second, members(withCanary(on(v10), 25, true), on(v10)), g.counts(),
		func(o *observation) { o.answers = took(d.deploy.key, "a") })
	g.record(&g.canary, 100, 2*time.Millisecond, 0)
	g.record(&g.baseline, 100, 2*time.Millisecond, 0)
	p, _ = run(t, p, 23*time.Second, members(withCanary(on(v10), 25, true), on(v10)), g.counts(), nil)
	assert.Equal(t, canary.Inconclusive, p.Canary.Live.Result, "100 requests per arm are too few")
	g.record(&g.canary, 150, 2*time.Millisecond, 0)
	g.record(&g.baseline, 150, 2*time.Millisecond, 0)
	p, d = run(t, p, 24*time.Second, members(withCanary(on(v10), 25, true), on(v10)), g.counts(), nil)
	require.Equal(t, CanaryEnding, p.Canary.Phase)
	assert.Equal(t, &membership.CanaryRequest{}, d.deploy.canary, "the arms are removed")
	assert.Equal(t, []string{"a"}, d.deploy.nodes)

	// The tag is gone: the hosts are replaced, batch by batch, as without a canary.
	p, d = run(t, p, 25*time.Second, members(on(v10), on(v10)), nil, func(o *observation) { o.answers = took(d.deploy.key, "a") })
	assert.Equal(t, CanaryPassed, p.Canary.Phase)
	assert.Equal(t, StateRunning, p.State)
	assert.Equal(t, "replacing pending", hostStates(p))
	assert.Nil(t, d.deploy.canary)
	assert.Equal(t, v11, d.deploy.image)
	assert.Equal(t, []string{"a"}, d.deploy.nodes)
	require.Len(t, p.Canary.Steps, 2)
}

func TestCanaryBadVersionsFailAtTheFirstStep(t *testing.T) {
	cases := []struct {
		name    string
		record  func(g *arms)
		ready   bool // the canary's replica still healthy
		message string
	}{
		{name: "5 % errors", ready: true, message: "canary error rate 5",
			record: func(g *arms) {
				g.record(&g.canary, 400, 2*time.Millisecond, 20)
				g.record(&g.baseline, 400, 2*time.Millisecond, 0)
			}},
		{name: "50 ms slower", ready: true, message: "canary p99",
			record: func(g *arms) {
				g.record(&g.canary, 400, 52*time.Millisecond, 0)
				g.record(&g.baseline, 400, 2*time.Millisecond, 0)
			}},
		{name: "crashed", ready: false, message: "stopped being healthy (0 of 1 canary replicas, 1 of 1 baseline replicas announced)",
			record: func(g *arms) {
				g.record(&g.canary, 100, 2*time.Millisecond, 0)
				g.record(&g.baseline, 100, 2*time.Millisecond, 0)
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newProgress(canaryRollout(BaselineFresh), nil, time.Second)
			var g arms
			p, _ = run(t, p, 0, members(withCanary(on(v10), 0, true), on(v10)), g.counts(), nil)
			p, _ = run(t, p, time.Second, members(withCanary(on(v10), 5, true), on(v10)), g.counts(), nil)
			require.False(t, p.Canary.StepStarted.IsZero())
			tc.record(&g)
			tag := withCanary(on(v10), 5, true)
			if !tc.ready {
				tag.Tags.Canary.Ports = nil
			}
			p, d := run(t, p, 3*time.Second, members(tag, on(v10)), g.counts(), nil)
			require.Equal(t, CanaryEnding, p.Canary.Phase, "failed before the step time, at once")
			assert.Contains(t, p.Canary.Outcome, tc.message)
			assert.Equal(t, 0, d.deploy.canary.Replicas)
			assert.Equal(t, 0, p.Canary.Weight, "weight to 0")

			p, _ = run(t, p, 4*time.Second, members(on(v10), on(v10)), nil, nil)
			assert.Equal(t, StateFailed, p.State)
			assert.True(t, p.Reverted)
			assert.Contains(t, p.Message, "step 1 (5 %) failed")
			assert.Contains(t, p.Message, "canary removed, no host changed")
			assert.Equal(t, "pending pending", hostStates(p))
		})
	}
}

func TestCanaryNoTrafficFailsClosed(t *testing.T) {
	p := newProgress(canaryRollout(BaselineFresh), nil, time.Second)
	var g arms
	p, _ = run(t, p, 0, members(withCanary(on(v10), 0, true), on(v10)), g.counts(), nil)
	p, _ = run(t, p, time.Second, members(withCanary(on(v10), 5, true), on(v10)), g.counts(), nil)
	for at := 2 * time.Second; at < 31*time.Second; at += 5 * time.Second {
		p, _ = run(t, p, at, members(withCanary(on(v10), 5, true), on(v10)), g.counts(), nil)
		require.Equal(t, CanaryMeasuring, p.Canary.Phase, "at %s: no traffic is never a pass, and not yet a failure", at)
		assert.Equal(t, canary.Inconclusive, p.Canary.Live.Result)
	}
	p, _ = run(t, p, 31*time.Second, members(withCanary(on(v10), 5, true), on(v10)), g.counts(), nil)
	require.Equal(t, CanaryEnding, p.Canary.Phase)
	assert.Contains(t, p.Canary.Outcome, "failed closed: still inconclusive at its 30s deadline: too few requests to judge: canary 0, baseline 0")
	p, _ = run(t, p, 32*time.Second, members(on(v10), on(v10)), nil, nil)
	assert.Equal(t, StateFailed, p.State)
}

func TestCanaryStableBaselineAndPromoteAndAbort(t *testing.T) {
	t.Run("stable baseline: compared with the stable arm, no baseline replicas asked", func(t *testing.T) {
		p := newProgress(canaryRollout(BaselineStable), nil, time.Second)
		var g arms
		p, d := run(t, p, 0, members(on(v10), on(v10)), nil, nil)
		assert.False(t, d.deploy.canary.Baseline)
		tag := withCanary(on(v10), 5, true)
		tag.Tags.Canary.Baseline = nil
		p, _ = run(t, p, time.Second, members(tag, on(v10)), g.counts(), nil)
		g.record(&g.canary, 300, 2*time.Millisecond, 0)
		g.record(&g.stable, 3000, 2*time.Millisecond, 0)
		p, _ = run(t, p, 3*time.Second, members(tag, on(v10)), g.counts(), nil)
		assert.Equal(t, uint64(3000), p.Canary.Live.Figures.Baseline.Requests)
		assert.Equal(t, canary.Pass, p.Canary.Live.Result)
	})
	t.Run("promote: the arms are removed and the hosts replaced", func(t *testing.T) {
		p := newProgress(canaryRollout(BaselineFresh), nil, time.Second)
		p, _ = run(t, p, 0, members(withCanary(on(v10), 0, true), on(v10)), nil, nil)
		p, _ = run(t, p, time.Second, members(withCanary(on(v10), 5, true), on(v10)), nil, func(o *observation) { o.promote = true })
		require.Equal(t, CanaryEnding, p.Canary.Phase)
		p, d := run(t, p, 2*time.Second, members(on(v10), on(v10)), nil, func(o *observation) { o.promote = true })
		assert.Equal(t, CanaryPromoted, p.Canary.Phase)
		assert.Equal(t, v11, d.deploy.image)
		assert.Equal(t, "replacing pending", hostStates(p))
	})
	t.Run("abort: the arms are removed and the rollout ends aborted", func(t *testing.T) {
		p := newProgress(canaryRollout(BaselineFresh), nil, time.Second)
		p, _ = run(t, p, 0, members(withCanary(on(v10), 0, true), on(v10)), nil, nil)
		p, _ = run(t, p, time.Second, members(withCanary(on(v10), 5, true), on(v10)), nil, func(o *observation) { o.abort = true })
		require.Equal(t, CanaryEnding, p.Canary.Phase)
		p, d := run(t, p, 2*time.Second, members(on(v10), on(v10)), nil, func(o *observation) { o.abort = true })
		assert.Equal(t, StateAborted, p.State)
		assert.Empty(t, d.deploy.nodes)
	})
	t.Run("the canary's replicas never become healthy: failed at the deadline", func(t *testing.T) {
		r := canaryRollout(BaselineFresh)
		p := newProgress(r, nil, time.Second)
		p, _ = run(t, p, 0, members(withCanary(on(v10), 0, false), on(v10)), nil, nil)
		p, _ = run(t, p, 10*time.Second, members(withCanary(on(v10), 0, false), on(v10)), nil, nil)
		require.Equal(t, CanaryEnding, p.Canary.Phase)
		assert.Contains(t, p.Canary.Outcome, "canary replicas on a not healthy on predictor:1.1.0 within 10s")
	})
}

func TestCanaryOptionsValidate(t *testing.T) {
	good := CanaryOptions{Steps: []int{5, 25, 50}}
	good.defaults()
	require.NoError(t, good.Validate())
	for name, mod := range map[string]func(*CanaryOptions){
		"descending":     func(c *CanaryOptions) { c.Steps = []int{25, 5} },
		"equal":          func(c *CanaryOptions) { c.Steps = []int{5, 5} },
		"zero step":      func(c *CanaryOptions) { c.Steps = []int{0, 5} },
		"100":            func(c *CanaryOptions) { c.Steps = []int{5, 100} },
		"step time":      func(c *CanaryOptions) { c.StepTime = -1 },
		"deadline":       func(c *CanaryOptions) { c.StepDeadline = c.StepTime - 1 },
		"replicas":       func(c *CanaryOptions) { c.Replicas = 17 },
		"baseline":       func(c *CanaryOptions) { c.Baseline = "yesterday" },
		"error rate":     func(c *CanaryOptions) { c.Criteria.MaxErrorRate = 2 },
		"ratio":          func(c *CanaryOptions) { c.Criteria.MaxP99Ratio = 0.5 },
		"min requests":   func(c *CanaryOptions) { c.Criteria.MinRequests = 10 },
		"alpha too high": func(c *CanaryOptions) { c.Criteria.Alpha = 0.5 },
	} {
		c := good
		c.Steps = append([]int(nil), good.Steps...)
		mod(&c)
		assert.Error(t, c.Validate(), name)
	}
}

// hostStates are the rollout's host states in order: "replacing pending".
func hostStates(p progress) string {
	s := ""
	for i, h := range p.Hosts {
		if i > 0 {
			s += " "
		}
		s += string(h.State)
	}
	return s
}

// steadyTraffic is a Measure whose arms get n good requests of 2 ms at every
// read, as steady traffic through one gateway would.
func steadyTraffic(n int) Measure {
	var mu sync.Mutex
	var g arms
	return func(string) map[string]GatewayCounts {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range []*canary.Recorder{&g.stable, &g.canary, &g.baseline} {
			g.record(r, n, 2*time.Millisecond, 0)
		}
		return g.counts()
	}
}

func canaryOpts(steps ...int) Options {
	o := opts("predictor:1.1.0", 1, 100*time.Millisecond, 10*time.Second)
	o.Canary = &CanaryOptions{Steps: steps, StepTime: Duration(300 * time.Millisecond),
		Criteria: canary.Criteria{MinRequests: 50}}
	return o
}

func TestCanaryRefused(t *testing.T) {
	tc := startCluster(t, 1, 50*time.Millisecond)
	ctx := context.Background()

	c := tc.coordinator(t, "")
	_, err := c.Start(ctx, canaryOpts(10))
	require.ErrorIs(t, err, ErrRefused)
	assert.Contains(t, err.Error(), "cannot measure a canary")

	tc.agents[0].setTags(func(t *membership.Tags) { t.Ports, t.Count = t.Ports[:1], 1 })
	require.Eventually(t, func() bool { return tc.gw.Members()[1].Tags.Count == 1 || tc.gw.Members()[0].Tags.Count == 1 },
		5*time.Second, 10*time.Millisecond)
	c = tc.coordinatorWith(t, Config{Measure: steadyTraffic(100)})
	_, err = c.Start(ctx, canaryOpts(10))
	require.ErrorIs(t, err, ErrRefused)
	assert.Contains(t, err.Error(), "a canary needs at least 2 replicas in service \"predictor\" (it has 1)")
	bad := canaryOpts(20, 10)
	_, err = c.Start(ctx, bad)
	require.ErrorIs(t, err, ErrRefused)
	assert.Contains(t, err.Error(), "ascending")
	assert.Empty(t, tc.agents[0].deployed(), "a refused canary sends nothing")
	_, err = c.Promote()
	assert.ErrorIs(t, err, ErrNoCanary)
}

// TestCanaryResumesAfterRestart: a coordinator closed mid-canary (as a
// gateway process exit) and started again from its state file resumes the
// canary: the step in progress is measured afresh, the rest follows.
func TestCanaryResumesAfterRestart(t *testing.T) {
	tc := startCluster(t, 2, 50*time.Millisecond)
	state := filepath.Join(t.TempDir(), "rollouts.json")
	c := tc.coordinatorWith(t, Config{StatePath: state, Measure: steadyTraffic(100)})
	started, err := c.Start(context.Background(), canaryOpts(10, 20))
	require.NoError(t, err)
	require.Equal(t, "a", started.Canary.Node)
	require.Eventually(t, func() bool {
		r, _ := c.Get("current")
		return r.Canary.Phase == CanaryMeasuring && !r.Canary.StepStarted.IsZero()
	}, 10*time.Second, 5*time.Millisecond)
	c.Close()

	c = tc.coordinatorWith(t, Config{StatePath: state, Measure: steadyTraffic(100)})
	r := wait(t, c, 20*time.Second)
	require.Equal(t, StateSucceeded, r.State, "%s; a got %+v, b got %+v; b's tags %+v", r.Message, tc.agents[0].deployed(),
		tc.agents[1].deployed(), tc.agents[1].tags)
	assert.Equal(t, CanaryPassed, r.Canary.Phase)
	require.Len(t, r.Canary.Steps, 2)
	assert.Equal(t, []int{10, 20}, []int{r.Canary.Steps[0].Weight, r.Canary.Steps[1].Weight})
	for _, a := range tc.agents {
		assert.Equal(t, "predictor:1.1.0", a.image(), a.name)
		assert.Nil(t, a.tags.Canary, "the canary is gone from %s", a.name)
	}
	assert.Equal(t, []string{"predictor:1.1.0"}, tc.agents[0].deployed(), "a's replicas replaced once, after the canary")
	h := c.History()
	require.NotEmpty(t, h)
	assert.Len(t, h[0].Canary.Steps, 2, "the history keeps each step's figures")
}
