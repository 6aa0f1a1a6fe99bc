package rollout

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/membership"
	"github.com/herd-cluster/herd/pkg/membership/membershiptest"
)

// These tests drive the coordinator through a real Serf cluster on loopback.
// The agents are small stand-ins that keep the agent's side of the deploy
// contract (answer herd-deploy, show progress in the tags) without running
// replicas, so each rule of the coordinator can be timed exactly; the real
// agents are exercised in test/e2e.

// simAgent is a Serf member with role agent that answers deploy queries.
type simAgent struct {
	*membership.Cluster
	name string
	// has lists the images it can run; broken ones never become healthy.
	has, broken map[string]bool
	// converge is how long taking a new image takes.
	converge time.Duration

	mu       sync.Mutex
	tags     membership.Tags
	deploys  []membership.DeployRequest // non-check requests, in order
	checks   int
	stopping chan struct{}
}

func startSimAgent(t *testing.T, name, join string, converge time.Duration) *simAgent {
	t.Helper()
	return startSimAgentOn(t, name, "127.0.0.1:0", join, converge)
}

func startSimAgentOn(t *testing.T, name, bind, join string, converge time.Duration) *simAgent {
	t.Helper()
	a := &simAgent{
		name: name, converge: converge, stopping: make(chan struct{}),
		has:    map[string]bool{"predictor:1.0.0": true, "predictor:1.1.0": true, "predictor:1.1.0-broken": true},
		broken: map[string]bool{"predictor:1.1.0-broken": true},
		tags: membership.Tags{
			Role: membership.RoleAgent, Service: "predictor", Image: "predictor:1.0.0", Want: "predictor:1.0.0",
			HostIP: netip.MustParseAddr("127.0.0.2"), Ports: []uint16{8000, 8001}, Count: 2, Gen: 1,
			State: membership.StateActive,
		},
	}
	cfg := membership.DefaultConfig()
	cfg.NodeName, cfg.BindAddr, cfg.Profile = name, bind, membership.ProfileLocal
	cfg.Tags = a.tags
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Warn})
	a.Cluster = membershiptest.Start(t, cfg, join, a.answer)
	t.Cleanup(func() { close(a.stopping) }) // before the member stops: cleanups run last first
	return a
}

func (a *simAgent) answer(q *membership.Query) {
	req, err := membership.DecodeDeployRequest(q.Payload())
	var resp membership.DeployResponse
	a.mu.Lock()
	has := a.has[req.Image]
	a.mu.Unlock()
	switch {
	case err != nil:
		resp.Error = err.Error()
	case !has:
		resp.Error = a.name + ": image not found: " + req.Image
	case req.CheckOnly:
		a.mu.Lock()
		a.checks++
		a.mu.Unlock()
	case req.Canary != nil: // the arms are up at once, on 9000 and 9001
		c := req.Canary
		a.setTags(func(t *membership.Tags) {
			t.Canary = nil
			if c.Replicas > 0 {
				t.Canary = &membership.Canary{Weight: c.Weight, Image: req.Image, Ports: []uint16{9000}, Count: 1}
				if c.Baseline {
					t.Canary.Baseline = []uint16{9001}
				}
			}
		})
	default:
		a.mu.Lock()
		a.deploys = append(a.deploys, req)
		changed := a.tags.Want != req.Image
		a.mu.Unlock()
		if changed {
			a.setTags(func(t *membership.Tags) { t.Want, t.Ports = req.Image, t.Ports[:1] })
			go a.finish(req.Image)
		}
	}
	b, _ := json.Marshal(resp)
	_ = q.Respond(b)
}

// finish completes a convergence after a.converge unless the image is broken
// or another image is wanted by then.
func (a *simAgent) finish(image string) {
	select {
	case <-a.stopping:
		return
	case <-time.After(a.converge):
	}
	a.mu.Lock()
	broken := a.broken[image]
	a.mu.Unlock()
	if broken {
		return
	}
	a.setTags(func(t *membership.Tags) {
		if t.Want == image {
			t.Image, t.Ports = image, []uint16{8000, 8001}
		}
	})
}

func (a *simAgent) setTags(fn func(*membership.Tags)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fn(&a.tags)
	a.tags.Gen++
	t := a.tags
	t.Ports = append([]uint16(nil), t.Ports...)
	_ = a.SetTags(t)
}

