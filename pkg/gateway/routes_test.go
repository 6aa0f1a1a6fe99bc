package gateway

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/membership"
	"github.com/herd-cluster/herd/pkg/route"
)

// routed returns a running gateway of every service.
func routed(t *testing.T, cfg Config) *Gateway {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	g, err := New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return g
}

// serving is an agent node of service svc announcing routes, with one
// backend on port.
func serving(name, svc string, gen uint64, port uint16, routes ...string) membership.Node {
	rs, err := route.ParseAll(routes)
	if err != nil {
		panic(err)
	}
	tags := agentTags(gen, membership.StateActive, port)
	tags.Service, tags.Routes = svc, rs
	return membership.Node{Name: name, Addr: netip.MustParseAddrPort("127.0.0.1:7946"), Status: membership.StatusAlive, Tags: tags}
}

func apply(t *testing.T, g *Gateway, typ membership.EventType, nodes ...membership.Node) {
	t.Helper()
	require.NoError(t, g.Apply(context.Background(), membership.Event{Type: typ, Nodes: nodes, At: time.Now()}))
}

// table is the routing as lines "route service state [held-by]".
func table(g *Gateway) []string {
	var out []string
	for _, r := range g.Routing().Routes {
		out = append(out, strings.TrimSpace(fmt.Sprintf("%s %s %s %s", r.Route, r.Service, r.State, r.HeldBy)))
	}
	return out
}

// The first claim on a route keeps it; a later one is refused, reported
// and queued until the first claimant's agents stop announcing it. A
// failed agent keeps its claim.
func TestRouteClaims(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := routed(t, Config{Registerer: reg})
	assert.Empty(t, g.Routing().Routes)

	web1 := serving("web-1", "web", 100, 9001, "api.example.com/predict", "/predict")
	apply(t, g, membership.EventJoin, web1)
	assert.Equal(t, []string{"api.example.com/predict web ok", "/predict web ok"}, table(g))
	assert.Equal(t, "web", g.Routing().Fallback, "the only service announced takes what no route does")

	// tone claims /predict later: refused, whatever its generation.
	tone := serving("tone-1", "tone", 1, 9002, "tone.example.com", "/predict")
	apply(t, g, membership.EventJoin, tone)
	assert.Equal(t, []string{
		"api.example.com/predict web ok", "tone.example.com tone ok", "/predict web ok", "/predict tone conflict web",
	}, table(g))
	assert.Empty(t, g.Routing().Fallback, "two services and no default: unrouted requests get 404")
	assert.Equal(t, 1.0, testutil.ToFloat64(g.routeConflicts))

	// A second agent of web holds the claim as much as the first.
	web2 := serving("web-2", "web", 300, 9003, "/predict")
	apply(t, g, membership.EventJoin, web2)
	apply(t, g, membership.EventLeave, web1)
	assert.Contains(t, table(g), "/predict web ok")

	// web-2 fails: its claim stays (a partition hands nothing over), with no
	// backends.
	failed := web2
	failed.Status = membership.StatusFailed
	apply(t, g, membership.EventFailed, failed)
	assert.Contains(t, table(g), "/predict web no backends")
	assert.Contains(t, table(g), "/predict tone conflict web")

	// It leaves: tone's claim is next.
	failed.Status = membership.StatusLeft
	apply(t, g, membership.EventLeave, failed)
	assert.Equal(t, []string{"tone.example.com tone ok", "/predict tone ok"}, table(g))
	assert.Zero(t, testutil.ToFloat64(g.routeConflicts))
	assert.Equal(t, "tone", g.Routing().Fallback)

	// web comes back: now the newcomer, refused.
	apply(t, g, membership.EventJoin, serving("web-3", "web", 400, 9004, "/predict"))
	assert.Contains(t, table(g), "/predict tone ok")
	assert.Contains(t, table(g), "/predict web conflict tone")

	// An agent that stops announcing a route gives it up.
	tone2 := serving("tone-1", "tone", 2, 9002, "tone.example.com")
	apply(t, g, membership.EventUpdate, tone2)
	assert.Contains(t, table(g), "/predict web ok")

	// Malformed tags change nothing of what the node claimed.
	bad := tone2
	bad.Tags.Gen, bad.Err = 3, fmt.Errorf("tag rt: malformed")
	apply(t, g, membership.EventUpdate, bad)
	assert.Contains(t, table(g), "tone.example.com tone no backends")
}

