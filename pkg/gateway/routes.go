package gateway

import (
	"cmp"
	"context"
	"errors"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/herd-cluster/herd/pkg/balancer"
	"github.com/herd-cluster/herd/pkg/membership"
	"github.com/herd-cluster/herd/pkg/route"
)

// A gateway that routes every service (Config.Service "") builds its
// routing table from the routes the agents announce. Each route is claimed
// by the services whose agents announce it; the first claim the gateway saw
// keeps the route until no agent of that service announces it any more
// (they changed their routes, left, or were reaped: a failed agent keeps
// its claim, so that a partition hands nothing over). Later claims are
// refused, reported (Routes, a metric, one log line) and queued: the
// earliest takes over when the route is free. Claims seen at once (a
// gateway's first join) are ordered by the lowest generation of the agents
// announcing them (an agent's generation starts at its start time), then
// by service name. The order is kept in the view, so a restarted or
// upgraded gateway keeps it.

// holding is what one node's tags claim.
type holding struct {
	service string
	routes  []route.Route
	strip   bool
	gen     uint64
}

// claimant is a service's claim on a route, from the nodes announcing it.
type claimant struct {
	service string
	gen     uint64 // the lowest generation among them
	strip   bool   // that node's --strip-prefix
}

// RouteFetcher fetches a node's routes when its tags carry only their hash
// (membership.Cluster).
type RouteFetcher interface {
	FetchRoutes(ctx context.Context, node, hash string, timeout time.Duration) ([]route.Route, error)
}

// routeFetchTimeout bounds one page of a route fetch.
const routeFetchTimeout = 2 * time.Second

// RouteStatus is one route's claim as Routes reports it.
type RouteStatus struct {
	Route   route.Route
	Service string
	// StripPrefix: the prefix is removed from the path the backends get.
	StripPrefix bool
	// State is RouteOK, RouteNoBackends or RouteConflict (the claim is
	// refused: HeldBy has the route).
	State  string
	HeldBy string
	// Backends is how many of the service's backends are in rotation.
	Backends int
}

// Route states.
const (
	RouteOK         = "ok"
	RouteNoBackends = "no backends"
	RouteConflict   = "conflict"
)

// RoutingStatus is the gateway's routing: the routes, in precedence order,
// and the service that takes the requests none matches ("" none: they are
// answered 404).
type RoutingStatus struct {
	Routes   []RouteStatus
	Fallback string
	// AllServices: the gateway routes every service by its routes; false,
	// it routes Service only, every request to it.
	AllServices bool
	Service     string
}

