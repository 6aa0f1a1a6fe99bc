// Package balancer is Herd's HTTP load balancer. Its backend set is an
// immutable snapshot swapped whole on each membership change, so the request
// path loads one pointer and never locks. It knows nothing about gossip: the
// caller feeds it backend sets through Update.
package balancer

import (
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Backend is one address that may receive requests.
type Backend struct {
	Addr netip.AddrPort
	// Node is the cluster member that announced it; informational.
	Node string
}

// Config configures a Balancer.
type Config struct {
	// Service names what is balanced, for error pages and logs.
	Service string
	// DialTimeout bounds connecting to a backend. Default 2 s.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for a backend's response headers
	// once the request is sent. Zero: no limit. Default 60 s.
	ResponseHeaderTimeout time.Duration
	// IdleConnTimeout closes keep-alive connections to a backend unused this
	// long. Default 90 s.
	IdleConnTimeout time.Duration
	// ClientIdleTimeout closes a client connection that sends no request,
	// or not a whole request head, for this long. Default 60 s.
	ClientIdleTimeout time.Duration
	// MaxIdleConnsPerBackend bounds the keep-alive pool of each backend.
	// Default 128.
	MaxIdleConnsPerBackend int
	// Retries is how many other backends a failed request may be sent to:
	// any request that failed to connect, and bodiless GET, HEAD and OPTIONS
	// requests (or any with an Idempotency-Key header) that failed later. A
	// request whose body was read is never retried. Default 2.
	Retries int
	// EjectFor is how long a backend that refused a connection gets no new
	// requests (passive ejection). Default 3 s.
	EjectFor time.Duration
	// Logger receives the balancer's logs. Default: hclog's default logger.
	Logger hclog.Logger
}

// DefaultConfig returns a Config with the defaults documented on each field.
func DefaultConfig() Config {
	return Config{
		Service:                "service",
		DialTimeout:            2 * time.Second,
		ResponseHeaderTimeout:  60 * time.Second,
		IdleConnTimeout:        90 * time.Second,
		ClientIdleTimeout:      60 * time.Second,
		MaxIdleConnsPerBackend: 128,
		Retries:                2,
		EjectFor:               3 * time.Second,
		Logger:                 hclog.Default(),
	}
}

// Balancer is an HTTP/1.1 reverse proxy (Serve) that sends each request to
// the next backend in round robin.
type Balancer struct {
	cfg    Config
	logger hclog.Logger

	// The client side: listeners and connections, for Shutdown.
	srvMu     sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*clientConn]struct{}
	srvWG     sync.WaitGroup
	shutting  atomic.Bool

	retries, ejections atomic.Uint64

	snap atomic.Pointer[snapshot]
	rr   atomic.Uint64

	updateMu sync.Mutex // serialises updates; guards the fields below
	registry map[netip.AddrPort]*backend
	byNode   map[string][]*backend // each sorted by address
	pending  []*backend            // the next set, built by SetNode
	swaps    atomic.Uint64
}

// New returns a Balancer with no backends: it answers 503 until Update.
func New(cfg Config) *Balancer {
	if cfg.Logger == nil {
		cfg.Logger = hclog.Default()
	}
	if cfg.ClientIdleTimeout <= 0 {
		cfg.ClientIdleTimeout = 60 * time.Second
	}
	b := &Balancer{
		cfg:       cfg,
		logger:    cfg.Logger.Named("balancer"),
		registry:  make(map[netip.AddrPort]*backend),
		byNode:    make(map[string][]*backend),
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*clientConn]struct{}),
	}
	b.snap.Store(&snapshot{})
	return b
}

// Update replaces the whole backend set. Backends that stay keep their
// state and connections; removed ones get no new requests, finish what they
// serve, and have their idle connections closed. Safe to call from any
// goroutine. SetNode is the cheaper way to apply one member's change.
func (b *Balancer) Update(backends []Backend) {
	b.updateMu.Lock()
	defer b.updateMu.Unlock()
	groups := map[string][]netip.AddrPort{}
	for _, be := range backends {
		groups[be.Node] = append(groups[be.Node], be.Addr)
	}
	for node := range b.byNode {
		if _, ok := groups[node]; !ok {
			b.setNodeLocked(node, nil, false)
		}
	}
	for node, addrs := range groups {
		b.setNodeLocked(node, addrs, false)
	}
	b.publishLocked()
}

