package membership

import (
	"errors"
	"fmt"
	"maps"

	"github.com/hashicorp/serf/serf"
)

// Setting tags without waiting for the previous ones to spread.
//
// Serf's SetTags returns only once the broadcast of the new tags is done:
// sent RetransmitMult × log10(members+1) times, at most GossipNodes a
// gossip round, so on a small cluster four rounds (0.4 s with the local
// profile, 0.8 s with the LAN one). Tags set meanwhile would wait for it,
// though a member's newer state replaces its older one in the broadcast
// queue, which ends the older broadcast at once: the next tags need not
// wait for the last ones to have spread, only for Serf to have read them.
// (Serf stores the tags in its config unguarded and reads them back before
// it queues their broadcast, so two of its SetTags must not overlap that
// far.) Right after queueing, Serf reports the local member's new tags as
// a member-update event: SetTags waits for that event, and lets Serf's
// SetTags finish its wait in the background.

// tagsWaiter is a SetTags waiting for Serf to report its tags in effect
// here. It travels to the loop through the channel Serf's events take, so
// that the events queued before it (an earlier SetTags' report, perhaps of
// the same tags) are never taken for its own.
type tagsWaiter struct {
	tags map[string]string
	done chan struct{} // closed by the loop when the tags show
}

// EventType and String make a tagsWaiter fit Serf's event channel; it
// never reaches Serf, only this package's loop.
func (w *tagsWaiter) EventType() serf.EventType { return serf.EventUser }
func (w *tagsWaiter) String() string            { return "tags-waiter" }

// SetTags validates and announces new tags. It returns once they are in
// effect here and their broadcast is queued, not once it has gone out:
// they reach every member within a few gossip rounds and show there as a
// member-update event, and tags set again meanwhile replace them in the
// broadcast. Calls are serialized.
func (c *Cluster) SetTags(t Tags) error {
	m, err := t.Encode()
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	w := &tagsWaiter{tags: m, done: make(chan struct{})}
	shutdown := c.serf.ShutdownCh()
	select {
	case c.serfEvents <- w:
	case <-shutdown:
		return fmt.Errorf("%w: the member is shut down", ErrTagsUnconfirmed)
	}
	set := make(chan error, 1)
	// Ends when the broadcast is done or replaced by the next tags', or
	// after Serf's BroadcastTimeout (5 s) at most.
	go func() { set <- c.serf.SetTags(m) }()
	c.tags = t
	select {
	case <-w.done:
		return nil
	case err := <-set:
		// Done before the loop saw the report (no other member to send
		// to), or no report at all (the tags did not change, or the
		// member left).
		if err != nil {
			// Encode bounds the size, so Serf's only remaining error is a
			// timeout waiting for the broadcast: the tags are in effect
			// here and keep spreading by gossip.
			return fmt.Errorf("%w: %v", ErrTagsUnconfirmed, err)
		}
		return nil
	case <-shutdown:
		return fmt.Errorf("%w: the member is shut down", ErrTagsUnconfirmed)
	}
}

// ErrTagsUnconfirmed is returned by SetTags when Serf did not confirm the
// new tags in effect: its broadcast timed out, or the member shut down
// meanwhile. Unless shut down, they are in effect and still spread; callers
// that must know (draining) confirm with SyncGateways.
var ErrTagsUnconfirmed = errors.New("tags set; broadcast not confirmed yet")

// localTagsSeen ends the wait of the SetTags whose tags e reports in
// effect for this member. Called by the loop.
func (c *Cluster) localTagsSeen(e serf.MemberEvent) {
	w := c.tagsWait
	if w == nil || e.Type != serf.EventMemberUpdate {
		return
	}
	for _, m := range e.Members {
		if m.Name == c.cfg.NodeName && maps.Equal(m.Tags, w.tags) {
			close(w.done)
			c.tagsWait = nil
			return
		}
	}
}
