// Package gateway feeds the balancer from cluster membership: every member
// event becomes a new backend set, swapped in whole. It also answers the
// agents' sync queries once the swap they wait for has happened.
package gateway

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/herd-cluster/herd/pkg/balancer"
	"github.com/herd-cluster/herd/pkg/membership"
)

// Config configures a Gateway.
type Config struct {
	// Service is the service whose backends are routed. Default "predictor".
	Service string
	// Balancer configures the proxy; its Service is set from Service.
	Balancer balancer.Config
	// EventBuffer is the length of the membership event queue. Default 1024.
	EventBuffer int
	// Registerer, if set, receives the gateway's and the balancer's
	// Prometheus metrics.
	Registerer prometheus.Registerer
	Logger     hclog.Logger
}

// DefaultConfig returns a Config with the defaults documented on each field.
func DefaultConfig() Config {
	return Config{Service: "predictor", Balancer: balancer.DefaultConfig(), EventBuffer: 1024, Logger: hclog.Default()}
}

// Gateway routes a service's requests to the backends its members announce.
type Gateway struct {
	cfg     Config
	logger  hclog.Logger
	bal     *balancer.Balancer
	events  chan membership.Event
	queries chan *membership.Query

	// nodes is the latest view of each member; owned by Run's goroutine.
	nodes map[string]membership.Node

	mu      sync.Mutex
	applied map[string]uint64 // node → tag generation the balancer reflects
	present map[string]bool   // nodes in the view
	changed chan struct{}     // closed and replaced on every swap

	eventsTotal *prometheus.CounterVec
	eventToSwap prometheus.Histogram
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
	cfg.Balancer.Service = cfg.Service
	if cfg.Balancer.Logger == nil {
		cfg.Balancer.Logger = cfg.Logger
	}
	cfg.Balancer.Registerer = cfg.Registerer
	bal, err := balancer.New(cfg.Balancer)
	if err != nil {
		return nil, err
	}
	g := &Gateway{
		cfg:     cfg,
		logger:  cfg.Logger.Named("gateway"),
		bal:     bal,
		events:  make(chan membership.Event, cfg.EventBuffer),
		queries: make(chan *membership.Query, 64),
		nodes:   make(map[string]membership.Node),
		applied: make(map[string]uint64),
		present: make(map[string]bool),
		changed: make(chan struct{}),
		eventsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_gateway_membership_events_total", Help: "Membership events applied, by type.",
		}, []string{"type"}),
		eventToSwap: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "herd_gateway_event_to_swap_seconds",
			Help:    "Time from Serf delivering a membership event to the new backend set being in use.",
			Buckets: prometheus.ExponentialBuckets(0.00001, 4, 10), // 10 µs .. 2.6 s
		}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(g.eventsTotal, g.eventToSwap)
	}
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

// Run applies membership events and answers queries until ctx ends.
func (g *Gateway) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			g.bal.Close()
			return
		case e := <-g.events:
			g.apply(e)
		case q := <-g.queries:
			wg.Go(func() { g.answer(ctx, q) })
		}
	}
}

// apply folds one event into the view and swaps in the new backend set:
// only the nodes the event concerns are touched.
func (g *Gateway) apply(e membership.Event) {
	began := time.Now()
	for _, n := range e.Nodes {
		switch e.Type {
		case membership.EventJoin, membership.EventUpdate:
			g.nodes[n.Name] = n
			g.bal.SetNode(n.Name, n.Backends(g.cfg.Service))
		default: // leave, failed, reap: nothing of it is routed
			delete(g.nodes, n.Name)
			g.bal.SetNode(n.Name, nil)
		}
	}
	total := g.bal.Len()
	g.eventsTotal.WithLabelValues(e.Type.String()).Inc()
	if !e.At.IsZero() {
		g.eventToSwap.Observe(time.Since(e.At).Seconds())
	}
	g.mu.Lock()
	for _, n := range e.Nodes {
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
	for _, n := range e.Nodes {
		g.logger.Info(e.Type.String(), "node", n.Name, "status", n.Status, "backends", len(n.Backends(g.cfg.Service)),
			"total", total, "took", time.Since(began))
	}
}

// answer acknowledges a sync query once the balancer reflects the asking
// node's tags at the requested generation, or that node is gone. Without
// that, it stays silent and the agent sees it did not answer.
func (g *Gateway) answer(ctx context.Context, q *membership.Query) {
	if q.Name() != membership.QuerySync {
		g.logger.Debug("ignoring unknown query", "name", q.Name(), "from", q.From())
		return
	}
	req, err := membership.DecodeSyncRequest(q.Payload())
	if err != nil {
		g.logger.Warn("ignoring malformed sync query", "from", q.From(), "error", err)
		return
	}
	deadline := time.NewTimer(time.Until(q.Deadline()))
	defer deadline.Stop()
	for {
		g.mu.Lock()
		done := g.applied[req.Node] >= req.Gen || !g.present[req.Node]
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
		case <-deadline.C:
			g.logger.Warn("sync query timed out waiting for the node's update", "node", req.Node, "gen", req.Gen)
			return
		case <-ctx.Done():
			return
		}
	}
}
