package membership

import (
	"fmt"
	"time"

	"github.com/hashicorp/serf/serf"
)

// EventType says what happened to the nodes of an Event.
type EventType int

// Event types, one per Serf member event.
const (
	EventJoin EventType = iota
	EventLeave
	EventFailed
	EventUpdate
	EventReap
)

func (t EventType) String() string {
	switch t {
	case EventJoin:
		return "member-join"
	case EventLeave:
		return "member-leave"
	case EventFailed:
		return "member-failed"
	case EventUpdate:
		return "member-update"
	case EventReap:
		return "member-reap"
	default:
		return fmt.Sprintf("event(%d)", int(t))
	}
}

// Event is a membership change, with the decoded nodes it concerns. Nodes
// whose tags are malformed are included with Err set. A Cluster delivers one
// node per event; a member's event that replaced older ones not yet taken
// (see Config.EventCh) carries its latest type and state.
type Event struct {
	Type  EventType
	Nodes []Node
	// At is when Serf delivered the event, to measure how long reacting
	// to it takes: for an event that replaced older ones of its member, when
	// the oldest of them was delivered (the consumer's view of the member
	// has been stale since).
	At time.Time
}

func eventTypeOf(t serf.EventType) (EventType, bool) {
	switch t {
	case serf.EventMemberJoin:
		return EventJoin, true
	case serf.EventMemberLeave:
		return EventLeave, true
	case serf.EventMemberFailed:
		return EventFailed, true
	case serf.EventMemberUpdate:
		return EventUpdate, true
	case serf.EventMemberReap:
		return EventReap, true
	default:
		return 0, false
	}
}
