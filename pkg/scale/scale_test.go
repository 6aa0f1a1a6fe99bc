package scale

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/membership"
	"github.com/herd-cluster/herd/pkg/membership/membershiptest"
)

// These tests drive the Scaler through a real Serf cluster on loopback. The
// agents are stand-ins that keep the agent's side of the herd-scale
// contract (answer with their count and room, take a count) without
// running replicas; the real agents are exercised in pkg/agent and
// test/e2e.

// simAgent is a Serf member with role agent that answers scale queries.
type simAgent struct {
	*membership.Cluster
	name string

	mu       sync.Mutex
	count    int
	room     int
	refuse   string // a refusal to every request, checks included
	mute     bool   // answers checks but not the scale itself
	deaf     bool   // answers nothing
	requests []membership.ScaleRequest
}

func quiet(name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Warn})
}

func startSimAgent(t *testing.T, name, service, join string, count, room int) *simAgent {
	t.Helper()
	a := &simAgent{name: name, count: count, room: room}
	cfg := membership.DefaultConfig()
	cfg.NodeName, cfg.BindAddr, cfg.Profile = name, "127.0.0.1:0", membership.ProfileLocal
	cfg.Tags = membership.Tags{Role: membership.RoleAgent, Service: service, Image: "predictor:1.0.0",
		HostIP: netip.MustParseAddr("127.0.0.2"), Count: count, Gen: 1, State: membership.StateActive}
	cfg.Logger = quiet(name)
	a.Cluster = membershiptest.Start(t, cfg, join, a.answer)
	return a
}

func (a *simAgent) answer(q *membership.Query) {
	req, err := membership.DecodeScaleRequest(q.Payload())
	if err != nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.deaf {
		return
	}
	resp := membership.ScaleResponse{Replicas: a.count, Room: a.room, Limit: "its maximum is set"}
	switch {
	case a.refuse != "":
		resp.Error = a.refuse
	case req.Check:
	case a.mute:
		return
	case req.Replicas > a.room:
		resp.Error = a.name + " has no room"
	default:
		a.requests = append(a.requests, req)
		a.count = req.Replicas
	}
	b, _ := membership.EncodeScaleResponse(resp)
	_ = q.Respond(b)
}

func (a *simAgent) asked() []int {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []int
	for _, r := range a.requests {
		out = append(out, r.Replicas)
	}
	return out
}

func (a *simAgent) reasons() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, r := range a.requests {
		out = append(out, r.Reason)
	}
	return out
}

// rollouts stands for the gateway's rollouts: a running rollout by
// service, and a channel by service closed when that service's changes.
type rollouts struct {
	mu      sync.Mutex
	running map[string]string
	ch      map[string]chan struct{}
}

func (r *rollouts) Rollout(service string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running[service]
}

func (r *rollouts) Changed(service string) <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ch[service] == nil {
		r.ch[service] = make(chan struct{})
	}
	return r.ch[service]
}

func (r *rollouts) set(service, desc string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running[service] = desc
	if ch := r.ch[service]; ch != nil {
		close(ch)
		delete(r.ch, service)
	}
}

type testCluster struct {
	gw       *membership.Cluster
	agents   map[string]*simAgent
	rollouts *rollouts
	scaler   *Scaler
}

// startCluster starts a gateway member, the scaler on it, and agents
// host-1 … host-n of predictor with 4 replicas and room for 10 each.
func startCluster(t *testing.T, n int) *testCluster {
	t.Helper()
	cfg := membership.DefaultConfig()
	cfg.NodeName, cfg.BindAddr, cfg.Profile = "gw", "127.0.0.1:0", membership.ProfileLocal
	cfg.Tags, cfg.Logger = membership.Tags{Role: membership.RoleGateway, Gen: 1}, quiet("gw")
	gw, err := membership.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = gw.Shutdown() })
	tc := &testCluster{gw: gw, agents: map[string]*simAgent{},
		rollouts: &rollouts{running: map[string]string{}, ch: map[string]chan struct{}{}}}
	for i := range n {
		name := "host-" + string(rune('1'+i))
		tc.agents[name] = startSimAgent(t, name, "predictor", gw.LocalNode().Addr.String(), 4, 10)
	}
	require.Eventually(t, func() bool { return len(gw.Members()) == n+1 }, 10*time.Second, 10*time.Millisecond)
	tc.scaler, err = New(Config{Members: gw, Rollout: tc.rollouts.Rollout, RolloutChanged: tc.rollouts.Changed,
		Node: "gw", QueryTimeout: 500 * time.Millisecond, Logger: quiet("scale")})
	require.NoError(t, err)
	t.Cleanup(tc.scaler.Close)
	return tc
}