func (a *simAgent) deployed() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, d := range a.deploys {
		out = append(out, d.Image)
	}
	return out
}

func (a *simAgent) image() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.tags.Image
}

type testCluster struct {
	gw      *membership.Cluster
	changes *changes
	agents  []*simAgent
}

// changes closes and replaces a channel on every membership event the
// gateway member receives, as pkg/gateway's Gateway.Changed does.
type changes struct {
	mu sync.Mutex
	ch chan struct{}
}

func watchChanges(t *testing.T, events <-chan membership.Event) *changes {
	t.Helper()
	c := &changes{ch: make(chan struct{})}
	stop := make(chan struct{})
	done := make(chan struct{})
	t.Cleanup(func() { close(stop); <-done })
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-events:
				c.mu.Lock()
				close(c.ch)
				c.ch = make(chan struct{})
				c.mu.Unlock()
			}
		}
	}()
	return c
}

// Changed is the coordinator's Config.MembersChanged.
func (c *changes) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ch
}

// startCluster starts a gateway member and n simulated agents (a, b, c, …)
// and waits until the gateway sees them all.
func startCluster(t *testing.T, n int, converge time.Duration) *testCluster {
	t.Helper()
	cfg := membership.DefaultConfig()
	cfg.NodeName, cfg.BindAddr, cfg.Profile = "gw", "127.0.0.1:0", membership.ProfileLocal
	cfg.Tags = membership.Tags{Role: membership.RoleGateway, Gen: 1}
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "gw", Level: hclog.Warn})
	events := make(chan membership.Event, 64)
	cfg.EventCh = events
	gw, err := membership.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = gw.Shutdown() })
	tc := &testCluster{gw: gw, changes: watchChanges(t, events)}
	for i := range n {
		tc.agents = append(tc.agents, startSimAgent(t, string(rune('a'+i)), gw.LocalNode().Addr.String(), converge))
	}
	require.Eventually(t, func() bool { return len(gw.Members()) == n+1 }, 10*time.Second, 10*time.Millisecond)
	return tc
}

func (tc *testCluster) coordinator(t *testing.T, statePath string) *Coordinator {
	t.Helper()
	return tc.coordinatorWith(t, Config{StatePath: statePath})
}

// coordinatorWith starts a coordinator of the cluster with cfg's settings
// (Members, MembersChanged, Service, QueryTimeout and Logger filled in).
func (tc *testCluster) coordinatorWith(t *testing.T, cfg Config) *Coordinator {
	t.Helper()
	cfg.Members, cfg.MembersChanged, cfg.Service, cfg.QueryTimeout = tc.gw, tc.changes.Changed, "predictor", 2*time.Second
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Warn})
	c, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

// wait waits for the rollout to end and returns it.
func wait(t *testing.T, c *Coordinator, within time.Duration) Rollout {
	t.Helper()
	var r Rollout
	require.Eventually(t, func() bool {
		var err error
		r, err = c.Get("current")
		return err == nil && r.Done()
	}, within, 10*time.Millisecond)
	return r
}

func opts(image string, batch int, minHealthy, deadline time.Duration) Options {
	return Options{Image: image, Batch: batch, MinHealthy: Duration(minHealthy), Deadline: Duration(deadline)}
}

func TestRolloutBatchesWaitOutMinHealthy(t *testing.T) {
	tc := startCluster(t, 4, 100*time.Millisecond)
	c := tc.coordinator(t, "")
	ctx := context.Background()

	started, err := c.Start(ctx, opts("predictor:1.1.0", 2, 300*time.Millisecond, 10*time.Second))
	require.NoError(t, err)
	assert.Equal(t, "predictor:1.0.0", started.Previous)
	assert.Equal(t, []int{1, 1, 2, 2}, []int{started.Hosts[0].Batch, started.Hosts[1].Batch, started.Hosts[2].Batch, started.Hosts[3].Batch})

	r := wait(t, c, 20*time.Second)
	require.Equal(t, StateSucceeded, r.State, r.Message)
	for _, a := range tc.agents {
		assert.Equal(t, "predictor:1.1.0", a.image(), a.name)
		assert.Equal(t, []string{"predictor:1.1.0"}, a.deployed(), "%s got its one deploy request", a.name)
	}
	// Rule 3: batch 2 started only after every host of batch 1 had been
	// healthy for MinHealthy.
	for _, h1 := range r.Hosts[:2] {
		for _, h2 := range r.Hosts[2:] {
			assert.False(t, h2.Started.Before(h1.HealthySince.Add(300*time.Millisecond)),
				"%s started at %s, %s healthy since %s", h2.Node, h2.Started, h1.Node, h1.HealthySince)
		}
	}
	for _, h := range r.Hosts {
		assert.Equal(t, HostHealthy, h.State)
	}
	assert.Equal(t, "4 hosts on predictor:1.1.0", r.Message)
}

