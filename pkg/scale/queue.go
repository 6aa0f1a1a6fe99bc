package scale

import (
	"context"
	"time"
)

// queued is a scale waiting for its service's rollout to end.
type queued struct {
	req     Request
	rollout string // the rollout it waits for, as Config.Rollout described it
	since   time.Time
	cancel  context.CancelFunc
}

// Queued is a scale waiting for a rollout, as Status shows it.
type Queued struct {
	Request Request
	// Rollout is the rollout it waits for; Since when it was queued.
	Rollout string
	Since   time.Time
}

// enqueue queues req behind the service's rollout, replacing a scale
// queued before it. A goroutine waits for the rollout to end (woken by
// RolloutChanged, no poll) and then scales, refusing or not as a scale
// asked then would; the outcome is logged and shown by Status.
func (s *Scaler) enqueue(req Request, rollout string) {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if old := s.queued[req.Service]; old != nil {
		old.cancel()
		s.logger.Info("queued scale replaced by a newer one", "service", req.Service, "replicas", old.req.Replicas,
			"now", req.Replicas)
	}
	ctx, cancel := context.WithCancel(context.Background())
	q := &queued{req: req, rollout: rollout, since: time.Now(), cancel: cancel}
	s.queued[req.Service] = q
	delete(s.lastQueued, req.Service)
	s.logger.Info("scale queued behind the rollout", "service", req.Service, "replicas", req.Replicas, "node", req.Node,
		"rollout", rollout, "reason", req.Reason)
	s.wg.Go(func() { s.runQueued(ctx, q) })
}

func (s *Scaler) runQueued(ctx context.Context, q *queued) {
	for {
		changed := s.cfg.RolloutChanged(q.req.Service)
		if s.cfg.Rollout(q.req.Service) == "" {
			break
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
	if !s.take(q) {
		return
	}
	req := q.req
	req.AfterRollout = false
	req.Reason += " (queued behind rollout " + q.rollout + ")"
	res, err := s.Scale(ctx, req)
	outcome := ""
	switch {
	case err != nil:
		outcome = err.Error()
		s.logger.Error("queued scale not done", "service", req.Service, "replicas", req.Replicas, "error", err)
	case len(res.Failed()) > 0:
		outcome = describeFailed(res.Failed())
	}
	s.qmu.Lock()
	s.lastQueued[req.Service] = QueuedOutcome{Request: q.req, Done: time.Now(), Error: outcome}
	s.qmu.Unlock()
}

// take removes q from the queue if it is still the service's queued scale.
func (s *Scaler) take(q *queued) bool {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if s.queued[q.req.Service] != q || s.closed {
		return false
	}
	delete(s.queued, q.req.Service)
	return true
}

// dropQueued forgets a scale of service queued before one done now.
func (s *Scaler) dropQueued(service string) {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if q := s.queued[service]; q != nil {
		q.cancel()
		delete(s.queued, service)
		s.logger.Info("queued scale dropped: a newer one was done", "service", service, "replicas", q.req.Replicas)
	}
	delete(s.lastQueued, service)
}

// QueuedOutcome is how the last queued scale of a service went once its
// rollout ended: Error is empty when every agent took its count.
type QueuedOutcome struct {
	Request Request
	Done    time.Time
	Error   string
}