func TestScaleSpreadsOverTheAgents(t *testing.T) {
	tc := startCluster(t, 3)
	ctx := context.Background()
	res, err := tc.scaler.Scale(ctx, Request{Service: "predictor", Replicas: 24, Reason: "test"})
	require.NoError(t, err)
	assert.Equal(t, []AgentResult{{Node: "host-1", Previous: 4, Replicas: 8}, {Node: "host-2", Previous: 4, Replicas: 8},
		{Node: "host-3", Previous: 4, Replicas: 8}}, res.Agents)
	assert.Empty(t, res.Failed())
	for _, a := range tc.agents {
		assert.Equal(t, []int{8}, a.asked(), a.name)
		assert.Equal(t, []string{"test via gw"}, a.reasons())
	}

	res, err = tc.scaler.Scale(ctx, Request{Service: "predictor", Replicas: 7})
	require.NoError(t, err)
	assert.Equal(t, []AgentResult{{Node: "host-1", Previous: 8, Replicas: 3}, {Node: "host-2", Previous: 8, Replicas: 2},
		{Node: "host-3", Previous: 8, Replicas: 2}}, res.Agents)

	res, err = tc.scaler.Scale(ctx, Request{Node: "host-2", Replicas: 6})
	require.NoError(t, err)
	assert.Equal(t, Result{Service: "predictor", Node: "host-2", Replicas: 6,
		Agents: []AgentResult{{Node: "host-2", Previous: 2, Replicas: 6}}}, res)
	assert.Equal(t, []int{3}, tc.agents["host-1"].asked()[1:], "the others untouched")

	_, err = tc.scaler.Scale(ctx, Request{Service: "predictor", Replicas: 0, AllowZero: true})
	require.NoError(t, err)
	for _, a := range tc.agents {
		assert.Zero(t, a.asked()[len(a.asked())-1], a.name)
	}
}

// TestScaleRefusals: each refusal is one line, and no agent was asked to
// change anything.
func TestScaleRefusals(t *testing.T) {
	tc := startCluster(t, 2)
	ctx := context.Background()
	cases := []struct {
		req  Request
		want string
	}{
		{Request{Service: "predictor", Replicas: -1}, "scale refused: replica count -1: must be 0 or more"},
		{Request{Service: "predictor", Replicas: 0}, "scale refused: 0 replicas would stop service predictor; zero must be allowed explicitly"},
		{Request{Node: "host-1", Replicas: 0}, "scale refused: 0 replicas would stop every replica on host-1; zero must be allowed explicitly"},
		{Request{Service: "predictor", Replicas: 1001}, "scale refused: replica count 1001: more than an agent may run (1000)"},
		{Request{Service: "other", Replicas: 3}, `scale refused: no agents of service "other" in the cluster`},
		{Request{Node: "host-9", Replicas: 3}, `scale refused: no member named "host-9"`},
		{Request{Node: "gw", Replicas: 3}, "scale refused: gw is not an agent"},
		{Request{Service: "other", Node: "host-1", Replicas: 3}, "scale refused: host-1 runs service predictor, not other"},
		{Request{Service: "predictor", Replicas: 21}, "scale refused: service predictor: 21 replicas do not fit: the agents have room for 20 " +
			"(host-1 10 (its maximum is set), host-2 10 (its maximum is set))"},
		{Request{Node: "host-1", Replicas: 11}, "scale refused: host-1 has room for 10 replicas (its maximum is set), not 11"},
		{Request{}, "scale refused: no service and no node"},
	}
	for _, tc2 := range cases {
		_, err := tc.scaler.Scale(ctx, tc2.req)
		assert.ErrorIs(t, err, ErrRefused, tc2.want)
		assert.EqualError(t, err, tc2.want)
	}

	tc.agents["host-2"].mu.Lock()
	tc.agents["host-2"].refuse = "host-2 is replacing its replicas with predictor:1.1.0 (a rollout)"
	tc.agents["host-2"].mu.Unlock()
	_, err := tc.scaler.Scale(ctx, Request{Service: "predictor", Replicas: 6})
	assert.EqualError(t, err, "scale refused: host-2 is replacing its replicas with predictor:1.1.0 (a rollout)")

	tc.rollouts.set("predictor", "r1 to predictor:1.1.0")
	_, err = tc.scaler.Scale(ctx, Request{Service: "predictor", Replicas: 6})
	assert.ErrorIs(t, err, ErrRolloutRunning)
	assert.EqualError(t, err, "a rollout of the service is running: predictor (rollout r1 to predictor:1.1.0); "+
		"scale it once that has ended, or queue it behind it")
	for _, a := range tc.agents {
		assert.Empty(t, a.asked(), "%s was asked nothing", a.name)
	}
}

