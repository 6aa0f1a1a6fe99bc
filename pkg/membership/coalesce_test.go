package membership

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func nodeEvent(typ EventType, name string, gen uint64, at time.Time) Event {
	return Event{Type: typ, Nodes: []Node{{Name: name, Tags: Tags{Role: RoleAgent, Gen: gen}}}, At: at}
}

// startDelivery runs q.deliver into out until the test ends, and checks
// that it returns once stopped.
func startDelivery(t *testing.T, q *eventQueue, out chan<- Event) {
	t.Helper()
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		q.deliver(out, stop)
	}()
	t.Cleanup(func() {
		close(stop)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("deliver did not return after stop")
		}
	})
}

func receive(t *testing.T, ch <-chan Event) Event {
	t.Helper()
	select {
	case e := <-ch:
		require.Len(t, e.Nodes, 1)
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no event delivered within 5s")
		return Event{}
	}
}

// TestEventQueueKeepsEachMembersLatest: events put while nobody reads come
// out one per member, each member's latest, members in the order their
// first undelivered event arrived.
func TestEventQueueKeepsEachMembersLatest(t *testing.T) {
	q := newEventQueue()
	t0 := time.Now()
	q.put(nodeEvent(EventJoin, "a", 1, t0))
	q.put(nodeEvent(EventJoin, "b", 1, t0.Add(time.Second)))
	q.put(nodeEvent(EventUpdate, "a", 2, t0.Add(2*time.Second)))
	q.put(nodeEvent(EventUpdate, "a", 3, t0.Add(3*time.Second)))
	q.put(nodeEvent(EventFailed, "b", 1, t0.Add(4*time.Second)))
	q.put(Event{Type: EventJoin, Nodes: []Node{{Name: "c"}, {Name: "d"}}, At: t0.Add(5 * time.Second)})
	assert.Equal(t, uint64(3), q.coalesced.Load())

	out := make(chan Event)
	startDelivery(t, q, out)
	want := []struct {
		typ  EventType
		name string
		gen  uint64
		at   time.Time
	}{
		{EventUpdate, "a", 3, t0}, // the latest state, stale since the first event
		{EventFailed, "b", 1, t0.Add(time.Second)},
		{EventJoin, "c", 0, t0.Add(5 * time.Second)},
		{EventJoin, "d", 0, t0.Add(5 * time.Second)},
	}
	for _, w := range want {
		e := receive(t, out)
		assert.Equal(t, w.typ, e.Type, w.name)
		assert.Equal(t, w.name, e.Nodes[0].Name)
		assert.Equal(t, w.gen, e.Nodes[0].Tags.Gen, w.name)
		assert.True(t, w.at.Equal(e.At), "%s: At %s, want %s", w.name, e.At, w.at)
	}
	// Nothing else was pending: the next event put is the next one out.
	q.put(nodeEvent(EventLeave, "a", 4, t0))
	e := receive(t, out)
	assert.Equal(t, EventLeave, e.Type)
	assert.Equal(t, uint64(4), e.Nodes[0].Tags.Gen)
}

// TestEventQueueHandsOverTheLatest: an event replaced while deliver waits
// for the consumer is not handed over; its replacement is.
func TestEventQueueHandsOverTheLatest(t *testing.T) {
	q := newEventQueue()
	out := make(chan Event)
	startDelivery(t, q, out)
	q.put(nodeEvent(EventJoin, "a", 1, time.Now()))
	q.put(nodeEvent(EventUpdate, "a", 2, time.Now()))
	e := receive(t, out)
	assert.Equal(t, EventUpdate, e.Type)
	assert.Equal(t, uint64(2), e.Nodes[0].Tags.Gen)
	assert.Equal(t, uint64(1), q.coalesced.Load())
}