func TestRolloutRefusedChangesNothing(t *testing.T) {
	tc := startCluster(t, 2, 50*time.Millisecond)
	tc.agents[0].mu.Lock()
	tc.agents[0].has["predictor:2.0.0"] = true // b does not have it
	tc.agents[0].mu.Unlock()
	c := tc.coordinator(t, "")
	ctx := context.Background()

	_, err := c.Start(ctx, opts("predictor:2.0.0", 1, 0, time.Second))
	require.ErrorIs(t, err, ErrRefused)
	assert.Contains(t, err.Error(), "b: image not found: predictor:2.0.0")
	_, err = c.Start(ctx, opts("predictor", 1, 0, time.Second))
	require.ErrorIs(t, err, ErrRefused)
	assert.Contains(t, err.Error(), "name:tag")
	_, err = c.Start(ctx, opts("predictor:1.1.0", -1, 0, time.Second))
	require.ErrorIs(t, err, ErrRefused)
	_, err = c.Rollback(ctx, Options{})
	require.ErrorIs(t, err, ErrRefused)
	assert.Contains(t, err.Error(), "no earlier rollout")

	for _, a := range tc.agents {
		assert.Empty(t, a.deployed(), "a refused rollout sends nothing but checks")
	}
	assert.Empty(t, c.History())
	_, err = c.Get("current")
	assert.ErrorIs(t, err, ErrNotFound)
}

// crash stops agent i without a leave message and waits until the gateway
// marks it failed; it returns the gossip address it had.
func (tc *testCluster) crash(t *testing.T, i int) string {
	t.Helper()
	a := tc.agents[i]
	addr := a.LocalNode().Addr.String()
	require.NoError(t, a.Shutdown())
	require.Eventually(t, func() bool {
		n, _ := tc.gw.Member(a.name)
		return n.Status == membership.StatusFailed
	}, 15*time.Second, 20*time.Millisecond, "%s marked failed", a.name)
	return addr
}

func TestRolloutWaitsForFailedAgent(t *testing.T) {
	tc := startCluster(t, 3, 50*time.Millisecond)
	addr := tc.crash(t, 2)
	c := tc.coordinatorWith(t, Config{FailedGrace: 20 * time.Second})

	// A busy host that missed its probes comes back within the grace: the
	// rollout waits for it and includes it.
	back := make(chan *simAgent, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		back <- startSimAgentOn(t, "c", addr, tc.gw.LocalNode().Addr.String(), 50*time.Millisecond)
	}()
	started, err := c.Start(context.Background(), opts("predictor:1.1.0", 1, time.Millisecond, 10*time.Second))
	require.NoError(t, err)
	require.Len(t, started.Hosts, 3, "c is part of the rollout")
	assert.Equal(t, "c", started.Hosts[2].Node)
	r := wait(t, c, 20*time.Second)
	require.Equal(t, StateSucceeded, r.State, r.Message)
	assert.Equal(t, "predictor:1.1.0", (<-back).image())
}

func TestRolloutRefusedWhileAgentFailed(t *testing.T) {
	tc := startCluster(t, 3, 50*time.Millisecond)
	tc.crash(t, 2)
	c := tc.coordinatorWith(t, Config{FailedGrace: 300 * time.Millisecond})

	began := time.Now()
	_, err := c.Start(context.Background(), opts("predictor:1.1.0", 1, time.Millisecond, 10*time.Second))
	require.ErrorIs(t, err, ErrRefused)
	assert.GreaterOrEqual(t, time.Since(began), 300*time.Millisecond, "it waited for c to come back")
	assert.Contains(t, err.Error(), "c is failed and did not come back within 300ms")
	var failed *FailedAgentsError
	require.ErrorAs(t, err, &failed)
	assert.Equal(t, []string{"c"}, failed.Nodes, "the API and the CLI can name what to force-leave")
	for _, a := range tc.agents[:2] {
		assert.Empty(t, a.deployed(), "%s: a refused rollout sends nothing", a.name)
	}

	// Removed for good, c no longer holds rollouts back.
	require.NoError(t, tc.gw.ForceLeave("c"))
	started, err := c.Start(context.Background(), opts("predictor:1.1.0", 1, time.Millisecond, 10*time.Second))
	require.NoError(t, err)
	assert.Len(t, started.Hosts, 2)
	r := wait(t, c, 20*time.Second)
	require.Equal(t, StateSucceeded, r.State, r.Message)
}

