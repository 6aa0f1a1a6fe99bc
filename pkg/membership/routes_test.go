package membership

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/route"
)

func routesOf(t *testing.T, n int, length int) []route.Route {
	t.Helper()
	var out []route.Route
	for i := range n {
		r, err := route.Parse(fmt.Sprintf("svc%02d.example.com/%0*d", i, length, i))
		require.NoError(t, err)
		out = append(out, r)
	}
	return out
}

func routedAgent(routes []route.Route) Tags {
	return Tags{Role: RoleAgent, Service: "predictor", Image: "predictor:1.0.0", HostIP: netip.MustParseAddr("127.0.0.2"),
		Ports: []uint16{8000}, Gen: 1, State: StateActive, Routes: routes, StripPrefix: true}
}

// A few routes travel inline in the tags; more than fit travel as their
// hash and count, the list fetched from the agent, 20 routes of 60 bytes
// (the example) as 2 pages and 100 long ones as more.
func TestRoutesInTagsAndFetched(t *testing.T) {
	few := routesOf(t, 3, 5)
	m, err := routedAgent(few).Encode()
	require.NoError(t, err)
	back, err := DecodeTags(m)
	require.NoError(t, err)
	assert.Equal(t, few, back.Routes)
	assert.True(t, back.StripPrefix)
	assert.Empty(t, back.RoutesHash)

	for _, tc := range []struct{ n, length int }{{20, 40}, {100, 200}} {
		many := routesOf(t, tc.n, tc.length)
		m, err = routedAgent(many).Encode()
		require.NoError(t, err)
		assert.NotContains(t, m, tagRoutes)
		back, err = DecodeTags(m)
		require.NoError(t, err)
		assert.Nil(t, back.Routes)
		assert.Equal(t, route.Hash(many), back.RoutesHash)
		assert.Equal(t, tc.n, back.RouteCount)

		agent := startMember(t, fmt.Sprintf("agent-%d", tc.n), routedAgent(many))
		gw := startMember(t, fmt.Sprintf("gw-%d", tc.n), Tags{Role: RoleGateway, Gen: 1})
		joinAll(t, gw, agent)
		require.Eventually(t, func() bool { n, ok := gw.Member(agent.LocalNode().Name); return ok && n.Status == StatusAlive },
			5*time.Second, 10*time.Millisecond)
		stop := make(chan struct{})
		go func() {
			for {
				select {
				case q := <-agent.queries:
					_ = AnswerRoutes(q, many)
				case <-stop:
					return
				}
			}
		}()
		got, err := gw.FetchRoutes(context.Background(), agent.LocalNode().Name, back.RoutesHash, 2*time.Second)
		close(stop)
		require.NoError(t, err)
		assert.Equal(t, many, got)
		pages := RoutePages(many)
		t.Logf("%d routes of ~%d bytes: %d pages", tc.n, tc.length+20, len(pages))
		for _, p := range pages {
			assert.LessOrEqual(t, len(p.Routes), routesPageBytes)
		}
	}

	_, err = DecodeTags(map[string]string{"role": "agent", "gen": "1", "svc": "p", "img": "p:1", "ip": "127.0.0.2",
		"state": "active", "rt": "/ok http://bad/"})
	assert.ErrorContains(t, err, "tag rt")
	_, err = DecodeTags(map[string]string{"role": "agent", "gen": "1", "svc": "p", "img": "p:1", "ip": "127.0.0.2",
		"state": "active", "rth": "nothex:3"})
	assert.ErrorContains(t, err, "tag rth")
}

// A node whose tags carry only its routes' hash travels outside gossip
// (the view, the upgrade handoff) with the routes fetched, checked against
// the hash.
func TestEncodedNodeCarriesFetchedRoutes(t *testing.T) {
	many := routesOf(t, 20, 40)
	n := Node{Name: "a", Addr: netip.MustParseAddrPort("127.0.0.2:7946"), Status: StatusAlive, Tags: routedAgent(many)}
	e, err := n.Encode()
	require.NoError(t, err)
	require.NotEmpty(t, e.Routes)
	back := DecodeNode(e)
	require.NoError(t, back.Err)
	assert.Equal(t, many, back.Tags.Routes)

	e.Routes = route.Encode(many[:19]) // not the list the hash names
	assert.ErrorContains(t, DecodeNode(e).Err, "do not match")

	few := Node{Name: "b", Addr: n.Addr, Status: StatusAlive, Tags: routedAgent(many[:2])}
	e, err = few.Encode()
	require.NoError(t, err)
	assert.Empty(t, e.Routes, "inline in the tags")
}
