// Package balancer is Herd's HTTP load balancer. Its backend set is an
// immutable snapshot swapped whole on each membership change, so the request
// path loads one pointer and never locks. It knows nothing about gossip: the
// caller feeds it backend sets through Update.
package balancer

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
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
	// EjectFor is how long a backend that refused or reset a connection gets
	// no new requests (passive ejection) when active checks are off. With
	// them on, it is out until Rise checks in a row pass. Default 3 s.
	EjectFor time.Duration
	// Active health checks: GET HealthPath every HealthInterval (0: off),
	// each within HealthTimeout; Fall failures in a row take a backend out,
	// Rise successes bring it back. Defaults /healthz, 2 s, 1 s, 2, 3.
	HealthPath     string
	HealthInterval time.Duration
	HealthTimeout  time.Duration
	Rise, Fall     int
	// Balance chooses the backend of each request: RoundRobin (the
	// default) or LeastRequest.
	Balance Algorithm
	// BackendMaxConns caps the requests in flight to each backend (0, the
	// default: no cap). When every backend is at its cap, requests wait in
	// the gateway, first come first served, for the first one with room,
	// at most QueueTimeout (then 503), as HAProxy's server maxconn and
	// timeout queue. A few per backend keeps the queue in the gateway,
	// where it is fair, instead of in the backends.
	BackendMaxConns int
	QueueTimeout    time.Duration
	// SlowStart ramps a backend that just joined or came back from 0 to its
	// full share of requests over this long. Default 0: off.
	SlowStart time.Duration
	// AccessLog logs one line per request, through Logger named "access":
	// "off" (default), "on", or "sampled" (AccessLogSample of them).
	AccessLog       string
	AccessLogSample float64
	// EventLoop relays the common exchange (a request whose body came with
	// its head, answered with a small Content-Length body) on event loop
	// threads, and the rest on a goroutine per connection; false: a
	// goroutine per connection for everything. Linux only; not with
	// BackendMaxConns. Default true.
	EventLoop bool
	// EventLoopThreads is how many event loops share the client
	// connections (each its own thread); 0: one per two CPUs
	// (GOMAXPROCS), at least one.
	EventLoopThreads int
	// Registerer, if set, receives the balancer's Prometheus metrics.
	Registerer prometheus.Registerer
	// Logger receives the balancer's logs. Default: hclog's default logger.
	Logger hclog.Logger
}

// Algorithm is how a Balancer chooses the backend of each request.
type Algorithm string

const (
	// RoundRobin sends each request to the next backend in turn, as
	// HAProxy's roundrobin.
	RoundRobin Algorithm = "round-robin"
	// LeastRequest sends each request to the less busy (fewer requests in
	// flight) of two backends picked at random, as Envoy's least_request:
	// a backend that slows down (a pause, a busy host) gets less traffic
	// until it catches up. Like HAProxy's leastconn, at constant cost.
	LeastRequest Algorithm = "least-request"
)

// ParseAlgorithm returns the Algorithm a name spells ("" is RoundRobin).
func ParseAlgorithm(name string) (Algorithm, error) {
	switch a := Algorithm(name); a {
	case "", RoundRobin:
		return RoundRobin, nil
	case LeastRequest:
		return a, nil
	}
	return "", fmt.Errorf("balance %q: want %s or %s", name, RoundRobin, LeastRequest)
}

// Backend states, as Backends and the metrics report them.
const (
	StateUp        = "up"
	StateDown      = "down"       // failing its active health check
	StateEjected   = "ejected"    // passive ejection after a refused or reset connection
	StateSlowStart = "slow_start" // up, its share of traffic still ramping
)

func (c *Config) validate() error {
	switch {
	case c.HealthInterval < 0:
		return fmt.Errorf("health interval %s: must not be negative", c.HealthInterval)
	case c.HealthInterval > 0 && (c.HealthTimeout <= 0 || c.HealthTimeout > c.HealthInterval):
		return fmt.Errorf("health timeout %s: want more than 0 and at most the interval %s", c.HealthTimeout, c.HealthInterval)
	case c.HealthInterval > 0 && (c.Rise < 1 || c.Fall < 1):
		return fmt.Errorf("health rise %d and fall %d: want at least 1", c.Rise, c.Fall)
	case c.HealthInterval > 0 && (c.HealthPath == "" || c.HealthPath[0] != '/'):
		return fmt.Errorf("health path %q: want a path starting with /", c.HealthPath)
	case c.Retries < 0 || c.Retries > 7:
		return fmt.Errorf("retries %d: want 0 to 7", c.Retries)
	case c.EventLoopThreads < 0:
		return fmt.Errorf("event loop threads %d: must not be negative", c.EventLoopThreads)
	case c.BackendMaxConns < 0:
		return fmt.Errorf("backend max conns %d: must not be negative", c.BackendMaxConns)
	case c.BackendMaxConns > 0 && c.QueueTimeout <= 0:
		return fmt.Errorf("queue timeout %s: want more than 0 with a backend max conns", c.QueueTimeout)
	case c.SlowStart < 0:
		return fmt.Errorf("slow start %s: must not be negative", c.SlowStart)
	}
	_, err := ParseAlgorithm(string(c.Balance))
	return err
}

// accessEvery turns the access log settings into "log one request in n"
// (0: none).
func accessEvery(mode string, sample float64) (uint64, error) {
	switch mode {
	case "", "off":
		return 0, nil
	case "on":
		return 1, nil
	case "sampled":
		if sample <= 0 || sample > 1 {
			return 0, fmt.Errorf("access log sample %v: want a fraction in (0, 1]", sample)
		}
		return uint64(math.Round(1 / sample)), nil
	}
	return 0, fmt.Errorf("access log %q: want off, on or sampled", mode)
}

