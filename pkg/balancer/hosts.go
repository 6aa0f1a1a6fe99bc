package balancer

import (
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// host is one backend's live state: its address, the requests in flight to
// it, its health, its keep-alive connections and counters. It outlives set
// swaps: a member's change reuses the state of the backends that stay, as
// caddy's hosts do, and the registry that keeps them belongs to one Balancer.
type host struct {
	addr     netip.AddrPort
	hostPort string
	node     string
	arm      Arm // the arm its member announced it in; a move to another arm makes a new host
	dialer   net.Dialer
	// pool keeps the goroutine relay's idle connections to it (each event
	// loop keeps its own).
	pool connPool

	inflight     atomic.Int64
	maxConns     int64      // cap on inflight (0: none); see Config.BackendMaxConns
	queue        *waitQueue // the balancer's, woken when a request ends
	requests     atomic.Uint64
	failures     atomic.Uint64
	ejectedUntil atomic.Int64 // unix nanoseconds
	retired      atomic.Bool
	down         atomic.Bool  // failed its active health checks, or ejected while they run
	upSince      atomic.Int64 // unix nanoseconds it (re)entered rotation, for slow start
	resetRuns    atomic.Bool  // the health loop restarts its count of good checks
	stop         chan struct{}
	codes        [6]prometheus.Counter // requests by status class; see metrics
}

func newHost(addr netip.AddrPort, node string, arm Arm, cfg *Config, queue *waitQueue) *host {
	h := &host{
		addr:     addr,
		hostPort: addr.String(),
		node:     node,
		arm:      arm,
		dialer:   net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second},
		pool:     connPool{max: cfg.MaxIdleConnsPerBackend, timeout: cfg.IdleConnTimeout},
		maxConns: int64(cfg.BackendMaxConns),
		queue:    queue,
		stop:     make(chan struct{}),
	}
	h.upSince.Store(time.Now().UnixNano())
	return h
}

func (h *host) ejected(now int64) bool { return h.ejectedUntil.Load() > now }

// out reports whether h is out of rotation.
func (h *host) out(now int64) bool { return h.down.Load() || h.ejected(now) }

// eject takes h out of rotation after a refused or reset connection: for
// d, or, when active checks run, until they pass again.
func (h *host) eject(d time.Duration, activeChecks bool) {
	if activeChecks {
		h.resetRuns.Store(true)
		h.down.Store(true)
		return
	}
	h.ejectedUntil.Store(time.Now().Add(d).UnixNano())
	h.upSince.Store(time.Now().Add(d).UnixNano())
}

// retire marks a backend removed from the set: in-flight requests finish,
// then its connections are closed.
func (h *host) retire() {
	h.retired.Store(true)
	close(h.stop)
	h.pool.closeAll()
}

