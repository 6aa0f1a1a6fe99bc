package balancer

import (
	"bufio"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// backend is one backend's live state. It outlives snapshot swaps: a set
// update reuses the state of backends that stay.
type backend struct {
	addr     netip.AddrPort
	hostPort string
	node     string
	dialer   net.Dialer

	// The keep-alive pool: idle connections, most recently used last.
	poolMu      sync.Mutex
	idle        []*bconn
	maxIdle     int
	idleTimeout time.Duration

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

func newBackend(be Backend, cfg Config, queue *waitQueue) *backend {
	return &backend{
		addr:        be.Addr,
		hostPort:    be.Addr.String(),
		node:        be.Node,
		dialer:      net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second},
		maxIdle:     cfg.MaxIdleConnsPerBackend,
		maxConns:    int64(cfg.BackendMaxConns),
		queue:       queue,
		idleTimeout: cfg.IdleConnTimeout,
		stop:        make(chan struct{}),
	}
}

// bconn is a connection to a backend with its read buffer.
type bconn struct {
	be        *backend
	c         net.Conn
	br        *bufio.Reader
	reused    bool // it served a request before this one
	idleSince time.Time
	deadline  readDeadline
	loop      *loop // the event loop's own, back to its pool after a goroutine used it
}

// get returns an idle connection to be, or dials one.
func (be *backend) get() (*bconn, error) {
	be.poolMu.Lock()
	for n := len(be.idle); n > 0; n = len(be.idle) {
		bc := be.idle[n-1]
		be.idle[n-1] = nil
		be.idle = be.idle[:n-1]
		if time.Since(bc.idleSince) < be.idleTimeout {
			be.poolMu.Unlock()
			bc.reused = true
			return bc, nil
		}
		bc.close()
	}
	be.poolMu.Unlock()
	return be.dial()
}

// dial opens a new connection to be.
func (be *backend) dial() (*bconn, error) {
	c, err := be.dialer.Dial("tcp", be.hostPort)
	if err != nil {
		return nil, err
	}
	bc := &bconn{be: be, c: newSock(c)}
	bc.br = getReader(bc.c)
	return bc, nil
}

// alive reports whether the backend has neither closed bc nor sent
// anything on it since its last answer: one non-blocking peek.
func (bc *bconn) alive() bool {
	if bc.br.Buffered() > 0 {
		return false // bytes nobody asked for
	}
	s, ok := bc.c.(quieter)
	if !ok {
		return true // not a socket: nothing to peek at
	}
	return s.quiet()
}

// put returns a connection whose exchange ended cleanly to the pool, or
// closes it when be is retired or the pool is full.
func (be *backend) put(bc *bconn) {
	if bc.loop != nil {
		bc.loop.put(bc)
		return
	}
	be.poolMu.Lock()
	if be.retired.Load() || len(be.idle) >= be.maxIdle {
		be.poolMu.Unlock()
		bc.close()
		return
	}
	bc.idleSince = time.Now()
	be.idle = append(be.idle, bc)
	be.poolMu.Unlock()
}

func (bc *bconn) close() {
	if bc.c != nil {
		bc.c.Close()
		putReader(bc.br)
		bc.c, bc.br = nil, nil
	}
}

// closeIdle closes every idle connection.
func (be *backend) closeIdle() {
	be.poolMu.Lock()
	idle := be.idle
	be.idle = nil
	be.poolMu.Unlock()
	for _, bc := range idle {
		bc.close()
	}
}

func (be *backend) ejected(now int64) bool { return be.ejectedUntil.Load() > now }

// out reports whether be is out of rotation.
func (be *backend) out(now int64) bool { return be.down.Load() || be.ejected(now) }

// eject takes be out of rotation after a refused or reset connection: for
// d, or, when active checks run, until they pass again.
func (be *backend) eject(d time.Duration, activeChecks bool) {
	if activeChecks {
		be.resetRuns.Store(true)
		be.down.Store(true)
		return
	}
	be.ejectedUntil.Store(time.Now().Add(d).UnixNano())
	be.upSince.Store(time.Now().Add(d).UnixNano())
}

// retire marks a backend removed from the set: in-flight requests finish,
// then its connections are closed.
func (be *backend) retire() {
	be.retired.Store(true)
	close(be.stop)
	be.closeIdle()
}

// acquire counts one more request in flight on be, unless be is at its
// cap.
func (be *backend) acquire() bool {
	if be.maxConns <= 0 {
		be.inflight.Add(1)
		return true
	}
	for {
		n := be.inflight.Load()
		if n >= be.maxConns {
			return false
		}
		if be.inflight.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// full reports whether be is at its cap of requests in flight.
func (be *backend) full() bool { return be.maxConns > 0 && be.inflight.Load() >= be.maxConns }

// done ends one request on be: a request waiting for room gets its turn.
func (be *backend) done() {
	if be.inflight.Add(-1) == 0 && be.retired.Load() {
		be.closeIdle()
	}
	if be.queue != nil && be.queue.n.Load() > 0 {
		be.queue.wakeOne()
	}
}

// snapshot is an immutable backend set, sorted by address.
type snapshot struct {
	backends []*backend
}

// pick returns the backend for the next attempt with the given algorithm:
// the next in round robin, or the less busy of two picked at random. When
// it returns nil, full reports whether a backend would do but is at its cap
// of requests in flight: the request may wait for room.
func (s *snapshot) pick(algo Algorithm, rr *atomic.Uint64, tried []*backend, slowStart int64) (be *backend, full bool) {
	if len(s.backends) == 0 {
		return nil, false
	}
	now := time.Now().UnixNano()
	if algo != LeastRequest {
		return s.pickFrom(rr.Add(1), now, tried, slowStart)
	}
	// Power of two choices, as Envoy's least_request: two backends at
	// random, the one with fewer requests in flight (the first on a tie).
	// Constant time at any size, and unlike a global minimum it does not
	// send every new request to the same backend at once.
	a, full := s.pickFrom(rand.Uint64(), now, tried, slowStart)
	if a == nil {
		return nil, full
	}
	b, _ := s.pickFrom(rand.Uint64(), now, tried, slowStart)
	if b != nil && b.inflight.Load() < a.inflight.Load() && (!b.out(now) || a.out(now)) {
		return b, false
	}
	return a, false
}

// pickFrom returns the first backend in rotation from index start on,
// skipping those out of rotation, those in tried, and (by chance) those in
// slow start. A retry (tried not empty) prefers a host not tried yet: when a
// host crashes, all its replicas fail at once. When every backend is out it
// still returns one not tried: a possibly-recovered backend beats a certain
// 503 — unless some are only at their cap of requests in flight: then it
// returns nil and full, and the request waits for room. Nil when all were
// tried.
func (s *snapshot) pickFrom(start uint64, now int64, tried []*backend, slowStart int64) (_ *backend, full bool) {
	n := uint64(len(s.backends))
	var fallback, sameHost *backend
	for i := uint64(0); i < n; i++ {
		be := s.backends[(start+i)%n]
		if contains(tried, be) {
			continue
		}
		if be.full() {
			full = full || !be.out(now)
			continue
		}
		if !be.out(now) && !slowStartSkip(be, now, slowStart) {
			if len(tried) == 0 || !triedNode(tried, be.node) {
				return be, false
			}
			if sameHost == nil {
				sameHost = be
			}
			continue
		}
		if fallback == nil || fallback.out(now) && !be.out(now) {
			fallback = be
		}
	}
	switch {
	case sameHost != nil:
		return sameHost, false
	case fallback != nil && !fallback.out(now):
		return fallback, false // skipped for slow start only
	case full:
		return nil, true // better wait for room than try one that is out
	}
	return fallback, false
}

func triedNode(tried []*backend, node string) bool {
	for _, x := range tried {
		if x.node == node {
			return true
		}
	}
	return false
}

func contains(list []*backend, be *backend) bool {
	for _, x := range list {
		if x == be {
			return true
		}
	}
	return false
}
