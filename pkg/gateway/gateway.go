// Package gateway feeds the balancer from cluster membership: every member
// event becomes a new backend set, swapped in whole. It also answers the
// agents' sync queries once the swap they wait for has happened, keeps the
// view it routes by in its data dir (view.go), and hands that view, and
// every later change, to the process that replaces it on an upgrade
// (Follow).
package gateway

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/herd-cluster/herd/pkg/balancer"
	"github.com/herd-cluster/herd/pkg/membership"
	"github.com/herd-cluster/herd/pkg/route"
)

// Config configures a Gateway.
type Config struct {
	// Service, if set, is the only service routed: every request goes to
	// its backends, whatever the routes. Empty (the default): every
	// service the agents announce, by its routes (routes.go).
	Service string
	// DefaultService takes the requests no route matches, when routing
	// every service. Empty: the only service announced, if there is
	// exactly one; else such requests are answered 404.
	DefaultService string
	// Balancer configures the proxy; its Service is set from Service.
	Balancer balancer.Config
	// EventBuffer is the length of the membership event queue. Default 1024.
	EventBuffer int
	// ViewPath, if set, is the file the gateway keeps its view in (the
	// members it routes to, and their backends' health), written at most
	// every ViewSaveDelay after a change and when Run ends, so that a
	// restarted gateway routes from its first request. Empty: not kept.
	ViewPath      string
	ViewSaveDelay time.Duration // default 1 s
	// FollowTimeout bounds how long an event waits for a follower's
	// acknowledgement; a follower that takes longer is dropped. Default 2 s.
	FollowTimeout time.Duration
	// Queries answers the other queries this gateway takes part in, by
	// name (the autoscaler's load and settings); each runs on a goroutine
	// of its own and must return by the query's deadline or ctx's end.
	Queries map[string]func(ctx context.Context, q *membership.Query)
	// Registerer, if set, receives the gateway's and the balancer's
	// Prometheus metrics.
	Registerer prometheus.Registerer
	Logger     hclog.Logger
}

// DefaultConfig returns a Config with the defaults documented on each field.
func DefaultConfig() Config {
	return Config{Balancer: balancer.DefaultConfig(), EventBuffer: 1024,
		ViewSaveDelay: time.Second, FollowTimeout: 2 * time.Second, Logger: hclog.Default()}
}

// Follower is a process following this gateway's view: the one that
// replaces it during an upgrade. Every event the gateway applies is applied
// there too before the gateway acknowledges anything that depends on it,
// so that no process of this gateway routes to a backend it acknowledged
// the withdrawal of.
type Follower interface {
	// Apply applies e and returns once the follower has, or fails.
	Apply(e membership.Event) error
}

// Gateway routes a service's requests to the backends its members announce.
type Gateway struct {
	cfg     Config
	logger  hclog.Logger
	bal     *balancer.Balancer
	events  chan membership.Event
	queries chan *membership.Query
	// requests is work for Run's goroutine from others: an event to apply
	// and wait for, or a follower to attach.
	requests chan func()

	mu sync.Mutex
	// nodes is the latest view of each member; written only by Run's
	// goroutine (or before Run), under mu. So are the routing's state
	// (routes.go): each node's service and claims, the routes' claims in
	// order, the nodes whose routes are being fetched.
	nodes     map[string]membership.Node
	serviceOf map[string]string
	holds     map[string]holding
	claims    map[route.Route][]claimant
	pending   map[string]string // node → hash of the routes to fetch
	conflicts map[conflictKey]bool
	// protoConflicts: agents whose protocol is not their service's, with
	// the protocol they announce (protocol.go).
	protoConflicts map[string]membership.Protocol
	fallback       string
	applied        map[string]uint64 // node → tag generation the balancer reflects
	present        map[string]bool   // nodes in the view
	changed        chan struct{}     // closed and replaced on every swap
	follower       Follower

	// Owned by Run's goroutine: the view file's pending write; the route
	// fetches under way; the table last given to the balancer; the
	// canaries members announce.
	dirty         bool
	saveTimer     *time.Timer
	runCtx        context.Context
	wg            sync.WaitGroup
	fetcher       RouteFetcher
	fetching      map[string]string
	table         []balancer.Route
	tableFallback string
	knownServices map[string]bool
	canaries      map[canaryKey]balancer.Split // canary.go

	eventsTotal       *prometheus.CounterVec
	eventToSwap       prometheus.Histogram
	routeConflicts    prometheus.Gauge
	routesGauge       prometheus.Gauge
	protocolConflicts prometheus.Gauge
}