// TestScaleSilentAgent: an agent that answers the check but not the scale
// is named; the others' change stands. One that answers nothing at all is
// planned for (the count it announces) and named too.
func TestScaleSilentAgent(t *testing.T) {
	tc := startCluster(t, 3)
	tc.agents["host-2"].mu.Lock()
	tc.agents["host-2"].mute = true
	tc.agents["host-2"].mu.Unlock()
	res, err := tc.scaler.Scale(context.Background(), Request{Service: "predictor", Replicas: 15})
	require.NoError(t, err)
	failed := res.Failed()
	require.Len(t, failed, 1)
	assert.Equal(t, "host-2", failed[0].Node)
	assert.ErrorIs(t, failed[0].Err, membership.ErrNoAnswer)
	assert.Equal(t, []int{5}, tc.agents["host-1"].asked())
	assert.Equal(t, []int{5}, tc.agents["host-3"].asked())

	tc.agents["host-2"].mu.Lock()
	tc.agents["host-2"].mute, tc.agents["host-2"].deaf = false, true
	tc.agents["host-2"].mu.Unlock()
	res, err = tc.scaler.Scale(context.Background(), Request{Service: "predictor", Replicas: 9})
	require.NoError(t, err)
	failed = res.Failed()
	require.Len(t, failed, 1)
	assert.Equal(t, AgentResult{Node: "host-2", Previous: 4, Replicas: 3, Err: failed[0].Err}, failed[0],
		"its announced count as the previous one")
	assert.ErrorIs(t, failed[0].Err, membership.ErrNoAnswer)
	assert.Equal(t, []int{5, 3}, tc.agents["host-1"].asked())
}

// TestScaleQueuedBehindRollout: with AfterRollout, a scale during a
// rollout is checked, queued, replaced by a newer one, and done once the
// rollout ends.
func TestScaleQueuedBehindRollout(t *testing.T) {
	tc := startCluster(t, 2)
	ctx := context.Background()
	tc.rollouts.set("predictor", "r1 to predictor:1.1.0")

	_, err := tc.scaler.Scale(ctx, Request{Service: "predictor", Replicas: 30, AfterRollout: true})
	assert.ErrorIs(t, err, ErrRefused, "checked before it is queued")
	res, err := tc.scaler.Scale(ctx, Request{Service: "predictor", Replicas: 10, AfterRollout: true})
	require.NoError(t, err)
	assert.True(t, res.Queued)
	res, err = tc.scaler.Scale(ctx, Request{Service: "predictor", Replicas: 12, AfterRollout: true, Reason: "later"})
	require.NoError(t, err)
	assert.True(t, res.Queued)
	st := tc.scaler.Status("predictor")
	require.NotNil(t, st.Queued)
	assert.Equal(t, 12, st.Queued.Request.Replicas)
	assert.Equal(t, "r1 to predictor:1.1.0", st.Queued.Rollout)
	assert.Equal(t, "r1 to predictor:1.1.0", st.Rollout)
	for _, a := range tc.agents {
		assert.Empty(t, a.asked(), "%s was asked nothing yet", a.name)
	}

	tc.rollouts.set("predictor", "")
	require.Eventually(t, func() bool {
		st := tc.scaler.Status("predictor")
		return st.Queued == nil && st.LastQueued != nil
	}, 5*time.Second, 10*time.Millisecond, "the queued scale ran")
	st = tc.scaler.Status("predictor")
	assert.Empty(t, st.LastQueued.Error)
	for _, a := range tc.agents {
		assert.Equal(t, []int{6}, a.asked(), "%s asked once, for the latest", a.name)
		assert.Equal(t, []string{"later (queued behind rollout r1 to predictor:1.1.0) via gw"}, a.reasons())
	}
}

