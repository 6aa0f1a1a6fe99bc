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
	sel    [numArms]selector // each arm's, so that an arm's turns are its own
	health *healthChecker    // nil: active checks are off
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

	// The canary's split of the requests among the arms (nil: none) and
	// each arm's measurements (arms.go).
	splitMu sync.Mutex // serialises SetSplit
	split   atomic.Pointer[splitState]
	arms    [numArms]armStats
}

func newService(b *Balancer, name string) *Service {
	s := &Service{name: name, b: b, reg: newRegistry()}
	for a := range s.sel {
		s.sel[a] = newSelector(&b.cfg)
	}
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
// (none: the member is gone, or announces it no more) in the stable arm,
// and swaps in the new set. Backends that stay keep their state and
// connections; removed ones get no new requests, finish what they serve,
// and have their idle connections closed. An address another member
// announced first stays that member's. When nothing changed for the member
// it does nothing. Safe from any goroutine. See SetNodeArm for the other
// arms.
func (s *Service) SetNode(node string, addrs []netip.AddrPort) {
	s.SetNodeArm(node, ArmStable, addrs)
}

// Len is the number of backends in the service's current set, of every
// arm.
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
			Service: s.name, Addr: h.addr, Node: h.node, Arm: h.arm, State: state, InFlight: h.inflight.Load(),
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
	s.b.m.canaryRequests.DeletePartialMatch(prometheus.Labels{"service": s.name})
	s.b.m.canaryWeight.DeletePartialMatch(prometheus.Labels{"service": s.name})
	if s.health != nil {
		s.health.stop()
	}
	for _, h := range s.reg.set.Load().hosts {
		s.SetNodeArm(h.node, h.arm, nil)
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