// SetNode replaces the backends one node announces (none: the node is gone)
// and swaps in the new set. It costs one pass over the set's pointers and
// allocates the new set's array and the node's new backends only; when
// nothing changed for the node it does nothing.
func (b *Balancer) SetNode(node string, addrs []netip.AddrPort) {
	b.updateMu.Lock()
	defer b.updateMu.Unlock()
	if b.setNodeLocked(node, addrs, true) {
		b.publishLocked()
	}
}

// setNodeLocked updates the registry for node and reports whether its
// backends changed. With patch, it also builds the next flat set from the
// current one (b.pending); otherwise publishLocked rebuilds it whole.
func (b *Balancer) setNodeLocked(node string, addrs []netip.AddrPort, patch bool) bool {
	old := b.byNode[node]
	addrs = slices.Clone(addrs)
	slices.SortFunc(addrs, func(x, y netip.AddrPort) int { return x.Compare(y) })
	addrs = slices.Compact(addrs)
	if len(old) == len(addrs) && !slices.ContainsFunc(old, func(be *backend) bool {
		_, found := slices.BinarySearchFunc(addrs, be.addr, func(x, y netip.AddrPort) int { return x.Compare(y) })
		return !found
	}) {
		return false
	}
	next := make([]*backend, 0, len(addrs))
	keep := make(map[netip.AddrPort]bool, len(addrs))
	for _, addr := range addrs {
		st, ok := b.registry[addr]
		switch {
		case !ok:
			st = newBackend(Backend{Addr: addr, Node: node}, b.cfg)
			b.registry[addr] = st
			b.started(st)
		case st.node != node:
			b.logger.Warn("address announced by two nodes; keeping the first", "addr", addr, "node", st.node, "other", node)
			continue
		}
		keep[addr] = true
		next = append(next, st)
	}
	for _, st := range old {
		if !keep[st.addr] {
			delete(b.registry, st.addr)
			b.retired(st)
		}
	}
	if len(next) == 0 {
		delete(b.byNode, node)
	} else {
		b.byNode[node] = next
	}
	if patch {
		cur := b.snap.Load().backends
		flat := make([]*backend, 0, len(cur)-len(old)+len(next))
		for _, be := range cur {
			if be.node != node {
				flat = append(flat, be)
			}
		}
		b.pending = append(flat, next...)
	}
	return true
}

// publishLocked swaps in b.pending, or a set rebuilt from byNode.
func (b *Balancer) publishLocked() {
	flat := b.pending
	if flat == nil {
		nodes := make([]string, 0, len(b.byNode))
		for n := range b.byNode {
			nodes = append(nodes, n)
		}
		slices.Sort(nodes)
		for _, n := range nodes {
			flat = append(flat, b.byNode[n]...)
		}
	}
	b.pending = nil
	b.snap.Store(&snapshot{backends: flat})
	b.swaps.Add(1)
}

// started and retired hook backend lifecycles (health checks, metrics).
func (b *Balancer) started(be *backend) {}

func (b *Balancer) retired(be *backend) { be.retire() }

// BackendStatus is a backend's live state, for the admin API.
type BackendStatus struct {
	Addr     netip.AddrPort `json:"addr"`
	Node     string         `json:"node"`
	State    string         `json:"state"` // "up" or "ejected"
	InFlight int64          `json:"in_flight"`
	Requests uint64         `json:"requests"`
	Failures uint64         `json:"failures"`
}

// Backends returns the current backend set with each backend's state.
func (b *Balancer) Backends() []BackendStatus {
	now := time.Now().UnixNano()
	snap := b.snap.Load()
	out := make([]BackendStatus, len(snap.backends))
	for i, be := range snap.backends {
		state := "up"
		if be.ejected(now) {
			state = "ejected"
		}
		out[i] = BackendStatus{
			Addr: be.addr, Node: be.node, State: state, InFlight: be.inflight.Load(),
			Requests: be.requests.Load(), Failures: be.failures.Load(),
		}
	}
	return out
}

// Len is the number of backends in the current set.
func (b *Balancer) Len() int { return len(b.snap.Load().backends) }

// record accounts for one answered request.
func (b *Balancer) record(be *backend, status int, st *relayState) {}

// Close closes idle connections to every backend.
func (b *Balancer) Close() {
	b.updateMu.Lock()
	defer b.updateMu.Unlock()
	for _, st := range b.registry {
		st.closeIdle()
	}
}
