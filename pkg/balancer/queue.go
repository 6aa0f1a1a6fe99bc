package balancer

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// errQueueTimeout: every backend had its cap of requests in flight for as
// long as the request may wait (Config.QueueTimeout).
var errQueueTimeout = errors.New("every backend is at its cap of requests in flight and the request waited the queue timeout")

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

// queueWait is what a connection needs to wait in the queue: made on its
// first wait, kept for the next.
type queueWait struct {
	wake  chan struct{}
	timer *time.Timer
}

// chooseWaiting is choose for the goroutine relay: with
// Config.BackendMaxConns, backends at their cap are skipped and, when all
// are, the request waits in the queue for one that has room.
func (cc *clientConn) chooseWaiting() bool {
	h, err := cc.x.pickWaiting(cc.b, &cc.wait)
	if err != nil {
		cc.noBackend(err)
		return false
	}
	cc.x.begin(h)
	return true
}

// pickWaiting is pick, waiting in the service's queue when every backend
// that would do is at its cap (Config.BackendMaxConns); w keeps what the
// waiting needs, from one wait to the next.
func (x *exchange) pickWaiting(b *Balancer, w **queueWait) (*host, error) {
	if b.cfg.BackendMaxConns <= 0 {
		return x.pick()
	}
	front := false // once its turn has come, a request stays first in line
	if x.nTried == 0 && x.svc.queue.n.Load() > 0 {
		// Others are waiting: a new request does not overtake them.
		if err := x.waitTurn(b, w, false); err != nil {
			return nil, err
		}
		front = true
	}
	for {
		h, err := x.pick()
		if err == errFull {
			err = x.waitTurn(b, w, front)
			front = true
			if err == nil {
				continue
			}
		}
		return h, err
	}
}

// waitTurn queues the request until a backend finishes a request (its turn
// comes) or until Config.QueueTimeout has passed since it first queued.
func (x *exchange) waitTurn(b *Balancer, wp **queueWait, front bool) error {
	s := x.svc
	if x.queuedAt.IsZero() {
		x.queuedAt = time.Now()
	}
	left := b.cfg.QueueTimeout - time.Since(x.queuedAt)
	if left <= 0 {
		s.queueTimeouts.Add(1)
		return errQueueTimeout
	}
	w := *wp
	if w == nil {
		w = &queueWait{wake: make(chan struct{}, 1)}
		*wp = w
	}
	if s.queue.push(w.wake, front) {
		// First in line: a backend may have finished between the pick that
		// found none with room and the push, waking nobody.
		if h, _ := s.selectIn(x.attemptArm(), false, x.tried[:x.nTried], time.Now().UnixNano()); h != nil {
			s.queue.cancel(w.wake)
			return nil
		}
	}
	if w.timer == nil {
		w.timer = time.NewTimer(left)
	} else {
		w.timer.Reset(left)
	}
	select {
	case <-w.wake:
		w.timer.Stop()
		return nil
	case <-w.timer.C:
		s.queue.cancel(w.wake)
		s.queueTimeouts.Add(1)
		return errQueueTimeout
	}
}