// New returns a Gateway. Pass EventCh and QueryCh into the membership
// Config, then call Run with the cluster. It fails on a bad balancer
// setting.
func New(cfg Config) (*Gateway, error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.Default()
	}
	if cfg.EventBuffer <= 0 {
		cfg.EventBuffer = 1024
	}
	if cfg.ViewSaveDelay <= 0 {
		cfg.ViewSaveDelay = time.Second
	}
	if cfg.FollowTimeout <= 0 {
		cfg.FollowTimeout = 2 * time.Second
	}
	cfg.Balancer.Service = cmp.Or(cfg.Service, cfg.DefaultService)
	if cfg.Balancer.Logger == nil {
		cfg.Balancer.Logger = cfg.Logger
	}
	cfg.Balancer.Registerer = cfg.Registerer
	bal, err := balancer.New(cfg.Balancer)
	if err != nil {
		return nil, err
	}
	g := &Gateway{
		cfg:       cfg,
		logger:    cfg.Logger.Named("gateway"),
		bal:       bal,
		events:    make(chan membership.Event, cfg.EventBuffer),
		queries:   make(chan *membership.Query, 64),
		requests:  make(chan func()),
		nodes:     make(map[string]membership.Node),
		applied:   make(map[string]uint64),
		present:   make(map[string]bool),
		changed:   make(chan struct{}),
		serviceOf: make(map[string]string), holds: make(map[string]holding),
		claims: make(map[route.Route][]claimant), pending: make(map[string]string),
		conflicts: make(map[conflictKey]bool), fetching: make(map[string]string),
		protoConflicts: make(map[string]membership.Protocol),
		canaries:       make(map[canaryKey]balancer.Split),
		eventsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_gateway_membership_events_total", Help: "Membership events applied, by type.",
		}, []string{"type"}),
		eventToSwap: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "herd_gateway_event_to_swap_seconds",
			Help:    "Time from Serf delivering a membership event to the new backend set being in use.",
			Buckets: prometheus.ExponentialBuckets(0.00001, 4, 10), // 10 µs .. 2.6 s
		}),
		routeConflicts: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herd_gateway_route_conflicts",
			Help: "Route claims refused because another service claimed the route first.",
		}),
		routesGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herd_gateway_routes", Help: "Routes in the routing table.",
		}),
		protocolConflicts: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herd_gateway_protocol_conflicts",
			Help: "Agents announcing another protocol than their service's (the oldest agent's).",
		}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(g.eventsTotal, g.eventToSwap, g.routeConflicts, g.routesGauge, g.protocolConflicts)
	}
	g.reroute()
	return g, nil
}

// EventCh is where membership must deliver events.
func (g *Gateway) EventCh() chan<- membership.Event { return g.events }

// QueryCh is where membership must deliver queries.
func (g *Gateway) QueryCh() chan<- *membership.Query { return g.queries }

// Changed returns a channel that is closed once the next membership event
// has been applied. Get it before reading membership, and a change after
// that read closes it: no change is missed (the rollout coordinator's
// MembersChanged).
func (g *Gateway) Changed() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.changed
}

// Balancer exposes the balancer's state, for the admin API.
func (g *Gateway) Balancer() *balancer.Balancer { return g.bal }

