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

	updateMu sync.Mutex // serialises Update; guards registry
	registry map[netip.AddrPort]*backend
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
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*clientConn]struct{}),
	}
	b.snap.Store(&snapshot{})
	return b
}

// Update replaces the backend set. Backends that stay keep their state and
// connections; removed ones get no new requests, finish what they serve, and
// have their idle connections closed. Safe to call from any goroutine.
func (b *Balancer) Update(backends []Backend) {
	b.updateMu.Lock()
	defer b.updateMu.Unlock()
	next := &snapshot{backends: make([]*backend, 0, len(backends))}
	keep := make(map[netip.AddrPort]bool, len(backends))
	for _, be := range backends {
		if keep[be.Addr] {
			continue
		}
		keep[be.Addr] = true
		st, ok := b.registry[be.Addr]
		if !ok {
			st = newBackend(be, b.cfg)
			b.registry[be.Addr] = st
		}
		next.backends = append(next.backends, st)
	}
	slices.SortFunc(next.backends, func(x, y *backend) int { return x.addr.Compare(y.addr) })
	b.snap.Store(next)
	for addr, st := range b.registry {
		if !keep[addr] {
			delete(b.registry, addr)
			st.retire()
		}
	}
}

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