func TestRolloutBrokenBatchReverted(t *testing.T) {
	tc := startCluster(t, 3, 50*time.Millisecond)
	c := tc.coordinator(t, "")

	_, err := c.Start(context.Background(), opts("predictor:1.1.0-broken", 1, 100*time.Millisecond, 500*time.Millisecond))
	require.NoError(t, err)
	r := wait(t, c, 10*time.Second)
	assert.Equal(t, StateFailed, r.State)
	assert.True(t, r.Reverted)
	assert.Equal(t, "a not healthy on predictor:1.1.0-broken within 500ms; batch reverted to predictor:1.0.0", r.Message)
	assert.Equal(t, []HostState{HostReverted, HostPending, HostPending}, []HostState{r.Hosts[0].State, r.Hosts[1].State, r.Hosts[2].State})
	assert.Equal(t, []string{"predictor:1.1.0-broken", "predictor:1.0.0"}, tc.agents[0].deployed())
	assert.Empty(t, tc.agents[1].deployed(), "later batches are never touched")
	assert.Equal(t, "predictor:1.0.0", tc.agents[0].image())
}

func TestRolloutNoAutoRevertLeavesBatch(t *testing.T) {
	tc := startCluster(t, 2, 50*time.Millisecond)
	c := tc.coordinator(t, "")
	o := opts("predictor:1.1.0-broken", 1, 0, 300*time.Millisecond)
	o.NoAutoRevert = true
	_, err := c.Start(context.Background(), o)
	require.NoError(t, err)
	r := wait(t, c, 10*time.Second)
	assert.Equal(t, StateFailed, r.State)
	assert.False(t, r.Reverted)
	assert.Equal(t, HostFailed, r.Hosts[0].State)
	assert.Equal(t, []string{"predictor:1.1.0-broken"}, tc.agents[0].deployed(), "no revert request")
}

func TestRolloutBusyAbortAndRollback(t *testing.T) {
	tc := startCluster(t, 2, 200*time.Millisecond)
	c := tc.coordinator(t, "")
	ctx := context.Background()

	first, err := c.Start(ctx, opts("predictor:1.1.0", 1, time.Hour, time.Minute)) // never finishes by itself
	require.NoError(t, err)
	_, err = c.Start(ctx, opts("predictor:1.0.0", 1, 0, time.Second))
	require.ErrorIs(t, err, ErrBusy)
	assert.Contains(t, err.Error(), first.ID)
	assert.Contains(t, err.Error(), "predictor:1.1.0")

	require.Eventually(t, func() bool { return tc.agents[0].image() == "predictor:1.1.0" }, 5*time.Second, 10*time.Millisecond)
	r, err := c.Abort()
	require.NoError(t, err)
	assert.Equal(t, StateAborted, r.State)
	assert.True(t, r.Reverted, r.Message)
	assert.Equal(t, "predictor:1.0.0", tc.agents[0].image(), "the batch in progress went back")
	assert.Empty(t, tc.agents[1].deployed())
	_, err = c.Abort()
	assert.Error(t, err, "nothing to abort")

	// A completed rollout, then a rollback to the image before it.
	_, err = c.Start(ctx, opts("predictor:1.1.0", 2, 0, 10*time.Second))
	require.NoError(t, err)
	require.Equal(t, StateSucceeded, wait(t, c, 10*time.Second).State)
	back, err := c.Rollback(ctx, Options{MinHealthy: Duration(time.Millisecond)})
	require.NoError(t, err)
	assert.Equal(t, "predictor:1.0.0", back.Image)
	assert.Equal(t, "predictor:1.1.0", back.Previous)
	require.Equal(t, StateSucceeded, wait(t, c, 10*time.Second).State)
	for _, a := range tc.agents {
		assert.Equal(t, "predictor:1.0.0", a.image())
	}
	hist := c.History()
	require.Len(t, hist, 3)
	assert.Equal(t, []State{StateSucceeded, StateSucceeded, StateAborted}, []State{hist[0].State, hist[1].State, hist[2].State})
	got, err := c.Get(hist[2].ID)
	require.NoError(t, err)
	assert.Equal(t, first.ID, got.ID)
}

