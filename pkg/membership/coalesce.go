package membership

import (
	"sync"
	"sync/atomic"
)

// eventQueue holds the member events the consumer has not taken yet, at most
// one per member: a member's newer event replaces its undelivered older one.
// The consumer (the gateway) needs each member's latest state, not its
// history, so Serf's event loop never waits for it, and what is held is
// bounded by the cluster's size, not by the rate of changes.
//
// Serf's loop calls put; one goroutine runs deliver. A member keeps its place
// in line when its event is replaced, so a member that changes all the time
// cannot starve the others, and each member's events reach the consumer in
// the order Serf produced them.
type eventQueue struct {
	mu      sync.Mutex
	pending map[string]*queued // by member name
	order   []string           // members with a pending event, oldest first
	nextSeq uint64

	wake      chan struct{} // capacity 1: something was put since deliver last looked
	coalesced atomic.Uint64
}

// queued is a member's pending event; seq tells a replaced one from the one
// deliver handed over.
type queued struct {
	ev  Event
	seq uint64
}

func newEventQueue() *eventQueue {
	return &eventQueue{pending: make(map[string]*queued), wake: make(chan struct{}, 1)}
}

// put queues one event per node of e, replacing that member's undelivered
// event if it has one. It never blocks.
func (q *eventQueue) put(e Event) {
	q.mu.Lock()
	for _, n := range e.Nodes {
		q.nextSeq++
		ev := Event{Type: e.Type, Nodes: []Node{n}, At: e.At}
		if p, ok := q.pending[n.Name]; ok {
			// The consumer's view of the member has been stale since the
			// replaced event: keep its time.
			ev.At = p.ev.At
			p.ev, p.seq = ev, q.nextSeq
			q.coalesced.Add(1)
			continue
		}
		q.pending[n.Name] = &queued{ev: ev, seq: q.nextSeq}
		q.order = append(q.order, n.Name)
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default: // deliver has a wake-up pending already
	}
}

// front returns the oldest pending event and its sequence number.
func (q *eventQueue) front() (Event, uint64, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.order) == 0 {
		return Event{}, 0, false
	}
	p := q.pending[q.order[0]]
	return p.ev, p.seq, true
}

// taken forgets the front member's event if it is still the one with seq;
// a newer one that replaced it meanwhile stays at the front, to go next.
func (q *eventQueue) taken(seq uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	name := q.order[0] // only deliver removes, so the front is still this member
	if q.pending[name].seq != seq {
		return
	}
	delete(q.pending, name)
	q.order[0] = ""
	q.order = q.order[1:]
}

// deliver hands the pending events to out, oldest first, as the consumer
// takes them, until stop is closed. Events still pending then are dropped:
// nobody is left to apply them.
func (q *eventQueue) deliver(out chan<- Event, stop <-chan struct{}) {
	for {
		ev, seq, ok := q.front()
		if !ok {
			select {
			case <-q.wake:
				continue
			case <-stop:
				return
			}
		}
		select {
		case out <- ev:
			q.taken(seq)
		case <-q.wake:
			// ev may have been replaced by a newer event of its member:
			// look again, so the consumer gets the latest.
		case <-stop:
			return
		}
	}
}
