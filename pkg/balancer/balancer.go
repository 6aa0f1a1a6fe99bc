// Package balancer is Herd's HTTP load balancer: an HTTP/1.1 reverse proxy
// over a backend set that membership feeds, one member at a time (SetNode).
// It knows nothing about gossip.
//
// The parts, a file each: the set and each backend's state that outlives
// set swaps (hosts.go), the choice of a backend (selection.go), active
// health checks (health.go), the keep-alive pool (pool.go), the queue of
// requests waiting for a backend with room (queue.go), metrics
// (metrics.go), the listener side (server.go), the HTTP/1.1 wire (http1.go
// parses heads, wire.go writes them and copies bodies), and the exchange of
// one request and its answer (exchange.go), which two relays drive: a
// goroutine per connection (relay.go) and event loops (loop_linux.go, over
// internal/netpoll).
//
// The backend set is an immutable snapshot swapped whole on each change, so
// the request path loads one pointer and never locks.
package balancer

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Backend states, as Backends and the metrics report them.
const (
	StateUp        = "up"
	StateDown      = "down"       // failing its active health check
	StateEjected   = "ejected"    // passive ejection after a refused or reset connection
	StateSlowStart = "slow_start" // up, its share of traffic still ramping
)

// Balancer is an HTTP/1.1 reverse proxy (Serve) that sends each request to
// a backend of its set, chosen by Config.Balance.
type Balancer struct {
	cfg    Config
	logger hclog.Logger

	reg    *registry
	sel    selector
	health *healthChecker // nil: active checks are off
	m      *metrics
	queue  waitQueue

	srv   *server
	loops loopSet
	// closing: every answer closes its connection (StopAccepting or
	// Shutdown began); shutting: idle connections are closed too (Shutdown).
	closing, shutting atomic.Bool
	closingSince      atomic.Int64 // unix nanoseconds closing began
	closed            atomic.Bool
}

// New returns a Balancer with no backends: it answers 503 until SetNode.
// It fails on a bad setting.
func New(cfg Config) (*Balancer, error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.Default()
	}
	if cfg.ClientIdleTimeout <= 0 {
		cfg.ClientIdleTimeout = 60 * time.Second
	}
	if cfg.ClientHeaderTimeout <= 0 {
		cfg.ClientHeaderTimeout = 10 * time.Second
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	every, err := accessEvery(cfg.AccessLog, cfg.AccessLogSample)
	if err != nil {
		return nil, err
	}
	b := &Balancer{cfg: cfg, logger: cfg.Logger.Named("balancer"), reg: newRegistry(), srv: newServer()}
	b.sel = newSelector(&b.cfg)
	b.m = newMetrics(b, cfg.Registerer, cfg.Logger.Named("access"), every)
	b.health = newHealthChecker(&b.cfg, b.logger, func() { b.m.ejections.Add(1) })
	b.loops.b = b
	return b, nil
}

// SetNode replaces the backends one member announces (none: the member is
// gone) and swaps in the new set. Backends that stay keep their state and
// connections; removed ones get no new requests, finish what they serve, and
// have their idle connections closed. An address another member announced
// first stays that member's. When nothing changed for the member it does
// nothing. Safe from any goroutine.
func (b *Balancer) SetNode(node string, addrs []netip.AddrPort) {
	b.reg.setNode(node, addrs, func(addr netip.AddrPort) *host {
		return newHost(addr, node, &b.cfg, &b.queue)
	}, hostEvents{
		added: func(h *host) {
			b.m.added(h)
			if b.health != nil && !b.closed.Load() {
				b.health.watch(h)
			}
		},
		removed: func(h *host) {
			h.retire()
			b.m.removed(h)
		},
		taken: func(addr netip.AddrPort, node, owner string) {
			b.logger.Warn("address announced by two nodes; keeping the first", "addr", addr, "node", owner, "other", node)
		},
	})
}

// BackendStatus is a backend's live state.
type BackendStatus struct {
	Addr     netip.AddrPort
	Node     string
	State    string // StateUp, StateDown, StateEjected or StateSlowStart
	InFlight int64
	Requests uint64
	Failures uint64
}

// Backends returns the current backend set with each backend's state.
func (b *Balancer) Backends() []BackendStatus {
	now := time.Now().UnixNano()
	set := b.reg.set.Load()
	out := make([]BackendStatus, len(set.hosts))
	for i, h := range set.hosts {
		state := StateUp
		switch {
		case h.down.Load():
			state = StateDown
		case h.ejected(now):
			state = StateEjected
		case b.cfg.SlowStart > 0 && now-h.upSince.Load() < int64(b.cfg.SlowStart):
			state = StateSlowStart
		}
		out[i] = BackendStatus{
			Addr: h.addr, Node: h.node, State: state, InFlight: h.inflight.Load(),
			Requests: h.requests.Load(), Failures: h.failures.Load(),
		}
	}
	return out
}

// Len is the number of backends in the current set.
func (b *Balancer) Len() int { return len(b.reg.set.Load().hosts) }

// Close stops what the Balancer runs besides serving: the health checks,
// and closes the idle connections to every backend. Call it after
// Shutdown. Safe to call more than once.
func (b *Balancer) Close() {
	b.closed.Store(true)
	if b.health != nil {
		b.health.stop()
	}
	b.loops.stop()
	b.reg.each(func(h *host) { h.pool.closeAll() })
}

// RestoreHealth takes out of rotation the backends a previous view had out,
// by address: StateDown ones until their active checks pass (or, without
// checks, for EjectFor), StateEjected ones for EjectFor. Other states and
// unknown addresses are ignored.
func (b *Balancer) RestoreHealth(states map[string]string) {
	if len(states) == 0 {
		return
	}
	for _, h := range b.reg.set.Load().hosts {
		switch states[h.hostPort] {
		case StateDown:
			h.eject(b.cfg.EjectFor, b.health != nil)
		case StateEjected:
			h.eject(b.cfg.EjectFor, false)
		}
	}
}
