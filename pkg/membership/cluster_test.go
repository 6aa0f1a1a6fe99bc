package membership

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type testMember struct {
	*Cluster
	events  chan Event
	queries chan *Query
	// unread holds what waitEvent read but nobody has asked for yet:
	// events about different nodes need not arrive in the order the
	// test waits for them (a2's join may come before a1's).
	unread []eventOf
}

// eventOf is one node's part of an event.
type eventOf struct {
	typ  EventType
	node Node
}

func startMember(t *testing.T, name string, tags Tags) *testMember {
	t.Helper()
	return startMemberBuffered(t, name, tags, 1024, 16)
}

// startMemberBuffered is startMember with the given capacities of its
// event and query channels.
func startMemberBuffered(t *testing.T, name string, tags Tags, eventBuf, queryBuf int) *testMember {
	t.Helper()
	m := &testMember{events: make(chan Event, eventBuf), queries: make(chan *Query, queryBuf)}
	cfg := DefaultConfig()
	cfg.NodeName = name
	cfg.BindAddr = "127.0.0.1:0"
	cfg.Profile = ProfileLocal
	cfg.Tags = tags
	cfg.EventCh = m.events
	cfg.QueryCh = m.queries
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Warn})
	c, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Shutdown() })
	m.Cluster = c
	return m
}

func (m *testMember) gossipAddr() string { return m.LocalNode().Addr.String() }

// joinAll makes each of members join seed's cluster.
func joinAll(t *testing.T, seed *testMember, members ...*testMember) {
	t.Helper()
	for _, m := range members {
		_, err := m.Join([]string{seed.gossipAddr()})
		require.NoError(t, err)
	}
}

// waitEvent returns the earliest event of type typ about node not yet
// returned, reading events until one arrives, or fails.
func (m *testMember) waitEvent(t *testing.T, typ EventType, node string, within time.Duration) Node {
	t.Helper()
	deadline := time.After(within)
	for {
		for i, u := range m.unread {
			if u.typ == typ && u.node.Name == node {
				m.unread = append(m.unread[:i], m.unread[i+1:]...)
				return u.node
			}
		}
		select {
		case e := <-m.events:
			for _, n := range e.Nodes {
				m.unread = append(m.unread, eventOf{e.Type, n})
			}
		case <-deadline:
			t.Fatalf("no %s event for %s within %s", typ, node, within)
		}
	}
}

func agentTagsOn(ports ...uint16) Tags {
	tags := agentTags()
	tags.Ports = ports
	return tags
}

func TestClusterEventsReachOtherMembers(t *testing.T) {
	gw := startMember(t, "gw", Tags{Role: RoleGateway, Gen: 1})
	a1 := startMember(t, "a1", agentTagsOn(8000, 8001))
	a2 := startMember(t, "a2", agentTagsOn(9000))

	joinAll(t, gw, a1, a2)
	n := gw.waitEvent(t, EventJoin, "a1", 5*time.Second)
	require.NoError(t, n.Err)
	assert.Equal(t, []netip.AddrPort{
		netip.MustParseAddrPort("127.0.0.2:8000"), netip.MustParseAddrPort("127.0.0.2:8001"),
	}, n.Backends("predictor"))
	assert.Empty(t, n.Backends("other-service"))
	gw.waitEvent(t, EventJoin, "a2", 5*time.Second)

	tags := agentTagsOn(8000)
	tags.Gen = 8
	require.NoError(t, a1.SetTags(tags))
	n = gw.waitEvent(t, EventUpdate, "a1", 5*time.Second)
	assert.Equal(t, uint64(8), n.Tags.Gen)
	assert.Len(t, n.Backends("predictor"), 1)

	require.NoError(t, a1.Leave())
	n = gw.waitEvent(t, EventLeave, "a1", 5*time.Second)
	assert.Empty(t, n.Backends("predictor"), "a leaving node has no backends")

	require.NoError(t, a2.Shutdown()) // a crash: no leave message
	n = gw.waitEvent(t, EventFailed, "a2", 15*time.Second)
	assert.Equal(t, StatusFailed, n.Status)
}