// setNode points the balancer at what a node announces now, and records
// its routes (Run's goroutine, or before Run).
func (g *Gateway) setNode(e membership.EventType, n membership.Node) {
	up := e == membership.EventJoin || e == membership.EventUpdate
	backends := func(svc string) []netip.AddrPort {
		if !up { // leave, failed, reap: nothing of it is routed
			return nil
		}
		return n.Backends(svc)
	}
	if g.cfg.Service != "" { // one service, every request to it
		g.bal.SetNode(n.Name, backends(g.cfg.Service))
		g.setArms(g.cfg.Service, n, up)
		return
	}
	prev, had := g.serviceOf[n.Name]
	svc := prev
	if n.Err == nil {
		svc = ""
		if n.Tags.Role == membership.RoleAgent {
			svc = n.Tags.Service
		}
	}
	if had && prev != svc {
		g.bal.Service(prev).SetNode(n.Name, nil)
		g.setArms(prev, n, false)
	}
	if svc != "" {
		g.bal.Service(svc).SetNode(n.Name, backends(svc))
		g.setArms(svc, n, up)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	gone := e == membership.EventLeave || e == membership.EventReap || n.Status == membership.StatusLeft
	switch {
	case gone || svc == "":
		delete(g.serviceOf, n.Name)
		delete(g.holds, n.Name)
		delete(g.pending, n.Name)
	case n.Err != nil: // malformed tags: what it claimed stays as it was
		g.serviceOf[n.Name] = svc
	case (up || e == membership.EventFailed) && (n.Tags.RoutesHash == "" || n.Tags.Routes != nil):
		g.serviceOf[n.Name] = svc
		g.holds[n.Name] = holding{service: svc, routes: n.Tags.Routes, strip: n.Tags.StripPrefix, gen: n.Tags.Gen}
		delete(g.pending, n.Name)
	case up: // only the routes' hash: fetched, and until then it claims what it did
		g.serviceOf[n.Name] = svc
		g.pending[n.Name] = n.Tags.RoutesHash
		g.fetchRoutes(n.Name, n.Tags.RoutesHash)
	default: // failed: keeps its claims
		g.serviceOf[n.Name] = svc
	}
}

// knownRoutes fills in the routes of a node whose tags carry only their
// hash, from the view, when the hash has not changed.
func (g *Gateway) knownRoutes(n *membership.Node) {
	if n.Err != nil || n.Tags.RoutesHash == "" || n.Tags.Routes != nil {
		return
	}
	if old, ok := g.nodes[n.Name]; ok && old.Tags.RoutesHash == n.Tags.RoutesHash {
		n.Tags.Routes = old.Tags.Routes
	}
}

// reroute rebuilds the routing table from the claims (Run's goroutine, or
// before Run) and swaps it into the balancer if it changed.
func (g *Gateway) reroute() {
	if g.cfg.Service != "" {
		return
	}
	g.mu.Lock()
	want := make(map[route.Route]map[string]claimant)
	services := make(map[string]bool)
	for _, svc := range g.serviceOf {
		services[svc] = true
	}
	for _, h := range g.holds {
		for _, r := range h.routes {
			m := want[r]
			if m == nil {
				m = make(map[string]claimant)
				want[r] = m
			}
			if c, ok := m[h.service]; !ok || h.gen < c.gen {
				m[h.service] = claimant{service: h.service, gen: h.gen, strip: h.strip}
			}
		}
	}
	// Claims that stand keep their place; new ones queue behind them.
	claims := make(map[route.Route][]claimant, len(want))
	for r, m := range want {
		var order []claimant
		for _, svc := range g.claims[r] {
			if c, ok := m[svc.service]; ok {
				order = append(order, c)
				delete(m, svc.service)
			}
		}
		fresh := slices.Collect(maps.Values(m))
		slices.SortFunc(fresh, func(a, b claimant) int {
			return cmp.Or(cmp.Compare(a.gen, b.gen), cmp.Compare(a.service, b.service))
		})
		claims[r] = append(order, fresh...)
	}
	g.claims = claims
	fallback := g.cfg.DefaultService
	if fallback == "" && len(services) == 1 {
		for svc := range services {
			fallback = svc
		}
	}
	var table []balancer.Route
	refused := 0
	for r, cs := range claims {
		table = append(table, balancer.Route{Route: r, Service: cs[0].service, StripPrefix: cs[0].strip})
		refused += len(cs) - 1
		for _, c := range cs[1:] {
			key := conflictKey{r, c.service}
			if !g.conflicts[key] {
				g.conflicts[key] = true
				g.logger.Warn("route refused: another service claimed it first", "route", r.String(),
					"service", c.service, "held_by", cs[0].service)
			}
		}
		if g.conflicts[conflictKey{r, cs[0].service}] {
			g.logger.Info("route passes to the next service that claimed it", "route", r.String(), "service", cs[0].service)
		}
	}
	for key := range g.conflicts {
		if cs := claims[key.route]; len(cs) == 0 || cs[0].service == key.service ||
			!slices.ContainsFunc(cs, func(c claimant) bool { return c.service == key.service }) {
			delete(g.conflicts, key)
		}
	}
	g.fallback = fallback
	g.mu.Unlock()
	balancer.SortRoutes(table)
	g.routeConflicts.Set(float64(refused))
	g.routesGauge.Set(float64(len(table)))
	if !slices.Equal(table, g.table) || fallback != g.tableFallback || g.table == nil {
		g.bal.SetRoutes(table, fallback)
		g.table, g.tableFallback = table, fallback
		if g.table == nil {
			g.table = []balancer.Route{}
		}
	}
	// Services nothing announces any more are taken out.
	for svc := range g.knownServices {
		if !services[svc] && svc != g.cfg.DefaultService {
			g.bal.RemoveService(svc)
		}
	}
	g.knownServices = services
}

type conflictKey struct {
	route   route.Route
	service string
}

// SetRouteFetcher gives the gateway the means to fetch the routes of nodes
// whose tags carry only their hash; fetches waiting for it start. Run must
// be running.
func (g *Gateway) SetRouteFetcher(ctx context.Context, f RouteFetcher) error {
	return g.do(ctx, func() {
		g.fetcher = f
		g.mu.Lock()
		pending := maps.Clone(g.pending)
		g.mu.Unlock()
		for node, hash := range pending {
			g.fetchRoutes(node, hash)
		}
	})
}

// fetchRoutes fetches a node's routes in the background, retrying, until
// they come or the node's tags announce other ones; then they are applied
// as an update of the node. Run's goroutine; g.mu held or not needed.
func (g *Gateway) fetchRoutes(node, hash string) {
	if g.fetcher == nil || g.runCtx == nil || g.fetching[node] == hash {
		return // started once the fetcher is set, or already under way
	}
	g.fetching[node] = hash
	ctx, f := g.runCtx, g.fetcher
	g.wg.Go(func() {
		defer func() { _ = g.do(ctx, func() { delete(g.fetching, node) }) }()
		for attempt, wait := 1, 100*time.Millisecond; ; attempt++ {
			routes, err := f.FetchRoutes(ctx, node, hash, routeFetchTimeout)
			still := false
			if derr := g.do(ctx, func() {
				g.mu.Lock()
				still = g.pending[node] == hash
				g.mu.Unlock()
				if still && err == nil {
					g.routesFetched(node, hash, routes)
				}
			}); derr != nil || !still || err == nil {
				return
			}
			if attempt == 1 || attempt%10 == 0 {
				g.logger.Warn("could not fetch a node's routes; retrying", "node", node, "attempt", attempt, "error", err)
			}
			if errors.Is(err, membership.ErrRoutesChanged) {
				wait = 100 * time.Millisecond // its new tags are on their way
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, 5*time.Second)
		}
	})
}

// routesFetched applies the routes fetched for a node whose tags still
// announce them.
func (g *Gateway) routesFetched(node, hash string, routes []route.Route) {
	g.mu.Lock()
	n, ok := g.nodes[node]
	g.mu.Unlock()
	if !ok || n.Err != nil || n.Tags.RoutesHash != hash {
		return
	}
	n.Tags.Routes = routes
	g.logger.Info("fetched a node's routes", "node", node, "routes", len(routes))
	g.apply(membership.Event{Type: membership.EventUpdate, Nodes: []membership.Node{n}, At: time.Now()})
}

// Routing returns the gateway's routing: every route claimed, with the
// claims refused.
func (g *Gateway) Routing() RoutingStatus {
	up := make(map[string]int)
	for _, st := range g.bal.Backends() {
		if st.State == balancer.StateUp || st.State == balancer.StateSlowStart {
			up[st.Service]++
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	rs := RoutingStatus{Fallback: g.fallback, AllServices: g.cfg.Service == "", Service: g.cfg.Service}
	if !rs.AllServices {
		rs.Fallback = g.cfg.Service
	}
	var table []balancer.Route
	for r, cs := range g.claims {
		table = append(table, balancer.Route{Route: r, Service: cs[0].service})
	}
	balancer.SortRoutes(table)
	for _, t := range table {
		for i, c := range g.claims[t.Route] {
			st := RouteStatus{Route: t.Route, Service: c.service, StripPrefix: c.strip && t.Prefix != "/", Backends: up[c.service]}
			switch {
			case i > 0:
				st.State, st.HeldBy = RouteConflict, t.Service
			case st.Backends == 0:
				st.State = RouteNoBackends
			default:
				st.State = RouteOK
			}
			rs.Routes = append(rs.Routes, st)
		}
	}
	return rs
}
