package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/herd-cluster/herd/pkg/membership"
)

// announcer puts the agent's tags into effect in its gossip member, in the
// background and in order, the latest replacing one not yet applied.
// Setting tags returns only once their broadcast has gone out, a few gossip
// rounds (up to a second with the LAN timings): the agent's loop must not
// wait with it, or replicas that become healthy meanwhile (a scale-up
// starts many at once) wait to be announced, and queries to be answered.
// What must know the tags in effect (a withdrawal about to be acknowledged
// by the gateways, the join) waits for their generation (wait).
//
// Generations only grow, and tags of a later generation describe the
// agent at least as recently: a wait for gen is satisfied by any later
// generation in effect.
type announcer struct {
	cluster *membership.Cluster
	logger  hclog.Logger

	stop     chan struct{} // closed by close
	done     chan struct{} // closed when run returns
	stopOnce sync.Once

	mu      sync.Mutex
	next    *membership.Tags // the latest tags not yet applied
	latest  uint64           // the generation set last
	applied uint64           // the generation in effect
	failed  uint64           // the latest generation that could not be applied
	err     error            // why failed could not
	closed  bool             // close was called: nothing more is applied
	changed chan struct{}    // closed and replaced when applied, failed or closed change
	wake    chan struct{}    // one pending signal for run
}

// errAnnouncerClosed is wait's error for tags set after the announcer
// stopped: they are never applied.
var errAnnouncerClosed = errors.New("agent stopping: tags no longer announced")

// newAnnouncer starts an announcer for c's tags; close stops it.
func newAnnouncer(c *membership.Cluster, logger hclog.Logger) *announcer {
	an := &announcer{
		cluster: c, logger: logger,
		stop: make(chan struct{}), done: make(chan struct{}),
		changed: make(chan struct{}), wake: make(chan struct{}, 1),
	}
	go an.run()
	return an
}

// set hands t over to be applied. Tags set after close are not applied
// (wait says so).
func (an *announcer) set(t membership.Tags) {
	an.mu.Lock()
	an.next, an.latest = &t, max(an.latest, t.Gen)
	an.mu.Unlock()
	select {
	case an.wake <- struct{}{}:
	default:
	}
}

// close applies the tags still pending, then stops the announcer. It
// returns once nothing is being applied any more: the member can leave
// without a tag update following its leave. Safe to call more than once.
func (an *announcer) close() {
	an.stopOnce.Do(func() { close(an.stop) })
	<-an.done
}

func (an *announcer) run() {
	defer close(an.done)
	for {
		select {
		case <-an.wake:
			an.apply()
		case <-an.stop:
			an.apply()
			an.mu.Lock()
			an.closed = true
			an.broadcast()
			an.mu.Unlock()
			return
		}
	}
}

// apply puts the pending tags, if any, into effect.
func (an *announcer) apply() {
	an.mu.Lock()
	t := an.next
	an.next = nil
	an.mu.Unlock()
	if t == nil {
		return
	}
	err := an.cluster.SetTags(*t)
	if errors.Is(err, membership.ErrTagsUnconfirmed) {
		// In effect and spreading: the gateways acknowledge them from a
		// sync request if gossip has not brought them yet.
		an.logger.Debug("tag broadcast not confirmed yet", "gen", t.Gen)
		err = nil
	}
	an.mu.Lock()
	defer an.mu.Unlock()
	if err != nil {
		// Tags are validated before they are set: this is not expected.
		an.logger.Error("announce tags", "gen", t.Gen, "error", err)
		an.failed, an.err = max(an.failed, t.Gen), fmt.Errorf("announce tags of generation %d: %w", t.Gen, err)
	} else {
		an.applied = max(an.applied, t.Gen)
	}
	an.broadcast()
}

// broadcast wakes the waiters. Called with mu held.
func (an *announcer) broadcast() {
	close(an.changed)
	an.changed = make(chan struct{})
}

// wait returns once tags of generation gen or later are in effect; with
// an error if the latest tags set, of gen or later, could not be applied,
// if the announcer stopped first, or when ctx ends.
func (an *announcer) wait(ctx context.Context, gen uint64) error {
	for {
		an.mu.Lock()
		applied, failed, latest, err, closed, changed := an.applied, an.failed, an.latest, an.err, an.closed, an.changed
		an.mu.Unlock()
		switch {
		case applied >= gen:
			return nil
		case failed >= gen && failed >= latest: // nothing later to come
			return err
		case closed:
			return errAnnouncerClosed
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