func TestClusterForceLeave(t *testing.T) {
	gw := startMember(t, "gw", Tags{Role: RoleGateway, Gen: 1})
	a1 := startMember(t, "a1", agentTagsOn(8000))
	a2 := startMember(t, "a2", agentTagsOn(9000))
	joinAll(t, gw, a1, a2)
	gw.waitEvent(t, EventJoin, "a2", 5*time.Second)

	err := gw.ForceLeave("a1")
	require.ErrorIs(t, err, ErrMemberAlive)
	assert.Contains(t, err.Error(), "a1 is alive; stop its agent")
	require.ErrorIs(t, gw.ForceLeave("nobody"), ErrNoSuchMember)

	require.NoError(t, a2.Shutdown()) // a crash: a2 stays "failed" until reaped
	gw.waitEvent(t, EventFailed, "a2", 15*time.Second)
	require.NoError(t, gw.ForceLeave("a2"))
	status := func(m *testMember) Status {
		n, _ := m.Member("a2")
		return n.Status // "" when forgotten
	}
	assert.Empty(t, status(gw), "pruned at once on the member asked")
	// Elsewhere it is forgotten too, or "left" where the leave arrived
	// before the failure did: either way no longer failed.
	assert.Eventually(t, func() bool { s := status(a1); return s == "" || s == StatusLeft }, 10*time.Second,
		20*time.Millisecond, "the force-leave reaches the other members")
}

func TestClusterMalformedMemberIsReportedNotTrusted(t *testing.T) {
	gw := startMember(t, "gw", Tags{Role: RoleGateway, Gen: 1})
	rogue := startMember(t, "rogue", agentTagsOn(8000))
	// Bypass Encode's validation the way a foreign serf agent would.
	require.NoError(t, rogue.serf.SetTags(map[string]string{
		"role": "agent", "svc": "predictor", "img": "predictor:1.0.0", "ip": "127.0.0.9",
		"ports": "1-99999", "gen": "1", "state": "active",
	}))
	_, err := rogue.Join([]string{gw.gossipAddr()})
	require.NoError(t, err)
	n := gw.waitEvent(t, EventJoin, "rogue", 5*time.Second)
	require.Error(t, n.Err)
	assert.Empty(t, n.Backends("predictor"))
}

func TestClusterQueryCollectsEveryAnswer(t *testing.T) {
	asker := startMember(t, "asker", agentTagsOn(8000))
	var gws []*testMember
	for i := range 3 {
		gw := startMember(t, fmt.Sprintf("gw%d", i), Tags{Role: RoleGateway, Gen: 1})
		_, err := gw.Join([]string{asker.gossipAddr()})
		require.NoError(t, err)
		gws = append(gws, gw)
	}
	require.Eventually(t, func() bool { return len(asker.Members()) == 4 }, 5*time.Second, 10*time.Millisecond,
		"asker sees all 4 members")
	for _, gw := range gws {
		go func() {
			q := <-gw.queries
			_ = q.Respond(append([]byte("ack:"), q.Payload()...))
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	answers, err := asker.Query(ctx, "herd-test", []byte("x"), QueryParams{Role: RoleGateway})
	require.NoError(t, err)
	assert.Len(t, answers, 3)
	for _, a := range answers {
		assert.Equal(t, "ack:x", string(a))
	}
}

func TestClusterQueryNamesSilentMembers(t *testing.T) {
	asker := startMember(t, "asker", agentTagsOn(8000))
	gw := startMember(t, "silent", Tags{Role: RoleGateway, Gen: 1})
	_, err := gw.Join([]string{asker.gossipAddr()})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(asker.Members()) == 2 }, 5*time.Second, 10*time.Millisecond)
	_, err = asker.Query(context.Background(), "herd-test", nil, QueryParams{Role: RoleGateway, Timeout: 300 * time.Millisecond})
	require.ErrorIs(t, err, ErrIncomplete)
	assert.Contains(t, err.Error(), "silent")
}

func TestClusterWrongKeyCannotJoin(t *testing.T) {
	a := startKeyed(t, "a", oldKey, "")
	b := startKeyed(t, "b", newKey, "")
	plain := startKeyed(t, "plain", "", "")
	_, err := b.Join([]string{a.LocalNode().Addr.String()})
	assert.ErrorIs(t, err, ErrWrongKey, "a wrong key must not join")
	assert.ErrorContains(t, err, "the gossip key differs from the cluster's")
	assert.NotContains(t, err.Error(), "--", "a library names no flag")
	_, err = plain.Join([]string{a.LocalNode().Addr.String()})
	assert.ErrorIs(t, err, ErrWrongKey, "no key must not join an encrypted cluster")
	assert.Len(t, a.Members(), 1)

	_, err = ParseKey("c2hvcnQ=")
	assert.ErrorContains(t, err, "16, 24 or 32")
}

