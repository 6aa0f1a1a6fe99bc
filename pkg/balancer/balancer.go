// Package balancer is Herd's HTTP load balancer: an HTTP/1.1 reverse proxy
// over a backend set that membership feeds, one member at a time (SetNode).
// It knows nothing about gossip.
//
// The parts, a file each: the set and each backend's state that outlives
// set swaps (hosts.go), the choice of a backend (selection.go), a canary's
// arms, their split of the requests and their measurements (arms.go), active
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
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"sync"
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

// Balancer is an HTTP/1.1 reverse proxy (Serve) that sends each request
// to a service by its routes (SetRoutes), or to the default service
// (Config.Service), and there to a backend chosen by Config.Balance.
type Balancer struct {
	cfg    Config
	logger hclog.Logger
	m      *metrics

	svcMu    sync.Mutex // serialises changes to services and routes
	services atomic.Pointer[map[string]*Service]
	routes   atomic.Pointer[router]
	// routed: SetRoutes was called; before, every request goes to the
	// default service.
	routed atomic.Bool

	srv   *server
	loops loopSet
	// closing: every answer closes its connection (StopAccepting or
	// Shutdown began); shutting: idle connections are closed too (Shutdown).
	closing, shutting atomic.Bool
	closingSince      atomic.Int64 // unix nanoseconds closing began
	closed            atomic.Bool

	// hsts is the Strict-Transport-Security field answers over TLS get
	// (Config.HSTS; nil: none), its line ready to append.
	hsts []byte
	h2   h2Server // HTTP/2 clients (h2.go)
}

// New returns a Balancer with no backends: it answers 503 until its
// default service has some (SetNode), or 404 once routes say where
// requests go and none matches. It fails on a bad setting.
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
	if cfg.TLSHandshakeTimeout <= 0 {
		cfg.TLSHandshakeTimeout = 10 * time.Second
	}
	if cfg.HTTPSPort == 0 {
		cfg.HTTPSPort = 443
	}
	if cfg.MaxConcurrentStreams == 0 {
		cfg.MaxConcurrentStreams = 250
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	every, _ := accessEvery(cfg.AccessLog, cfg.AccessLogSample)
	b := &Balancer{cfg: cfg, logger: cfg.Logger.Named("balancer"), srv: newServer()}
	b.m = newMetrics(b, cfg.Registerer, cfg.Logger.Named("access"), every)
	b.services.Store(&map[string]*Service{})
	b.loops.b = b
	if cfg.HSTS > 0 {
		b.hsts = []byte("Strict-Transport-Security: max-age=" + strconv.FormatInt(int64(cfg.HSTS/time.Second), 10) + "\r\n")
	}
	b.h2.init(b)
	return b, nil
}

// Service returns the service called name, adding it if it is new.
func (b *Balancer) Service(name string) *Service {
	if s := (*b.services.Load())[name]; s != nil {
		return s
	}
	b.svcMu.Lock()
	defer b.svcMu.Unlock()
	return b.serviceLocked(name)
}

func (b *Balancer) serviceLocked(name string) *Service {
	cur := *b.services.Load()
	if s := cur[name]; s != nil {
		return s
	}
	s := newService(b, name)
	next := make(map[string]*Service, len(cur)+1)
	maps.Copy(next, cur)
	next[name] = s
	b.services.Store(&next)
	return s
}

// RemoveService takes a service out: its routes must be gone already
// (SetRoutes). Its health checks stop; requests in flight to its backends
// finish.
func (b *Balancer) RemoveService(name string) {
	b.svcMu.Lock()
	defer b.svcMu.Unlock()
	cur := *b.services.Load()
	s := cur[name]
	if s == nil {
		return
	}
	next := maps.Clone(cur)
	delete(next, name)
	b.services.Store(&next)
	s.close()
}

// SetNode sets the backends a member announces for the default service
// (Config.Service); see Service.SetNode.
func (b *Balancer) SetNode(node string, addrs []netip.AddrPort) {
	b.Service(b.cfg.Service).SetNode(node, addrs)
}

// SetRoutes swaps in a routing table: routes (their conflicts resolved by
// the caller: of two routes for the same host and prefix the first is
// kept), and the service that takes the requests no route matches (""
// none: they are answered 404). Services are added as routes name them.
func (b *Balancer) SetRoutes(routes []Route, fallback string) {
	b.svcMu.Lock()
	defer b.svcMu.Unlock()
	var fb *Service
	if fallback != "" {
		fb = b.serviceLocked(fallback)
	}
	b.routes.Store(newRouter(routes, fb, b.serviceLocked))
	b.routed.Store(true)
}

// route returns the service, and the bytes of path to strip, for a
// request.
func (b *Balancer) route(host, path []byte) (target, bool) {
	if !b.routed.Load() {
		return target{svc: b.Service(b.cfg.Service)}, true
	}
	return b.routes.Load().lookup(host, path)
}

// BackendStatus is a backend's live state.
type BackendStatus struct {
	Service  string
	Addr     netip.AddrPort
	Node     string
	Arm      Arm    // ArmStable but during a canary
	State    string // StateUp, StateDown, StateEjected or StateSlowStart
	InFlight int64
	Requests uint64
	Failures uint64
}

// Backends returns every service's backends with their states, by service
// name.
func (b *Balancer) Backends() []BackendStatus {
	now := time.Now().UnixNano()
	svcs := *b.services.Load()
	var out []BackendStatus
	for _, name := range slices.Sorted(maps.Keys(svcs)) {
		out = svcs[name].backends(out, now)
	}
	return out
}

// Len is the number of backends of every service.
func (b *Balancer) Len() int {
	n := 0
	for _, s := range *b.services.Load() {
		n += s.Len()
	}
	return n
}

// InFlight is the number of requests in flight to a service's backends.
func (b *Balancer) InFlight(service string) int64 {
	if s := (*b.services.Load())[service]; s != nil {
		return s.inflight()
	}
	return 0
}

// Load is, for every service, the requests in flight to its backends plus
// those waiting in its queue for one: the demand an autoscaler follows
// (pkg/autoscale's Meter reads it many times a second). into is reused
// when not nil.
func (b *Balancer) Load(into map[string]int64) map[string]int64 {
	if into == nil {
		into = map[string]int64{}
	}
	clear(into)
	for name, s := range *b.services.Load() {
		into[name] = s.inflight() + s.queue.n.Load()
	}
	return into
}

// Close stops what the Balancer runs besides serving: every service's
// health checks; and closes the idle connections to every backend. Call it
// after Shutdown. Safe to call more than once.
func (b *Balancer) Close() {
	b.closed.Store(true)
	for _, s := range *b.services.Load() {
		s.closed.Store(true)
		if s.health != nil {
			s.health.stop()
		}
	}
	b.loops.stop()
	for _, s := range *b.services.Load() {
		s.closeIdle()
	}
}

// RestoreHealth takes out of rotation the backends a previous view had out,
// by address: StateDown ones until their active checks pass (or, without
// checks, for EjectFor), StateEjected ones for EjectFor. Other states and
// unknown addresses are ignored.
func (b *Balancer) RestoreHealth(states map[string]string) {
	if len(states) == 0 {
		return
	}
	for _, s := range *b.services.Load() {
		s.restoreHealth(states)
	}
}