// TestScaleNotHeldByAnotherServicesRollout: rollouts are per service: one
// of tone holds no scale of predictor back, nor does its end run one.
func TestScaleNotHeldByAnotherServicesRollout(t *testing.T) {
	tc := startCluster(t, 2)
	ctx := context.Background()
	tc.rollouts.set("tone", "r2 to tone:2.0.0")
	res, err := tc.scaler.Scale(ctx, Request{Service: "predictor", Replicas: 6})
	require.NoError(t, err)
	assert.False(t, res.Queued)
	assert.Empty(t, res.Failed())
	assert.Empty(t, tc.scaler.Status("predictor").Rollout)

	tc.rollouts.set("predictor", "r3 to predictor:1.1.0")
	res, err = tc.scaler.Scale(ctx, Request{Service: "predictor", Replicas: 8, AfterRollout: true})
	require.NoError(t, err)
	require.True(t, res.Queued)
	tc.rollouts.set("tone", "")
	st := tc.scaler.Status("predictor")
	require.NotNil(t, st.Queued, "still queued: tone's rollout ending is not predictor's")
	for _, a := range tc.agents {
		assert.Equal(t, []int{3}, a.asked(), "%s asked once, by the first scale", a.name)
	}
}

func TestStatusOf(t *testing.T) {
	agent := func(name string, status membership.Status, count int, ports []uint16, fail string) membership.Node {
		return membership.Node{Name: name, Status: status, Tags: membership.Tags{Role: membership.RoleAgent,
			Service: "predictor", Count: count, Ports: ports, Fail: fail, State: membership.StateActive}}
	}
	nodes := []membership.Node{
		agent("host-2", membership.StatusAlive, 8, []uint16{1, 2, 3}, ""),
		agent("host-1", membership.StatusAlive, 8, []uint16{1, 2, 3, 4, 5, 6, 7, 8}, ""),
		agent("host-3", membership.StatusFailed, 4, []uint16{1, 2, 3, 4}, ""),
		agent("host-4", membership.StatusAlive, 4, []uint16{1, 2, 3, 4}, "gateway gw-2 did not acknowledge"),
		agent("host-5", membership.StatusLeft, 4, nil, ""),
		{Name: "gw", Status: membership.StatusAlive, Tags: membership.Tags{Role: membership.RoleGateway}},
		{Name: "other", Status: membership.StatusAlive, Tags: membership.Tags{Role: membership.RoleAgent, Service: "other", Count: 9}},
	}
	st := statusOf("predictor", nodes, map[string]int{"host-1": 8, "host-2": 2, "host-4": 4}, true)
	assert.Equal(t, Status{Service: "predictor", Replicas: 20, Healthy: 15, Routed: 14, Agents: []AgentStatus{
		{Node: "host-1", Status: membership.StatusAlive, Replicas: 8, Healthy: 8, Routed: 8},
		{Node: "host-2", Status: membership.StatusAlive, Replicas: 8, Healthy: 3, Routed: 2},
		{Node: "host-3", Status: membership.StatusFailed, Replicas: 4, Routed: 0, Problem: "host-3 is failed"},
		{Node: "host-4", Status: membership.StatusAlive, Replicas: 4, Healthy: 4, Routed: 4, Problem: "gateway gw-2 did not acknowledge"},
	}}, st)
	st = statusOf("predictor", nodes[:1], nil, false)
	assert.Equal(t, -1, st.Routed)
	assert.Equal(t, -1, st.Agents[0].Routed)
}
