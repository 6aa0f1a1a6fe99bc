package balancer

import (
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http2"
)

// Service is one service's backends behind the balancer: its set, the
// choice of a backend, its active health checks, its queue of requests
// waiting for a backend with room, and its counters. Requests reach it
// through the routes (SetRoutes), or as the default service.
type Service struct {
	name   string
	b      *Balancer
	reg    *registry
	sel    selector
	health *healthChecker // nil: active checks are off
	queue  waitQueue

	retries, ejections, queueTimeouts atomic.Uint64
	none                              [6]prometheus.Counter // answers without a backend, by class
	// The request duration series by client protocol: plain HTTP's made
	// with the service, the others on first use, so a gateway without TLS
	// or HTTP/2 exports none of theirs.
	duration [nProtos]atomic.Pointer[prometheus.Observer]
	closed   atomic.Bool

	// How its backends are spoken to (SetProtocol; nil: HTTP1), and the
	// HTTP/2 client for H2C ones, made on first use (transport.go).
	proto   atomic.Pointer[Protocol]
	h2c     *http2.Transport
	h2cOnce sync.Once
}

func newService(b *Balancer, name string) *Service {
	s := &Service{name: name, b: b, reg: newRegistry()}
	s.sel = newSelector(&b.cfg)
	s.health = newHealthChecker(&b.cfg, b.logger.With("service", name), s.Protocol, func() { s.ejections.Add(1) })
	for i, c := range codeClasses {
		s.none[i] = b.m.requests.WithLabelValues(name, "none", c)
	}
	s.observer(protoHTTP)
	return s
}

// observer is the request duration series for client protocol p.
func (s *Service) observer(p proto) prometheus.Observer {
	if o := s.duration[p].Load(); o != nil {
		return *o
	}
	o := s.b.m.duration.WithLabelValues(s.name, p.String()) // the same series, should two make it at once
	s.duration[p].Store(&o)
	return o
}

// Name is the service's name.
func (s *Service) Name() string { return s.name }

// SetNode replaces the backends one member announces for this service
// (none: the member is gone, or announces it no more) and swaps in the new
// set. Backends that stay keep their state and connections; removed ones
// get no new requests, finish what they serve, and have their idle
// connections closed. An address another member announced first stays that
// member's. When nothing changed for the member it does nothing. Safe from
// any goroutine.
func (s *Service) SetNode(node string, addrs []netip.AddrPort) {
	b := s.b
	s.reg.setNode(node, addrs, func(addr netip.AddrPort) *host {
		return newHost(addr, node, &b.cfg, &s.queue)
	}, hostEvents{
		added: func(h *host) {
			b.m.added(s.name, h)
			if s.health != nil && !s.closed.Load() {
				s.health.watch(h)
			}
		},
		removed: func(h *host) {
			h.retire()
			b.m.removed(s.name, h)
		},
		taken: func(addr netip.AddrPort, node, owner string) {
			b.logger.Warn("address announced by two nodes; keeping the first", "service", s.name, "addr", addr,
				"node", owner, "other", node)
		},
	})
}

// Len is the number of backends in the service's current set.
func (s *Service) Len() int { return len(s.reg.set.Load().hosts) }

// backends appends the service's backends with their states.
func (s *Service) backends(out []BackendStatus, now int64) []BackendStatus {
	for _, h := range s.reg.set.Load().hosts {
		state := StateUp
		switch {
		case h.down.Load():
			state = StateDown
		case h.ejected(now):
			state = StateEjected
		case s.b.cfg.SlowStart > 0 && now-h.upSince.Load() < int64(s.b.cfg.SlowStart):
			state = StateSlowStart
		}
		out = append(out, BackendStatus{
			Service: s.name, Addr: h.addr, Node: h.node, State: state, InFlight: h.inflight.Load(),
			Requests: h.requests.Load(), Failures: h.failures.Load(),
		})
	}
	return out
}

// restoreHealth takes the backends a previous view had out out again.
func (s *Service) restoreHealth(states map[string]string) {
	for _, h := range s.reg.set.Load().hosts {
		switch states[h.hostPort] {
		case StateDown:
			h.eject(s.b.cfg.EjectFor, s.health != nil)
		case StateEjected:
			h.eject(s.b.cfg.EjectFor, false)
		}
	}
}

// close stops the service's health checks and retires its backends:
// requests in flight finish, then their connections close.
func (s *Service) close() {
	s.closed.Store(true)
	for _, c := range codeClasses {
		s.b.m.requests.DeleteLabelValues(s.name, "none", c)
	}
	for p := range nProtos {
		s.b.m.duration.DeleteLabelValues(s.name, p.String())
	}
	if s.health != nil {
		s.health.stop()
	}
	for _, h := range s.reg.set.Load().hosts {
		s.SetNode(h.node, nil)
	}
}

// closeIdle closes the idle connections to every backend.
func (s *Service) closeIdle() {
	s.reg.each(func(h *host) { h.pool.closeAll() })
	s.h2cOnce.Do(func() {}) // none made from now on
	if s.h2c != nil {
		s.h2c.CloseIdleConnections()
	}
}

// inflight sums the requests in flight to the service's backends.
func (s *Service) inflight() int64 {
	var n int64
	for _, h := range s.reg.set.Load().hosts {
		n += h.inflight.Load()
	}
	return n
}

// ejected counts what eject does to h, for the service's counters.
func (s *Service) eject(h *host) {
	h.eject(s.b.cfg.EjectFor, s.health != nil)
	s.ejections.Add(1)
}
