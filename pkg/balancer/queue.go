package balancer

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// errQueueTimeout: every backend had its cap of requests in flight for as
// long as the request may wait (Config.QueueTimeout).
var errQueueTimeout = errors.New("every backend is at its --backend-max-conns and the request waited --queue-timeout")

// waitQueue holds the requests waiting for a backend with room when every
// backend has Config.BackendMaxConns requests in flight, first come first
// served, as HAProxy's queue behind server maxconn. Each waiter is its
// connection's wake channel (buffered, 1).
type waitQueue struct {
	mu   sync.Mutex
	list []chan struct{}
	n    atomic.Int64 // len(list), read without the lock on the request path
}

// push adds ch at the back (or the front, for a request whose turn came but
// that found no room) and reports whether it is first in line.
func (q *waitQueue) push(ch chan struct{}, front bool) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if front {
		q.list = append(q.list, nil)
		copy(q.list[1:], q.list)
		q.list[0] = ch
	} else {
		q.list = append(q.list, ch)
	}
	q.n.Store(int64(len(q.list)))
	return q.list[0] == ch
}

// wakeOne gives the turn to the first waiter, if any.
func (q *waitQueue) wakeOne() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.list) == 0 {
		return
	}
	ch := q.list[0]
	q.list[0] = nil
	q.list = q.list[1:]
	q.n.Store(int64(len(q.list)))
	select { // sent under the lock: cancel sees either ch listed or its signal sent
	case ch <- struct{}{}:
	default:
	}
}

// cancel takes ch out of the line. If its turn had already come, the turn
// goes to the next waiter instead of being lost.
func (q *waitQueue) cancel(ch chan struct{}) {
	q.mu.Lock()
	for i, w := range q.list {
		if w == ch {
			q.list = append(q.list[:i], q.list[i+1:]...)
			q.n.Store(int64(len(q.list)))
			q.mu.Unlock()
			return
		}
	}
	q.mu.Unlock()
	select {
	case <-ch:
		q.wakeOne()
	default:
	}
}

// choose picks the backend of the next attempt and counts the request in
// flight on it. With Config.BackendMaxConns, backends at their cap are
// skipped and, when all are, the request waits in the queue for one that
// has room.
func (cc *clientConn) choose(st *relayState) (*backend, error) {
	b := cc.b
	front := false // once its turn has come, a request stays first in line
	if b.cfg.BackendMaxConns > 0 && st.attempts == 0 && b.queue.n.Load() > 0 {
		// Others are waiting: a new request does not overtake them.
		if err := cc.wait(st, false); err != nil {
			return nil, err
		}
		front = true
	}
	for {
		be, full := b.pick(st)
		if be != nil {
			if be.acquire() {
				return be, nil
			}
			continue // another request took its last slot: pick again
		}
		if !full {
			if st.nTried == 0 {
				return nil, errNoBackends
			}
			return nil, errors.New("every backend failed")
		}
		if err := cc.wait(st, front); err != nil {
			return nil, err
		}
		front = true
	}
}

// pick picks from the current set for the next attempt of st; see
// snapshot.pick.
func (b *Balancer) pick(st *relayState) (*backend, bool) {
	return b.snap.Load().pick(b.cfg.Balance, &b.rr, st.tried[:st.nTried], int64(b.cfg.SlowStart))
}

// wait queues the request until a backend finishes a request (its turn
// comes) or until Config.QueueTimeout has passed since it first queued.
func (cc *clientConn) wait(st *relayState, front bool) error {
	b := cc.b
	if st.queuedAt.IsZero() {
		st.queuedAt = time.Now()
	}
	left := b.cfg.QueueTimeout - time.Since(st.queuedAt)
	if left <= 0 {
		b.queueTimeouts.Add(1)
		return errQueueTimeout
	}
	if cc.wake == nil {
		cc.wake = make(chan struct{}, 1)
	}
	if b.queue.push(cc.wake, front) {
		// First in line: a backend may have finished between the pick that
		// found none with room and the push, waking nobody.
		if be, _ := b.pick(st); be != nil {
			b.queue.cancel(cc.wake)
			return nil
		}
	}
	if cc.queueTimer == nil {
		cc.queueTimer = time.NewTimer(left)
	} else {
		cc.queueTimer.Reset(left)
	}
	select {
	case <-cc.wake:
		cc.queueTimer.Stop()
		return nil
	case <-cc.queueTimer.C:
		b.queue.cancel(cc.wake)
		b.queueTimeouts.Add(1)
		return errQueueTimeout
	}
}
