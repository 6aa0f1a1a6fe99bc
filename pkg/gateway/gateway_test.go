package gateway

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/membership"
)

func quiet() hclog.Logger { return hclog.New(&hclog.LoggerOptions{Level: hclog.Warn}) }

func member(t *testing.T, name string, tags membership.Tags, events chan<- membership.Event, queries chan<- *membership.Query) *membership.Cluster {
	t.Helper()
	cfg := membership.DefaultConfig()
	cfg.NodeName, cfg.BindAddr, cfg.Profile, cfg.Tags, cfg.Logger = name, "127.0.0.1:0", membership.ProfileLocal, tags, quiet()
	cfg.EventCh, cfg.QueryCh = events, queries
	c, err := membership.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Shutdown() })
	return c
}

func agentTags(gen uint64, state membership.State, ports ...uint16) membership.Tags {
	return membership.Tags{Role: membership.RoleAgent, Service: "predictor", Image: "predictor:1.0.0",
		HostIP: netip.MustParseAddr("127.0.0.1"), Ports: ports, Gen: gen, State: state}
}

// TestSyncIsAnsweredOnlyAfterTheSwap: an agent withdraws its backends and
// asks every gateway; by the time each answers, none routes to them.
func TestSyncIsAnsweredOnlyAfterTheSwap(t *testing.T) {
	var gws []*Gateway
	var first *membership.Cluster
	for i := range 3 {
		cfg := DefaultConfig()
		cfg.Logger = quiet()
		g, err := New(cfg)
		require.NoError(t, err)
		c := member(t, "gw"+string(rune('a'+i)), membership.Tags{Role: membership.RoleGateway, Gen: 1}, g.EventCh(), g.QueryCh())
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { g.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		if first == nil {
			first = c
		} else {
			_, err := c.Join([]string{first.LocalNode().Addr.String()})
			require.NoError(t, err)
		}
		gws = append(gws, g)
	}
	agent := member(t, "agent", agentTags(10, membership.StateActive, 9001, 9002), nil, nil)
	_, err := agent.Join([]string{first.LocalNode().Addr.String()})
	require.NoError(t, err)
	for _, g := range gws {
		require.Eventually(t, func() bool { return g.Balancer().Len() == 2 }, 5*time.Second, 5*time.Millisecond)
	}

	require.NoError(t, agent.SetTags(agentTags(11, membership.StateDraining, 9001, 9002)))
	require.NoError(t, agent.SyncGateways(context.Background(), 5*time.Second))
	for i, g := range gws {
		assert.Zero(t, g.Balancer().Len(), "gateway %d acknowledged, so routes nothing to the agent", i)
	}

	require.NoError(t, agent.SetTags(agentTags(12, membership.StateActive, 9001)))
	require.NoError(t, agent.SyncGateways(context.Background(), 5*time.Second))
	for _, g := range gws {
		assert.Equal(t, 1, g.Balancer().Len())
	}
}

func TestSyncForUnknownGenerationTimesOutSilently(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Logger = quiet()
	g, err := New(cfg)
	require.NoError(t, err)
	gwc := member(t, "gw", membership.Tags{Role: membership.RoleGateway, Gen: 1}, g.EventCh(), g.QueryCh())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	agent := member(t, "agent", agentTags(5, membership.StateActive, 9001), nil, nil)
	_, err = agent.Join([]string{gwc.LocalNode().Addr.String()})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return g.Balancer().Len() == 1 }, 5*time.Second, 5*time.Millisecond)
	// Ask for a generation the agent never announced: no false acknowledgement.
	_, err = agent.Query(context.Background(), membership.QuerySync, []byte(`{"node":"agent","gen":99}`),
		membership.QueryParams{Role: membership.RoleGateway, Timeout: 500 * time.Millisecond})
	require.ErrorIs(t, err, membership.ErrIncomplete)
	// A malformed payload is ignored, not trusted.
	_, err = agent.Query(context.Background(), membership.QuerySync, []byte(`{"node":"agent","gen":1,"x":1}`),
		membership.QueryParams{Role: membership.RoleGateway, Timeout: 300 * time.Millisecond})
	require.ErrorIs(t, err, membership.ErrIncomplete)
}

// TestChangedAfterEveryEvent: a consumer that takes the channel Changed
// returns, then reads membership, then waits on the channel, sees every
// change without polling: the channel is closed once the gateway has applied
// an event, and by then membership shows it.
func TestChangedAfterEveryEvent(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Logger = quiet()
	g, err := New(cfg)
	require.NoError(t, err)
	gwc := member(t, "gw", membership.Tags{Role: membership.RoleGateway, Gen: 1}, g.EventCh(), g.QueryCh())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	// waitFor waits as the rollout coordinator does, on the channel only.
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		giveUp := time.After(5 * time.Second)
		for {
			changed := g.Changed()
			if cond() {
				return
			}
			select {
			case <-changed:
			case <-giveUp:
				t.Fatalf("no change seen: %s", what)
			}
		}
	}
	agentGen := func() uint64 { n, _ := gwc.Member("agent"); return n.Tags.Gen }

	agent := member(t, "agent", agentTags(5, membership.StateActive, 9001), nil, nil)
	_, err = agent.Join([]string{gwc.LocalNode().Addr.String()})
	require.NoError(t, err)
	waitFor("the agent's join", func() bool { return agentGen() == 5 })
	require.NoError(t, agent.SetTags(agentTags(6, membership.StateActive, 9001, 9002)))
	waitFor("the agent's tag update", func() bool { return agentGen() == 6 })
	require.NoError(t, agent.Leave())
	waitFor("the agent's leave", func() bool { n, _ := gwc.Member("agent"); return n.Status == membership.StatusLeft })
}