// Claims seen at once (a gateway's first join) go to the service whose
// agent is oldest; an order already seen survives a restart through the
// view, and the default service takes what no route matches.
func TestRouteClaimOrder(t *testing.T) {
	g := routed(t, Config{DefaultService: "web"})
	apply(t, g, membership.EventJoin,
		serving("b", "b-svc", 200, 9001, "/x"), serving("a", "a-svc", 100, 9002, "/x"), serving("c", "c-svc", 100, 9003, "/x"))
	assert.Equal(t, []string{"/x a-svc ok", "/x c-svc conflict a-svc", "/x b-svc conflict a-svc"}, table(g))
	assert.Equal(t, "web", g.Routing().Fallback)

	// A restarted gateway keeps the order, whatever the generations say
	// once a-svc's agent is replaced by a younger one.
	v := g.view()
	require.Len(t, v.Claims, 1)
	assert.Equal(t, []string{"a-svc", "c-svc", "b-svc"}, v.Claims[0].Services)
	g2, err := New(Config{Logger: quiet()})
	require.NoError(t, err)
	g2.Restore(v)
	g2.apply(membership.Event{Type: membership.EventUpdate, Nodes: []membership.Node{serving("a", "a-svc", 900, 9002, "/x")}})
	assert.Equal(t, []string{"/x a-svc ok", "/x c-svc conflict a-svc", "/x b-svc conflict a-svc"}, table(g2))
}

// A service whose routes do not fit the tags announces their hash; the
// gateway fetches them from the agent by query, and acknowledges the
// agent's sync only once they are in effect.
func TestRoutesFetchedByHash(t *testing.T) {
	g := routed(t, Config{})
	gwc := member(t, "gw", membership.Tags{Role: membership.RoleGateway, Gen: 1}, g.EventCh(), g.QueryCh())
	require.NoError(t, g.SetRouteFetcher(context.Background(), gwc))

	var list []string
	for i := range 20 { // 20 routes of 60 bytes
		list = append(list, fmt.Sprintf("service-%02d.example.com/api/v1/%s", i, strings.Repeat("p", 30)))
	}
	rs, err := route.ParseAll(list)
	require.NoError(t, err)
	require.Len(t, rs[0].String(), 60)
	tags := agentTags(10, membership.StateActive, 9001)
	tags.Service, tags.Routes = "api", rs
	enc, err := tags.Encode()
	require.NoError(t, err)
	require.NotContains(t, enc, "rt", "too many for the tags: only their hash travels")

	queries := make(chan *membership.Query, 16)
	agent := member(t, "agent", tags, nil, queries)
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		for {
			select {
			case q := <-queries:
				if q.Name() == membership.QueryRoutes {
					_ = membership.AnswerRoutes(q, rs)
				}
			case <-stop:
				return
			}
		}
	}()
	_, err = agent.Join([]string{gwc.LocalNode().Addr.String()})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.present["agent"]
	}, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, agent.SyncGateways(context.Background(), 10*time.Second))
	assert.Len(t, g.Routing().Routes, 20, "acknowledged: the fetched routes are in effect")

	// The view carries them: a gateway restored from it routes them without
	// asking.
	g2, err := New(Config{Logger: quiet()})
	require.NoError(t, err)
	g2.Restore(g.view())
	assert.Len(t, g2.Routing().Routes, 20)
}