// TestDeployAsksSilentAgentsAgain: an agent that lets the first deploy
// request go unanswered (a lost datagram, a busy moment) is asked again;
// one that never answers is named.
func TestDeployAsksSilentAgentsAgain(t *testing.T) {
	gw := startMember(t, "gw", Tags{Role: RoleGateway, Gen: 1})
	late := startMember(t, "late", agentTagsOn(8000))
	mute := startMember(t, "mute", agentTagsOn(9000))
	joinAll(t, gw, late, mute)
	require.Eventually(t, func() bool { return len(gw.Members()) == 3 }, 5*time.Second, 10*time.Millisecond)
	var asked atomic.Int32
	go func() {
		for q := range late.queries {
			if asked.Add(1) == 1 {
				continue // the first request goes unanswered
			}
			_ = q.Respond([]byte(`{}`))
		}
	}()
	go func() {
		for range mute.queries {
		}
	}()
	errs := gw.Deploy(context.Background(), []string{"late", "mute"}, DeployRequest{Image: "predictor:1.1.0", CheckOnly: true}, 500*time.Millisecond)
	require.NoError(t, errs["late"])
	assert.Equal(t, int32(2), asked.Load())
	require.Error(t, errs["mute"])
	assert.Contains(t, errs["mute"].Error(), "mute did not answer within 500ms, asked 2 times")
}

// TestClusterSlowConsumerNeverBlocksGossip: while a gateway's consumer reads
// no events and agents change their tags many times, the gateway keeps
// gossiping (its member list converges, it answers a query); when the
// consumer reads, it gets each agent's latest state, each agent's events in
// order, not every step in between.
func TestClusterSlowConsumerNeverBlocksGossip(t *testing.T) {
	const agents, updates = 3, 20
	gw := startMemberBuffered(t, "gw", Tags{Role: RoleGateway, Gen: 1}, 1, 16)
	var as []*testMember
	for i := range agents {
		as = append(as, startMember(t, fmt.Sprintf("a%d", i), agentTagsOn(uint16(8000+i))))
	}
	joinAll(t, gw, as...)

	var wg sync.WaitGroup
	for _, a := range as {
		wg.Go(func() {
			tags := a.Tags()
			for range updates {
				tags.Gen++
				if err := a.SetTags(tags); err != nil && !errors.Is(err, ErrTagsUnconfirmed) {
					t.Errorf("%s: set tags: %v", a.cfg.NodeName, err)
					return
				}
			}
		})
	}
	wg.Wait()
	final := agentTags().Gen + updates

	require.Eventually(t, func() bool {
		for _, a := range as {
			if n, ok := gw.Member(a.cfg.NodeName); !ok || n.Tags.Gen != final {
				return false
			}
		}
		return true
	}, 10*time.Second, 20*time.Millisecond, "the gateway's member list reaches every agent's generation %d", final)
	go func() {
		for q := range gw.queries {
			_ = q.Respond([]byte("ok"))
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := as[0].Query(ctx, "herd-test", nil, QueryParams{Role: RoleGateway, Timeout: 3 * time.Second})
	require.NoError(t, err, "the gateway answers a query while its event consumer is stalled")

	// Now the consumer reads: every agent's latest state arrives, and no
	// agent's generation goes backwards.
	latest := map[string]uint64{}
	read := 0
	deadline := time.After(10 * time.Second)
	for reached := 0; reached < agents; {
		select {
		case e := <-gw.events:
			read++
			require.Len(t, e.Nodes, 1)
			n := e.Nodes[0]
			require.GreaterOrEqual(t, n.Tags.Gen, latest[n.Name], "%s's events in order", n.Name)
			if n.Tags.Gen == final && latest[n.Name] != final {
				reached++
			}
			latest[n.Name] = n.Tags.Gen
		case <-deadline:
			t.Fatalf("the consumer did not get every agent's latest state: %v", latest)
		}
	}
	assert.Positive(t, gw.Stats().EventsCoalesced)
	assert.Less(t, read, agents*updates/2, "coalesced: far fewer events than tag changes")
}

// TestClusterFullQueryChannelDropsQueries: queries that find QueryCh full
// are dropped and counted; gossip, and events, go on.
func TestClusterFullQueryChannelDropsQueries(t *testing.T) {
	gw := startMemberBuffered(t, "gw", Tags{Role: RoleGateway, Gen: 1}, 1024, 1)
	a := startMember(t, "a", agentTagsOn(8000))
	joinAll(t, gw, a)
	gw.waitEvent(t, EventJoin, "a", 5*time.Second)

	for range 3 { // nobody answers: the first fills the channel
		_, err := a.Query(context.Background(), "herd-test", nil, QueryParams{Role: RoleGateway, Timeout: 300 * time.Millisecond})
		require.ErrorIs(t, err, ErrIncomplete)
	}
	tags := a.Tags()
	tags.Gen++
	require.NoError(t, a.SetTags(tags))
	n := gw.waitEvent(t, EventUpdate, "a", 5*time.Second)
	assert.Equal(t, tags.Gen, n.Tags.Gen)
	assert.Equal(t, uint64(2), gw.Stats().QueriesDropped)
}