// Run applies membership events and answers queries until ctx ends; then
// it saves the view and closes the balancer.
func (g *Gateway) Run(ctx context.Context) {
	g.runCtx = ctx
	defer g.wg.Wait()
	g.saveTimer = time.NewTimer(time.Hour)
	g.saveTimer.Stop()
	defer g.saveTimer.Stop()
	for {
		select {
		case <-ctx.Done():
			g.saveView()
			g.bal.Close()
			return
		case e := <-g.events:
			g.apply(e)
		case f := <-g.requests:
			f()
		case q := <-g.queries:
			g.wg.Go(func() { g.answer(ctx, q) })
		case <-g.saveTimer.C:
			g.saveView()
		}
	}
}

// do runs f on Run's goroutine and waits for it, or for ctx.
func (g *Gateway) do(ctx context.Context, f func()) error {
	done := make(chan struct{})
	select {
	case g.requests <- func() { f(); close(done) }:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Apply applies e as membership events are, on Run's goroutine, and
// returns once it is in effect (or ctx ends). Run must be running.
func (g *Gateway) Apply(ctx context.Context, e membership.Event) error {
	return g.do(ctx, func() { g.apply(e) })
}

// Sync makes nodes the whole view, as a join's full state says it is: the
// members in it are applied, members no longer in it are removed. Run must
// be running.
func (g *Gateway) Sync(ctx context.Context, nodes []membership.Node) error {
	return g.do(ctx, func() { g.sync(nodes) })
}

func (g *Gateway) sync(nodes []membership.Node) {
	seen := make(map[string]bool, len(nodes))
	var joined []membership.Node
	for _, n := range nodes {
		seen[n.Name] = true
		joined = append(joined, n)
	}
	var gone []membership.Node
	g.mu.Lock()
	for name, n := range g.nodes {
		if !seen[name] {
			gone = append(gone, n)
		}
	}
	for name := range g.serviceOf { // failed members, kept for their claims
		if _, ok := g.nodes[name]; !ok && !seen[name] {
			gone = append(gone, membership.Node{Name: name, Status: membership.StatusLeft})
		}
	}
	g.mu.Unlock()
	if len(gone) > 0 {
		g.apply(membership.Event{Type: membership.EventReap, Nodes: gone})
	}
	if len(joined) > 0 {
		g.apply(membership.Event{Type: membership.EventJoin, Nodes: joined})
	}
}

// Follow attaches f, which then gets every event the gateway applies, and
// returns the view f starts from: no event falls between the two. Run must
// be running. Follow(nil) detaches the follower.
func (g *Gateway) Follow(ctx context.Context, f Follower) (View, error) {
	var v View
	err := g.do(ctx, func() {
		g.mu.Lock()
		g.follower = f
		g.mu.Unlock()
		v = g.view()
	})
	return v, err
}

// apply folds one event into the view and swaps in the new backend set:
// only the nodes the event concerns are touched. A node's tags older than
// the generation already applied (a gossip message that arrived late, after
// a sync query carried newer ones) are ignored.
func (g *Gateway) apply(e membership.Event) {
	began := time.Now()
	g.mu.Lock()
	nodes := e.Nodes[:0:0]
	for _, n := range e.Nodes {
		up := e.Type == membership.EventJoin || e.Type == membership.EventUpdate
		if up && n.Err == nil && g.present[n.Name] && n.Tags.Gen < g.applied[n.Name] {
			continue // stale
		}
		g.knownRoutes(&n)
		nodes = append(nodes, n)
		if up {
			g.nodes[n.Name] = n
		} else { // leave, failed, reap: nothing of it is routed
			delete(g.nodes, n.Name)
		}
	}
	follower := g.follower
	g.mu.Unlock()
	if len(nodes) == 0 {
		return
	}
	e.Nodes = nodes
	g.setProtocols(nodes)
	for _, n := range nodes {
		g.setNode(e.Type, n)
	}
	g.reroute()
	if follower != nil {
		if err := follower.Apply(e); err != nil {
			g.logger.Warn("dropping the follower: it did not apply an event", "error", err)
			g.mu.Lock()
			if g.follower == follower {
				g.follower = nil
			}
			g.mu.Unlock()
		}
	}
	total := g.bal.Len()
	g.eventsTotal.WithLabelValues(e.Type.String()).Inc()
	if !e.At.IsZero() {
		g.eventToSwap.Observe(time.Since(e.At).Seconds())
	}
	g.mu.Lock()
	for _, n := range nodes {
		_, g.present[n.Name] = g.nodes[n.Name]
		if n.Err == nil && n.Tags.Gen > g.applied[n.Name] {
			g.applied[n.Name] = n.Tags.Gen
		}
		if e.Type == membership.EventReap {
			delete(g.applied, n.Name)
			delete(g.present, n.Name)
		}
	}
	close(g.changed)
	g.changed = make(chan struct{})
	g.mu.Unlock()
	g.viewChanged()
	for _, n := range nodes {
		svc := cmp.Or(g.cfg.Service, n.Tags.Service)
		g.logger.Info(e.Type.String(), "node", n.Name, "status", n.Status, "service", svc,
			"backends", len(n.Backends(svc)), "total", total, "took", time.Since(began))
	}
}

// answer acknowledges a sync query once the balancer reflects the asking
// node's tags at the requested generation, or that node is gone. A request
// that carries the node's tags, newer than what gossip gave, is applied
// first: a gateway that missed a tag change can still acknowledge it.
// Without that, it stays silent and the agent asks again.
func (g *Gateway) answer(ctx context.Context, q *membership.Query) {
	if h := g.cfg.Queries[q.Name()]; h != nil {
		h(ctx, q)
		return
	}
	if q.Name() != membership.QuerySync {
		g.logger.Debug("ignoring unknown query", "name", q.Name(), "from", q.From())
		return
	}
	req, err := membership.DecodeSyncRequest(q.Payload())
	if err != nil {
		g.logger.Warn("ignoring malformed sync query", "from", q.From(), "error", err)
		return
	}
	deadline, cancel := context.WithDeadline(ctx, q.Deadline())
	defer cancel()
	if err := g.catchUp(deadline, q.From(), req); err != nil {
		g.logger.Warn("ignoring the tags of a sync query", "node", req.Node, "from", q.From(), "error", err)
	}
	for {
		g.mu.Lock()
		// Acknowledged once in effect: its routes too, when they had to
		// be fetched.
		done := g.applied[req.Node] >= req.Gen && g.pending[req.Node] == "" || !g.present[req.Node]
		changed := g.changed
		g.mu.Unlock()
		if done {
			if err := q.Respond([]byte("ok")); err != nil {
				g.logger.Warn("sync answer", "error", err)
			}
			return
		}
		select {
		case <-changed:
		case <-deadline.Done():
			if ctx.Err() == nil {
				g.logger.Warn("sync query timed out waiting for the node's update", "node", req.Node, "gen", req.Gen)
			}
			return
		}
	}
}

// catchUp applies the tags a sync request carries when they are newer than
// what the gateway routes by. Only a node's own request is trusted with its
// tags, and only for a node the gateway routes: one it does not know gets
// its acknowledgement anyway.
func (g *Gateway) catchUp(ctx context.Context, from string, req membership.SyncRequest) error {
	if req.Tags == nil {
		return nil
	}
	g.mu.Lock()
	n, known := g.nodes[req.Node]
	newer := known && req.Gen > g.applied[req.Node]
	g.mu.Unlock()
	if !newer {
		return nil
	}
	if from != req.Node {
		return fmt.Errorf("sent by %s for %s", from, req.Node)
	}
	tags, err := membership.DecodeTags(req.Tags)
	if err != nil {
		return err
	}
	if tags.Gen != req.Gen {
		return errors.New("tags of another generation than the request's")
	}
	n.Tags, n.Err = tags, nil
	g.logger.Info("applying a node's tags from its sync query: gossip had not delivered them", "node", req.Node, "gen", req.Gen)
	return g.Apply(ctx, membership.Event{Type: membership.EventUpdate, Nodes: []membership.Node{n}, At: time.Now()})
}
