package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/herd-cluster/herd/pkg/membership"
	"github.com/herd-cluster/herd/pkg/runtime"
)

// Scaling changes how many replicas the agent runs without restarting it.
// Replica i always listens on BasePort+i, so the replicas hold the ports
// BasePort to BasePort+count-1: a scale-up starts the next ones (all at
// once, each announced once healthy), a scale-down removes the highest
// first. Those are withdrawn from the tags, every live gateway acknowledges
// that it stopped routing to them (the acknowledgement a replacement
// waits for), and only then are they stopped, their in-flight requests
// finishing. A live gateway that does not acknowledge within SyncTimeout
// makes the agent keep them and give the scale-down up, saying why in its
// Fail tag, as a replacement does.

// answerScale answers a scale request: the count and the room with Check,
// else whether the agent took the new count.
func (a *Agent) answerScale(q *membership.Query) {
	var resp membership.ScaleResponse
	req, err := membership.DecodeScaleRequest(q.Payload())
	if err != nil {
		a.logger.Warn("refusing malformed scale request", "from", q.From(), "error", err)
		resp = membership.ScaleResponse{Replicas: a.count, Error: a.cfg.Node + ": " + err.Error()}
	} else {
		resp = a.scale(req)
	}
	b, err := membership.EncodeScaleResponse(resp)
	if err == nil {
		err = q.Respond(b)
	}
	if err != nil {
		a.logger.Warn("could not answer scale request", "from", q.From(), "error", err)
	}
	// After the answer: the asker hears back before anything starts.
	a.convergeCount()
	if err := a.announce(); err != nil {
		a.logger.Error("announce replica count", "error", err)
	}
}

// applyPending applies the results that have arrived, so that one
// announcement covers them all: the replicas of a scale-up become healthy
// at about the same time, and each announcement is a broadcast to gossip.
func (a *Agent) applyPending() {
	for {
		select {
		case res := <-a.results:
			a.applyStart(res)
		default:
			return
		}
	}
}

// scale checks that req can be done here and, unless it is only a check,
// records the new count; convergeCount, once the answer is sent, does the
// rest.
func (a *Agent) scale(req membership.ScaleRequest) membership.ScaleResponse {
	resp := membership.ScaleResponse{Replicas: a.count}
	upTo := req.Replicas
	if req.Check {
		upTo = MaxReplicas
	}
	resp.Room, resp.Limit = a.room(upTo)
	if err := a.canScale(req, resp.Room, resp.Limit); err != nil {
		resp.Error = err.Error()
		return resp
	}
	if req.Check || (req.Replicas == a.count && a.scaleFail == "") {
		return resp
	}
	if err := a.saveDesired(a.want, req.Replicas); err != nil {
		resp.Error = fmt.Sprintf("%s: record the replica count: %v", a.cfg.Node, err)
		return resp
	}
	a.logger.Info("replica count changed", "from", a.count, "to", req.Replicas, "reason", req.Reason)
	a.count, a.scaleFail = req.Replicas, ""
	return resp
}

// canScale says why req cannot be done here, if it cannot.
func (a *Agent) canScale(req membership.ScaleRequest, room int, limit string) error {
	switch {
	case req.Service != a.cfg.Service:
		return fmt.Errorf("%s runs service %s, not %s", a.cfg.Node, a.cfg.Service, req.Service)
	case a.canary != nil:
		// Its arms hold the ports after the replicas, and the baseline is
		// compared with them as they are.
		return fmt.Errorf("%s hosts a canary of %s: its replica count changes once the canary has ended",
			a.cfg.Node, a.canary)
	case a.converging():
		return fmt.Errorf("%s is replacing its replicas with %s (a rollout): its count changes once that is done",
			a.cfg.Node, a.want)
	case !req.Check && req.Replicas > room:
		return fmt.Errorf("%s has room for %d replicas (%s), not %d", a.cfg.Node, room, limit, req.Replicas)
	}
	return nil
}

// converging reports whether the agent is moving its replicas to a new
// image: a scale then would mix with the rollout. An image given up on
// (a failed deploy) is not being moved to.
func (a *Agent) converging() bool {
	if a.failed != nil && a.failed.want == a.want {
		return false
	}
	for _, s := range a.slots[:min(a.count, len(a.slots))] {
		if !s.retiring && ((s.state == stateDraining) || (s.replica != nil && s.replica.Image != a.want) ||
			(s.cancel != nil && s.starting != a.want)) {
			return true
		}
	}
	return false
}

// room is how many replicas the agent can run, looking at ports up to
// index upTo: at most its maximum, fewer when a port past the replicas it
// has is taken by something else. limit says which.
func (a *Agent) room(upTo int) (n int, limit string) {
	n, limit = a.cfg.portRoom()
	for i := len(a.slots); i < min(n, upTo); i++ {
		if err := runtime.CheckPortFree(a.cfg.HostIP, a.cfg.port(i)); err != nil {
			if errors.Is(err, runtime.ErrPortInUse) {
				return i, fmt.Sprintf("port %d in use", a.cfg.port(i))
			}
			return i, err.Error()
		}
	}
	return n, limit
}