// acquire counts one more request in flight on h, unless h is at its cap.
func (h *host) acquire() bool {
	if h.maxConns <= 0 {
		h.inflight.Add(1)
		return true
	}
	for {
		n := h.inflight.Load()
		if n >= h.maxConns {
			return false
		}
		if h.inflight.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// full reports whether h is at its cap of requests in flight.
func (h *host) full() bool { return h.maxConns > 0 && h.inflight.Load() >= h.maxConns }

// done ends one request on h: a request waiting for room gets its turn.
func (h *host) done() {
	if h.inflight.Add(-1) == 0 && h.retired.Load() {
		h.pool.closeAll()
	}
	if h.queue != nil && h.queue.n.Load() > 0 {
		h.queue.wakeOne()
	}
}

// hostSet is an immutable backend set: what requests choose from, swapped
// whole on every change. Each member's backends are together, in address
// order; the members are in no particular order.
type hostSet struct {
	hosts []*host // every arm's
	// arms are each arm's backends, in the same order. Without canary or
	// baseline backends (most of the time) arms[ArmStable] is hosts itself.
	arms [numArms][]*host
}

// newHostSet partitions hosts by arm; others is how many are not stable.
func newHostSet(hosts []*host, others int) *hostSet {
	s := &hostSet{hosts: hosts}
	if others == 0 {
		s.arms[ArmStable] = hosts
		return s
	}
	s.arms[ArmStable] = make([]*host, 0, len(hosts)-others)
	for _, h := range hosts {
		s.arms[h.arm] = append(s.arms[h.arm], h)
	}
	return s
}

// nodeArm is one member's backends of one arm: what setNode replaces.
type nodeArm struct {
	node string
	arm  Arm
}

// registry keeps every backend's host, by address and by member and arm,
// and publishes the set. Changes are serialised by its lock; readers load
// the set without it.
type registry struct {
	mu     sync.Mutex
	byAddr map[netip.AddrPort]*host
	byNode map[nodeArm][]*host // each in address order
	others int                 // hosts not in the stable arm
	set    atomic.Pointer[hostSet]
	swaps  atomic.Uint64
}

func newRegistry() *registry {
	r := &registry{byAddr: make(map[netip.AddrPort]*host), byNode: make(map[nodeArm][]*host)}
	r.set.Store(newHostSet(nil, 0))
	return r
}

// hostEvents are what setNode tells its caller about backends that come and
// go: their health checks and metrics start and stop with them.
type hostEvents struct {
	added   func(*host)
	removed func(*host)
	// taken: addr is announced by node too, but another member (owner)
	// announced it first and keeps it.
	taken func(addr netip.AddrPort, node, owner string)
}

// setNode replaces the backends node announces in arm (none: the node is
// gone, or has none in that arm), reusing the hosts of addresses that stay,
// and swaps in the new set. An address the same node announced in another
// arm moves: its old host leaves, a new one joins (an arm's backends share
// no state with another's). It reports false, and does nothing, when the
// node's backends in arm did not change. It costs one pass over the set's
// pointers and allocates the new set's arrays and the node's new hosts
// only.
func (r *registry) setNode(node string, arm Arm, addrs []netip.AddrPort, newHost func(netip.AddrPort) *host, ev hostEvents) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := nodeArm{node, arm}
	old := r.byNode[key]
	addrs = slices.Clone(addrs)
	slices.SortFunc(addrs, func(x, y netip.AddrPort) int { return x.Compare(y) })
	addrs = slices.Compact(addrs)
	if len(old) == len(addrs) && !slices.ContainsFunc(old, func(h *host) bool {
		_, found := slices.BinarySearchFunc(addrs, h.addr, func(x, y netip.AddrPort) int { return x.Compare(y) })
		return !found
	}) {
		return false
	}
	next := make([]*host, 0, len(addrs))
	keep := make(map[netip.AddrPort]bool, len(addrs))
	var moved []*host
	for _, addr := range addrs {
		h, ok := r.byAddr[addr]
		switch {
		case ok && h.node == node && h.arm != arm:
			moved = append(moved, h)
			r.drop(h, ev)
			ok = false
		case ok && h.node != node:
			ev.taken(addr, node, h.node)
			continue
		}
		if !ok {
			h = newHost(addr)
			r.byAddr[addr] = h
			r.count(h, 1)
			ev.added(h)
		}
		keep[addr] = true
		next = append(next, h)
	}
	for _, h := range old {
		if !keep[h.addr] {
			delete(r.byAddr, h.addr)
			r.count(h, -1)
			ev.removed(h)
		}
	}
	if len(next) == 0 {
		delete(r.byNode, key)
	} else {
		r.byNode[key] = next
	}
	cur := r.set.Load().hosts
	flat := make([]*host, 0, len(cur)-len(old)-len(moved)+len(next))
	for _, h := range cur {
		if (h.node != node || h.arm != arm) && (len(moved) == 0 || !contains(moved, h)) {
			flat = append(flat, h)
		}
	}
	r.set.Store(newHostSet(append(flat, next...), r.others))
	r.swaps.Add(1)
	return true
}

// drop takes h out of its member's arm, for a move to another arm.
func (r *registry) drop(h *host, ev hostEvents) {
	key := nodeArm{h.node, h.arm}
	rest := slices.DeleteFunc(slices.Clone(r.byNode[key]), func(x *host) bool { return x == h })
	if len(rest) == 0 {
		delete(r.byNode, key)
	} else {
		r.byNode[key] = rest
	}
	delete(r.byAddr, h.addr)
	r.count(h, -1)
	ev.removed(h)
}

// count keeps the number of hosts not in the stable arm.
func (r *registry) count(h *host, delta int) {
	if h.arm != ArmStable {
		r.others += delta
	}
}

// each calls f on every registered host, under the registry's lock.
func (r *registry) each(f func(*host)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, h := range r.byAddr {
		f(h)
	}
}
