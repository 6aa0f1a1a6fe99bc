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

// Running returns service's rollout if one is running. It starts no
// coordinator: a service the Set has none for runs no rollout.
func (s *Set) Running(service string) (Rollout, bool) {
	s.mu.Lock()
	c := s.coords[service]
	s.mu.Unlock()
	if c == nil {
		return Rollout{}, false
	}
	r := c.view.Load().current
	if r == nil || r.Done() {
		return Rollout{}, false
	}
	return clone(r), true
}

// Changed returns a channel closed once service's rollouts change after
// the call, like Coordinator.Changed: get the channel, then read Running.
// For a service the Set has no coordinator for yet, the channel is closed
// already: look again (one may have started since).
func (s *Set) Changed(service string) <-chan struct{} {
	s.mu.Lock()
	c := s.coords[service]
	s.mu.Unlock()
	if c == nil {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	return c.Changed()
}
