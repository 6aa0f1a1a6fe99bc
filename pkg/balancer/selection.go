package balancer

import (
	"math/rand/v2"
	"sync/atomic"
)

// selector chooses the backend of each attempt among hosts (one arm's of
// the current set; see arms.go).
//
// tried are the backends this request has already been sent to (a retry
// goes elsewhere, preferring another member's); now is the time in unix
// nanoseconds. When it returns nil, full reports whether a backend would
// do but is at its cap of requests in flight: the request may wait for room.
type selector interface {
	Select(hosts []*host, tried []*host, now int64) (h *host, full bool)
}

func newSelector(cfg *Config) selector {
	ss := int64(cfg.SlowStart)
	if cfg.Balance == LeastRequest {
		return &leastRequest{slowStart: ss}
	}
	return &roundRobin{slowStart: ss}
}

// roundRobin sends each request to the next backend in turn.
type roundRobin struct {
	next      atomic.Uint64
	slowStart int64
}

func (r *roundRobin) Select(hosts []*host, tried []*host, now int64) (*host, bool) {
	return scan(hosts, r.next.Add(1), tried, now, r.slowStart)
}

// leastRequest is the power of two choices, as Envoy's least_request: two
// backends at random, the one with fewer requests in flight (the first on
// a tie). Constant time at any size, and unlike a global minimum it does
// not send every new request to the same backend at once.
type leastRequest struct {
	slowStart int64
}

func (l *leastRequest) Select(hosts []*host, tried []*host, now int64) (*host, bool) {
	a, full := scan(hosts, rand.Uint64(), tried, now, l.slowStart)
	if a == nil {
		return nil, full
	}
	b, _ := scan(hosts, rand.Uint64(), tried, now, l.slowStart)
	if b != nil && b.inflight.Load() < a.inflight.Load() && (!b.out(now) || a.out(now)) {
		return b, false
	}
	return a, false
}

// scan returns the first of hosts in rotation from index start on, skipping
// those out of rotation, those in tried, and (by chance) those in slow
// start. A retry (tried not empty) prefers a member not tried yet: when a
// host crashes, all its replicas fail at once. When every backend is out it
// still returns one not tried: a possibly-recovered backend beats a certain
// 503 — unless some are only at their cap of requests in flight: then it
// returns nil and full, and the request waits for room. Nil when all were
// tried.
func scan(hosts []*host, start uint64, tried []*host, now, slowStart int64) (_ *host, full bool) {
	n := uint64(len(hosts))
	if n == 0 {
		return nil, false
	}
	var fallback, sameNode *host
	for i := uint64(0); i < n; i++ {
		h := hosts[(start+i)%n]
		if contains(tried, h) {
			continue
		}
		if h.full() {
			full = full || !h.out(now)
			continue
		}
		if !h.out(now) && !slowStartSkip(h, now, slowStart) {
			if len(tried) == 0 || !triedNode(tried, h.node) {
				return h, false
			}
			if sameNode == nil {
				sameNode = h
			}
			continue
		}
		if fallback == nil || fallback.out(now) && !h.out(now) {
			fallback = h
		}
	}
	switch {
	case sameNode != nil:
		return sameNode, false
	case fallback != nil && !fallback.out(now):
		return fallback, false // skipped for slow start only
	case full:
		return nil, true // better wait for room than try one that is out
	}
	return fallback, false
}

// slowStartSkip reports whether a scan should pass over h this time: a
// backend up for less than slowStart gets a share of its turns that grows
// linearly from 0 to all, as HAProxy's slowstart does with weights.
func slowStartSkip(h *host, now, slowStart int64) bool {
	if slowStart <= 0 {
		return false
	}
	up := now - h.upSince.Load()
	if up >= slowStart {
		return false
	}
	return rand.Int64N(slowStart) >= up
}

func triedNode(tried []*host, node string) bool {
	for _, x := range tried {
		if x.node == node {
			return true
		}
	}
	return false
}

func contains(list []*host, h *host) bool {
	for _, x := range list {
		if x == h {
			return true
		}
	}
	return false
}
