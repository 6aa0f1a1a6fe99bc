package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/balancer"
	"github.com/herd-cluster/herd/pkg/membership"
)

// runGateway runs a gateway until the test ends.
func runGateway(t *testing.T, cfg Config) *Gateway {
	t.Helper()
	cfg.Logger = quiet()
	cfg.Balancer.HealthInterval = 0
	g, err := New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return g
}

func agentNode(name string, gen uint64, state membership.State, ports ...uint16) membership.Node {
	return membership.Node{Name: name, Addr: netip.MustParseAddrPort("127.0.0.9:7946"), Status: membership.StatusAlive,
		Tags: agentTags(gen, state, ports...)}
}

// A gateway that missed an agent's tag change (its gossip lost) still
// acknowledges it: the sync query carries the tags, and the gateway applies
// them when they are newer than what it routes by; a gossip message older
// than them that arrives late changes nothing.
func TestSyncQueryCarriesTheTagsAGatewayMissed(t *testing.T) {
	g := runGateway(t, DefaultConfig())
	// The gateway's membership delivers queries but no events: whatever
	// the agent announces, it only learns from the sync query.
	gwc := member(t, "gw", membership.Tags{Role: membership.RoleGateway, Gen: 1}, nil, g.QueryCh())
	agent := member(t, "agent", agentTags(10, membership.StateActive, 9001, 9002), nil, nil)
	_, err := agent.Join([]string{gwc.LocalNode().Addr.String()})
	require.NoError(t, err)
	require.NoError(t, g.Apply(context.Background(), membership.Event{Type: membership.EventJoin,
		Nodes: []membership.Node{agentNode("agent", 10, membership.StateActive, 9001, 9002)}}))
	require.Equal(t, 2, g.Balancer().Len())

	require.NoError(t, agent.SetTags(agentTags(11, membership.StateActive, 9001)))
	require.NoError(t, agent.SyncGateways(context.Background(), 5*time.Second))
	assert.Equal(t, 1, g.Balancer().Len(), "acknowledged: the withdrawn backend is out")

	// Gossip's late copy of generation 10 is stale.
	require.NoError(t, g.Apply(context.Background(), membership.Event{Type: membership.EventUpdate,
		Nodes: []membership.Node{agentNode("agent", 10, membership.StateActive, 9001, 9002)}}))
	assert.Equal(t, 1, g.Balancer().Len(), "an older generation does not bring the backend back")
}

// Only a node's own sync query may carry its tags: another member's claim
// about it is not applied, so it gets no acknowledgement.
func TestSyncQueryTagsOnlyFromTheNodeItself(t *testing.T) {
	g := runGateway(t, DefaultConfig())
	gwc := member(t, "gw", membership.Tags{Role: membership.RoleGateway, Gen: 1}, nil, g.QueryCh())
	rogue := member(t, "rogue", agentTags(1, membership.StateActive), nil, nil)
	_, err := rogue.Join([]string{gwc.LocalNode().Addr.String()})
	require.NoError(t, err)
	require.NoError(t, g.Apply(context.Background(), membership.Event{Type: membership.EventJoin,
		Nodes: []membership.Node{agentNode("agent", 10, membership.StateActive, 9001, 9002)}}))
	forged := agentTags(11, membership.StateDraining, 9001, 9002)
	m, err := forged.Encode()
	require.NoError(t, err)
	payload := []byte(`{"node":"agent","gen":11,"tags":` + mustJSON(t, m) + `}`)
	_, err = rogue.Query(context.Background(), membership.QuerySync, payload,
		membership.QueryParams{Role: membership.RoleGateway, Timeout: 500 * time.Millisecond})
	assert.ErrorIs(t, err, membership.ErrIncomplete)
	assert.Equal(t, 2, g.Balancer().Len())
}

// The view is saved when it changes and when Run ends; a new gateway that
// restores it routes to the same backends, with the same ones out.
func TestViewSavedAndRestored(t *testing.T) {
	path := filepath.Join(t.TempDir(), "view.json")
	cfg := DefaultConfig()
	cfg.ViewPath, cfg.ViewSaveDelay, cfg.Logger = path, 20*time.Millisecond, quiet()
	cfg.Balancer.HealthInterval = 0
	g, err := New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.Run(ctx); close(done) }()
	require.NoError(t, g.Apply(context.Background(), membership.Event{Type: membership.EventJoin, Nodes: []membership.Node{
		agentNode("a", 3, membership.StateActive, 9001, 9002), agentNode("b", 4, membership.StateActive, 9101),
	}}))
	require.Eventually(t, func() bool {
		v, err := LoadView(path)
		return err == nil && len(v.Nodes) == 2
	}, 5*time.Second, 10*time.Millisecond, "saved after a change")
	require.NoError(t, g.Sync(context.Background(), []membership.Node{agentNode("a", 3, membership.StateActive, 9001, 9002)}))
	cancel()
	<-done
	v, err := LoadView(path)
	require.NoError(t, err)
	require.Len(t, v.Nodes, 1, "saved when Run ended: b is gone")

	v.Backends = []BackendHealth{{Addr: "127.0.0.1:9002", State: balancer.StateDown}}
	g2, err := New(cfg)
	require.NoError(t, err)
	assert.Equal(t, 1, g2.Restore(v))
	states := map[string]string{}
	for _, st := range g2.Balancer().Backends() {
		states[st.Addr.String()] = st.State
	}
	assert.Equal(t, map[string]string{"127.0.0.1:9001": balancer.StateUp, "127.0.0.1:9002": balancer.StateEjected}, states)

	_, err = LoadView(filepath.Join(t.TempDir(), "absent.json"))
	assert.NoError(t, err, "no file: an empty view")
}

// recorder is a Follower that records what it is given.
type recorder struct {
	mu     sync.Mutex
	events []membership.Event
	fail   bool
}

func (r *recorder) Apply(e membership.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return errors.New("gone")
	}
	r.events = append(r.events, e)
	return nil
}

// A follower starts from the view Follow returns and gets every later
// event; one that fails is dropped, and the gateway goes on.
func TestFollow(t *testing.T) {
	g := runGateway(t, DefaultConfig())
	ctx := context.Background()
	require.NoError(t, g.Apply(ctx, membership.Event{Type: membership.EventJoin, Nodes: []membership.Node{agentNode("a", 1, membership.StateActive, 9001)}}))
	r := &recorder{}
	v, err := g.Follow(ctx, r)
	require.NoError(t, err)
	require.Len(t, v.Nodes, 1)
	assert.Equal(t, "a", v.Nodes[0].Name)
	require.NoError(t, g.Apply(ctx, membership.Event{Type: membership.EventUpdate, Nodes: []membership.Node{agentNode("a", 2, membership.StateDraining, 9001)}}))
	r.mu.Lock()
	require.Len(t, r.events, 1)
	assert.Equal(t, uint64(2), r.events[0].Nodes[0].Tags.Gen)
	r.fail = true
	r.mu.Unlock()
	require.NoError(t, g.Apply(ctx, membership.Event{Type: membership.EventUpdate, Nodes: []membership.Node{agentNode("a", 3, membership.StateActive, 9001)}}))
	assert.Equal(t, 1, g.Balancer().Len(), "the gateway goes on without its follower")
	g.mu.Lock()
	assert.Nil(t, g.follower)
	g.mu.Unlock()
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}
