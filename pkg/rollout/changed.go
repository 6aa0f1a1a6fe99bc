package rollout

import "sync"

// Changed returns a channel that is closed once the rollouts change after
// the call (one starts, progresses or ends): get the channel, then read
// Get, and no change is missed. What waits for a rollout to end (a scale
// queued behind it) waits on it instead of polling.
func (c *Coordinator) Changed() <-chan struct{} { return c.changed.channel() }

// notifier hands out a channel that is closed and replaced on notify. The
// zero value is ready to use.
type notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

func (c *notifier) channel() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch == nil {
		c.ch = make(chan struct{})
	}
	return c.ch
}

func (c *notifier) notify() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch != nil {
		close(c.ch)
		c.ch = nil
	}
}