// convergeCount moves the replicas toward the count: starts the missing
// ones, all at once, and withdraws those beyond it to stop them (retire).
// Starts no longer wanted are cancelled; what they started is retired when
// their result comes back. Replicas being retired that the count wants
// again are kept when their withdrawal is not acknowledged yet.
func (a *Agent) convergeCount() {
	if a.startCtx.Err() != nil {
		return // stopping: start and stop nothing more
	}
	now := time.Now()
	var retire []*slot
	for _, s := range a.slots {
		switch {
		case s.index < a.count:
			if s.retiring && s.cancel != nil {
				s.cancel() // wanted again: keep it, if not stopping already
			}
		case s.cancel != nil:
			if !s.retiring {
				s.cancel()
			}
		case s.replica != nil && !now.Before(s.retryAt):
			retire = append(retire, s)
		}
	}
	a.trim()
	for i := len(a.slots); i < a.count; i++ {
		a.slots = append(a.slots, &slot{index: i, port: a.cfg.port(i), state: stateStopped})
	}
	for _, s := range a.slots[:a.count] {
		if s.replica == nil && s.cancel == nil && s.state == stateStopped {
			a.launch(s, nil, false)
		}
	}
	if len(retire) > 0 {
		a.retire(retire)
	}
}

// announcedCount is the count the tags carry: the count, or while
// replicas beyond it (a scale-down) are still withdrawn but running, up to
// the highest of them, so that a scale-down shows as done once they have
// stopped, and a given-up one never does.
func (a *Agent) announcedCount() int {
	n := a.count
	for _, s := range a.slots[min(a.count, len(a.slots)):] {
		if s.replica != nil || s.cancel != nil {
			n = s.index + 1
		}
	}
	return n
}

// trim forgets the slots past the count that hold nothing any more.
func (a *Agent) trim() {
	for n := len(a.slots); n > a.count; n-- {
		s := a.slots[n-1]
		if s.replica != nil || s.cancel != nil {
			return
		}
		a.slots = a.slots[:n-1]
	}
}

// retire withdraws the replicas of batch (beyond the count) from the tags,
// and in the background waits for every live gateway's acknowledgement,
// then stops them all at once. One result per replica arrives on
// a.results (applyRetire).
func (a *Agent) retire(batch []*slot) {
	ctx, cancel := context.WithCancel(a.startCtx)
	olds := make([]runtime.Replica, len(batch))
	indexes := make([]int, len(batch))
	states := make([]string, len(batch))
	for i, s := range batch {
		olds[i], indexes[i], states[i] = *s.replica, s.index, s.state
		s.state, s.cancel, s.retiring = stateDraining, cancel, true
	}
	if err := a.announce(); err != nil {
		// The gateways may still route to them: stop nothing, try again
		// on the next round.
		a.logger.Error("announce the withdrawal of replicas beyond the count", "error", err)
		for i, s := range batch {
			s.state, s.cancel, s.retiring = states[i], nil, false
		}
		cancel()
		return
	}
	a.logger.Info("scaling down: replicas withdrawn, waiting for the gateways", "count", a.count, "replicas", len(batch))
	withdrawn := a.tags.Gen
	a.starts.Go(func() {
		defer cancel()
		err := a.syncGateways(ctx, withdrawn)
		var unacked *membership.UnackedError
		errors.As(err, &unacked)
		var stops sync.WaitGroup
		for i, r := range olds {
			if err != nil {
				a.results <- startResult{index: indexes[i], retired: true, kept: &r, unacked: unacked, err: err}
				continue
			}
			// Acknowledged: the stop goes through even if the agent is
			// stopping meanwhile.
			stops.Go(func() {
				res := startResult{index: indexes[i], retired: true}
				if res.err = a.rt.Stop(context.WithoutCancel(ctx), r, a.cfg.StopGrace); res.err != nil {
					res.kept = &r
				}
				a.results <- res
			})
		}
		stops.Wait()
	})
}

// applyRetire records how one replica's retirement ended: stopped; kept
// because a live gateway did not acknowledge its withdrawal (the scale-down
// is given up: the count goes back up to keep it); kept because the wait
// was cancelled (the count wants it again, or the agent stops); or a stop
// that failed, tried again after a backoff.
func (a *Agent) applyRetire(res startResult) {
	s := a.slots[res.index]
	s.cancel, s.retiring = nil, false
	switch {
	case res.kept == nil:
		s.replica, s.state, s.failures = nil, stateStopped, 0
		a.logger.Debug("replica stopped after a scale-down", "index", s.index, "port", s.port)
	case res.unacked != nil:
		s.replica, s.state = res.kept, stateHealthy
		if a.scaleFail == "" {
			a.scaleFail = truncateReason(fmt.Sprintf("gateway %s did not acknowledge the withdrawal of replica %d within %s; "+
				"scale-down to %d given up", strings.Join(res.unacked.Gateways, ", "), s.index, res.unacked.Timeout, a.count))
			a.logger.Error("replicas kept: not every live gateway acknowledged their withdrawal; the scale-down is given up",
				"count", a.count, "gateways", res.unacked.Gateways)
		}
		a.count = max(a.count, s.index+1)
		if err := a.saveDesired(a.want, a.count); err != nil {
			a.logger.Error("record the replica count", "count", a.count, "error", err)
		}
	case errors.Is(res.err, context.Canceled):
		s.replica, s.state = res.kept, stateHealthy
		a.logger.Info("scale-down of the replica cancelled; it serves on", "index", s.index)
	case s.index < a.count:
		s.replica, s.state = res.kept, stateHealthy // wanted again meanwhile: it serves on, if it can
		a.logger.Warn("could not stop a replica removed by a scale-down; the count wants it again", "index", s.index,
			"error", res.err)
	default:
		s.replica, s.state = res.kept, stateDraining
		s.failures++
		s.retryAt = time.Now().Add(a.backoff(s.failures + 1))
		a.logger.Error("could not stop a replica removed by a scale-down; trying again", "index", s.index,
			"error", res.err, "retry_in", time.Until(s.retryAt).Round(time.Millisecond))
	}
	a.convergeCount()
}