// DefaultConfig returns a Config with the defaults documented on each field.
func DefaultConfig() Config {
	return Config{
		Service:                "service",
		DialTimeout:            2 * time.Second,
		ResponseHeaderTimeout:  60 * time.Second,
		IdleConnTimeout:        90 * time.Second,
		ClientIdleTimeout:      60 * time.Second,
		EventLoop:              true,
		MaxIdleConnsPerBackend: 128,
		Retries:                2,
		Balance:                RoundRobin,
		QueueTimeout:           5 * time.Second,
		EjectFor:               3 * time.Second,
		HealthPath:             "/healthz",
		HealthInterval:         2 * time.Second,
		HealthTimeout:          time.Second,
		Rise:                   2,
		Fall:                   3,
	}
}

// Balancer is an HTTP/1.1 reverse proxy (Serve) that sends each request to
// the next backend in round robin, or to the less busy of two (Config.Balance).
type Balancer struct {
	cfg    Config
	logger hclog.Logger

	// The client side: listeners and connections, for Shutdown.
	srvMu     sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*clientConn]struct{}
	srvWG     sync.WaitGroup
	loopMu    sync.Mutex
	loops     atomic.Pointer[loopSet] // started by the first Serve when Config.EventLoop
	noLoop    atomic.Bool             // the event loops could not start
	shutting  atomic.Bool

	retries, ejections atomic.Uint64
	queue              waitQueue
	queueTimeouts      atomic.Uint64
	m                  *metrics
	access             hclog.Logger
	accessEvery        uint64
	accessN            atomic.Uint64
	health             *http.Client

	snap atomic.Pointer[snapshot]
	rr   atomic.Uint64

	updateMu sync.Mutex // serialises updates; guards the fields below
	registry map[netip.AddrPort]*backend
	byNode   map[string][]*backend // each sorted by address
	pending  []*backend            // the next set, built by SetNode
	swaps    atomic.Uint64
}

// New returns a Balancer with no backends: it answers 503 until Update.
// It fails only on a bad access log setting.
func New(cfg Config) (*Balancer, error) {
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
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	every, err := accessEvery(cfg.AccessLog, cfg.AccessLogSample)
	if err != nil {
		return nil, err
	}
	b.accessEvery, b.access = every, cfg.Logger.Named("access")
	b.m = newMetrics(b, cfg.Registerer)
	if b.activeChecks() {
		b.health = b.newHealthClient()
	}
	b.snap.Store(&snapshot{})
	return b, nil
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
			st = newBackend(Backend{Addr: addr, Node: node}, b.cfg, &b.queue)
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
func (b *Balancer) started(be *backend) {
	be.upSince.Store(time.Now().UnixNano())
	b.m.startedMetrics(be)
	if b.activeChecks() {
		go b.healthLoop(be)
	}
}

func (b *Balancer) retired(be *backend) {
	be.retire()
	b.m.retiredMetrics(be)
}

// BackendStatus is a backend's live state, for the admin API.
type BackendStatus struct {
	Addr     netip.AddrPort `json:"addr"`
	Node     string         `json:"node"`
	State    string         `json:"state"` // StateUp, StateDown, StateEjected or StateSlowStart
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
		state := StateUp
		switch {
		case be.down.Load():
			state = StateDown
		case be.ejected(now):
			state = StateEjected
		case b.cfg.SlowStart > 0 && now-be.upSince.Load() < int64(b.cfg.SlowStart):
			state = StateSlowStart
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

// Close closes idle connections to every backend.
func (b *Balancer) Close() {
	b.eachLoop((*loop).closeIdle)
	b.updateMu.Lock()
	defer b.updateMu.Unlock()
	for _, st := range b.registry {
		st.closeIdle()
	}
}

// loopSet is the running event loops.
type loopSet struct {
	loops []*loop
	next  atomic.Uint32
}

// eventLoop returns the event loop to take the next connection (in turn),
// starting them on first use, or nil when connections are served by
// goroutines alone.
func (b *Balancer) eventLoop() *loop {
	set := b.loops.Load()
	if set == nil {
		if !b.cfg.EventLoop || b.cfg.BackendMaxConns > 0 || b.noLoop.Load() {
			return nil
		}
		if set = b.startLoops(); set == nil {
			return nil
		}
	}
	return set.loops[int(set.next.Add(1))%len(set.loops)]
}

func (b *Balancer) startLoops() *loopSet {
	b.loopMu.Lock()
	defer b.loopMu.Unlock()
	if set := b.loops.Load(); set != nil || b.shutting.Load() || b.noLoop.Load() {
		return set
	}
	n := b.cfg.EventLoopThreads
	if n <= 0 {
		n = max(1, runtime.GOMAXPROCS(0)/2)
	}
	set := &loopSet{}
	for range n {
		l, err := newLoop(b)
		if err != nil {
			b.logger.Warn("no event loop: a goroutine serves each connection", "error", err)
			for _, l := range set.loops {
				l.stop()
			}
			b.noLoop.Store(true) // not written to cfg, which Serve reads unlocked
			return nil
		}
		set.loops = append(set.loops, l)
	}
	b.loops.Store(set)
	return set
}

// eachLoop calls f on every running event loop.
func (b *Balancer) eachLoop(f func(*loop)) {
	if set := b.loops.Load(); set != nil {
		for _, l := range set.loops {
			f(l)
		}
	}
}

// stopLoops stops the event loops, once nothing is left for them to serve.
func (b *Balancer) stopLoops() {
	b.loopMu.Lock()
	defer b.loopMu.Unlock()
	if set := b.loops.Swap(nil); set != nil {
		for _, l := range set.loops {
			l.stop()
		}
	}
}
