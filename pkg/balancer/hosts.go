package balancer

import (
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"
)

// backend is one backend's live state. It outlives snapshot swaps: a set
// update reuses the state of backends that stay.
type backend struct {
	addr      netip.AddrPort
	hostPort  string
	node      string
	transport *http.Transport

	inflight     atomic.Int64
	requests     atomic.Uint64
	failures     atomic.Uint64
	ejectedUntil atomic.Int64 // unix nanoseconds
	retired      atomic.Bool
}

func newBackend(be Backend, cfg Config) *backend {
	dialer := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	return &backend{
		addr:     be.Addr,
		hostPort: be.Addr.String(),
		node:     be.Node,
		// One transport per backend, so draining one closes only its
		// connections.
		transport: &http.Transport{
			DialContext:           dialer.DialContext,
			MaxIdleConns:          cfg.MaxIdleConnsPerBackend,
			MaxIdleConnsPerHost:   cfg.MaxIdleConnsPerBackend,
			IdleConnTimeout:       cfg.IdleConnTimeout,
			ResponseHeaderTimeout: cfg.ResponseHeaderTimeout,
			ExpectContinueTimeout: time.Second,
			DisableCompression:    true, // pass bodies through as they are
		},
	}
}

func (be *backend) ejected(now int64) bool { return be.ejectedUntil.Load() > now }

func (be *backend) eject(d time.Duration) {
	be.ejectedUntil.Store(time.Now().Add(d).UnixNano())
}

// retire marks a backend removed from the set: in-flight requests finish,
// then its connections are closed.
func (be *backend) retire() {
	be.retired.Store(true)
	be.transport.CloseIdleConnections()
}

// done ends one request on be.
func (be *backend) done() {
	if be.inflight.Add(-1) == 0 && be.retired.Load() {
		be.transport.CloseIdleConnections()
	}
}

// snapshot is an immutable backend set, sorted by address.
type snapshot struct {
	backends []*backend
}

// pick returns the next backend in round robin, skipping ejected ones and
// those in tried. When every backend is ejected it still returns one not
// tried: a possibly-recovered backend beats a certain 503. Nil when all
// were tried.
func (s *snapshot) pick(rr *atomic.Uint64, tried []*backend) *backend {
	n := uint64(len(s.backends))
	if n == 0 {
		return nil
	}
	start := rr.Add(1)
	now := time.Now().UnixNano()
	var fallback *backend
	for i := uint64(0); i < n; i++ {
		be := s.backends[(start+i)%n]
		if contains(tried, be) {
			continue
		}
		if !be.ejected(now) {
			return be
		}
		if fallback == nil {
			fallback = be
		}
	}
	return fallback
}

func contains(list []*backend, be *backend) bool {
	for _, x := range list {
		if x == be {
			return true
		}
	}
	return false
}