// TestRolloutResumesAfterRestart: the state file keeps a running rollout;
// a new coordinator shows it where it stood and resumes it.
func TestRolloutResumesAfterRestart(t *testing.T) {
	tc := startCluster(t, 2, 50*time.Millisecond)
	path := filepath.Join(t.TempDir(), "rollouts.json")
	c := tc.coordinator(t, path)
	r, err := c.Start(context.Background(), opts("predictor:1.1.0", 1, 500*time.Millisecond, 10*time.Second))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		cur, _ := c.Get(r.ID)
		return cur.Hosts[0].State == HostVerifying
	}, 5*time.Second, 10*time.Millisecond)
	c.Close()
	c.Close() // twice is fine

	// The history file names the rollout as running, as it started; the
	// progress file beside it says where it stood.
	var saved stateFile
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &saved))
	require.NotNil(t, saved.Current)
	assert.Equal(t, StateRunning, saved.Current.State)
	var progress progressFile
	b, err = os.ReadFile(filepath.Join(filepath.Dir(path), "rollouts.progress.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &progress))
	assert.Equal(t, r.ID, progress.Rollout.ID)
	assert.Equal(t, StateRunning, progress.Rollout.State)
	assert.Equal(t, HostVerifying, progress.Rollout.Hosts[0].State)
	assert.Equal(t, HostPending, progress.Rollout.Hosts[1].State)

	c2 := tc.coordinator(t, path)
	done := wait(t, c2, 10*time.Second)
	assert.Equal(t, r.ID, done.ID)
	assert.Equal(t, StateSucceeded, done.State)
	for _, img := range tc.agents[0].deployed() {
		assert.Equal(t, "predictor:1.1.0", img, "a resumed rollout re-sends the same image, never another")
	}
	for _, a := range tc.agents {
		assert.Equal(t, "predictor:1.1.0", a.image())
	}
}

func TestCorruptStateFileNamed(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rollouts.json")
	require.NoError(t, os.WriteFile(path, []byte(`{"current": {"id": "x", "hosts": [`), 0o600))
	_, err := New(Config{StatePath: path, Members: noMembers{}, MembersChanged: never})
	require.Error(t, err)
	assert.Contains(t, err.Error(), path)
	assert.Contains(t, err.Error(), "corrupt")
	assert.Contains(t, err.Error(), "move it away to start with no history")
	b, _ := os.ReadFile(path)
	assert.Equal(t, `{"current": {"id": "x", "hosts": [`, string(b), "the file is left for the operator")

	// A running rollout's progress file that does not parse is named too.
	running := `{"current":{"id":"r1","image":"predictor:1.1.0","batch":1,"min_healthy":"1s","deadline":"10s",` +
		`"state":"running","hosts":[{"node":"a","state":"pending","batch":1}]}}`
	require.NoError(t, os.WriteFile(path, []byte(running), 0o600))
	progress := filepath.Join(dir, "rollouts.progress.json")
	require.NoError(t, os.WriteFile(progress, []byte(`{"rollout":`), 0o600))
	_, err = New(Config{StatePath: path, Members: noMembers{}, MembersChanged: never})
	require.Error(t, err)
	assert.Contains(t, err.Error(), progress)
	assert.Contains(t, err.Error(), "move it away to resume the running rollout from its start")

	// So is a running rollout in a state that cannot be resumed.
	require.NoError(t, os.WriteFile(progress, []byte(`{"rollout":{"id":"r1","image":"predictor:1.1.0","batch":1,`+
		`"min_healthy":"1s","deadline":"10s","state":"running","hosts":[{"node":"a","state":"reverted","batch":1}]}}`), 0o600))
	_, err = New(Config{StatePath: path, Members: noMembers{}, MembersChanged: never})
	require.Error(t, err)
	assert.Contains(t, err.Error(), progress)
	assert.Contains(t, err.Error(), `host "a" in state "reverted"`)
}
