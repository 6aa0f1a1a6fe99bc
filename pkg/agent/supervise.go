package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/herd-cluster/herd/pkg/membership"
	"github.com/herd-cluster/herd/pkg/runtime"
)

// Replica states, as the admin API shows them.
const (
	stateStarting  = "starting"  // being started, not yet healthy
	stateHealthy   = "healthy"   // announced to the gateways
	stateUnhealthy = "unhealthy" // running but failing checks: withdrawn
	stateBackoff   = "backoff"   // failed; waiting to be restarted
	stateDraining  = "draining"  // withdrawn for replacement or a scale-down; gateways acknowledging
	stateStopped   = "stopped"
)

// slot is replica index i's place: port base+i, and whatever runs there.
// A canary's replicas have slots too (canary.go): index i of their arm, on
// a port after the agent's own.
type slot struct {
	index        int
	arm          runtime.Arm // runtime.ArmStable for the agent's own replicas
	port         uint16
	replica      *runtime.Replica
	state        string
	failedChecks int // consecutive
	failures     int // consecutive crashes or failed starts, for backoff
	restarts     int
	retryAt      time.Time
	healthySince time.Time
	cancel       context.CancelFunc // of the start in progress
	starting     runtime.Image      // the image the start in progress runs
	retiring     bool               // withdrawn by a scale-down, to be stopped (scale.go)
}

type startResult struct {
	index   int
	arm     runtime.Arm      // the slot's arm: a canary's results are canary.go's
	replica *runtime.Replica // set even on a failed health check, to stop it
	adopted bool             // the replica was found running, not started
	err     error
	// superseded: the start was cancelled because the desired image changed.
	superseded bool
	// kept: the old replica was neither stopped nor replaced, and serves
	// on: a live gateway did not acknowledge its withdrawal (unacked), or
	// the wait for the acknowledgements was cancelled.
	kept    *runtime.Replica
	unacked *membership.UnackedError
	// retired: the result of a scale-down's stop (applyRetire), not a start.
	retired bool
	// drained: the result of a canary's end (applyCanaryDrain), not a start.
	drained *drainResult
}

// adoptWait gives a replica found running the same time a new one has to
// pass its health check: a slow replica is not a dead one.
func (a *Agent) adoptWait(s *slot) {
	s.state = stateStarting
	r := *s.replica
	a.starts.Go(func() {
		a.results <- startResult{index: s.index, replica: &r, adopted: true, err: a.waitHealthy(a.startCtx, r)}
	})
}

// launch (re)starts slot s in the background on its image (imageOf): stop old
// (after every gateway acknowledged its withdrawal, when drain is set), start
// new, wait for its first passing check. The result arrives on a.results.
func (a *Agent) launch(s *slot, old *runtime.Replica, drain bool) {
	s.state = stateStarting
	if drain {
		s.state = stateDraining
	}
	spec := runtime.Spec{
		Service: a.cfg.Service, Node: a.cfg.Node, Arm: s.arm, Index: s.index, Image: a.imageOf(s),
		HostIP: a.cfg.HostIP, Port: s.port,
	}
	ctx, cancel := context.WithCancel(a.startCtx)
	s.cancel, s.starting = cancel, spec.Image
	withdrawn := a.tags.Gen // the tags that withdraw old, when drain is set
	a.starts.Go(func() {
		defer cancel()
		res := startResult{index: spec.Index, arm: spec.Arm}
		defer func() {
			res.superseded = ctx.Err() != nil && a.startCtx.Err() == nil
			a.results <- res
		}()
		if old != nil {
			if drain {
				// The withdrawal is announced; stop only once every live
				// gateway has stopped routing to it. One that stays silent
				// until the deadline may still route to it: the replica is
				// kept, and the deploy fails (applyStart).
				if err := a.syncGateways(ctx, withdrawn); err != nil {
					res.kept, res.err = old, err
					errors.As(err, &res.unacked)
					return
				}
			}
			if res.err = a.rt.Stop(ctx, *old, a.cfg.StopGrace); res.err != nil {
				// Still there: the slot keeps it, for the next attempt or
				// the agent's own stop to stop.
				res.replica = old
				return
			}
		}
		r, err := a.rt.Start(ctx, spec)
		if res.err = err; err != nil {
			return
		}
		res.replica = &r
		res.err = a.waitHealthy(ctx, r)
	})
}

func (a *Agent) applyStart(res startResult) {
	switch {
	case res.drained != nil:
		a.applyCanaryDrain(*res.drained)
		return
	case res.arm != runtime.ArmStable:
		a.applyCanaryStart(res)
		return
	case res.retired:
		a.applyRetire(res)
		return
	}
	s := a.slots[res.index]
	s.replica, s.cancel = res.replica, nil
	if res.kept != nil {
		s.replica, s.state = res.kept, stateHealthy
		if res.unacked == nil {
			a.logger.Info("replacement cancelled; the replica serves on", "index", s.index, "error", res.err)
			return
		}
		reason := fmt.Sprintf("gateway %s did not acknowledge the withdrawal of replica %d within %s",
			strings.Join(res.unacked.Gateways, ", "), s.index, res.unacked.Timeout)
		a.failed = &deployFailure{want: a.want, reason: truncateReason(reason)}
		a.logger.Error("replica kept: not every live gateway acknowledged its withdrawal; the deploy fails",
			"index", s.index, "image", a.want, "gateways", res.unacked.Gateways)
		return
	}
	if res.err != nil && res.superseded {
		// Not a failure of the replica: the desired image changed under it.
		s.state, s.retryAt = stateBackoff, time.Now()
		a.logger.Info("start superseded by a new desired image", "index", s.index, "image", a.want)
		return
	}
	if res.err != nil {
		s.failures++
		s.state = stateBackoff
		s.retryAt = time.Now().Add(a.backoff(s.failures))
		a.logger.Error("replica failed to start", "index", s.index, "port", s.port, "error", res.err,
			"retry_in", time.Until(s.retryAt).Round(time.Millisecond))
		return
	}
	s.state, s.failedChecks, s.healthySince = stateHealthy, 0, time.Now()
	a.logger.Debug("replica healthy", "index", s.index, "addr", res.replica.Addr())
}

// backoff is the wait before the next start after n failures in a row: none
// for the first, then RestartBackoff doubling up to MaxRestartBackoff.
func (a *Agent) backoff(n int) time.Duration {
	if n <= 1 {
		return 0
	}
	d := a.cfg.RestartBackoff
	for i := 2; i < n && d < a.cfg.MaxRestartBackoff; i++ {
		d *= 2
	}
	return min(d, a.cfg.MaxRestartBackoff)
}

// supervise checks the replicas every HealthInterval and restarts failed
// ones, until ctx ends.
func (a *Agent) supervise(ctx context.Context) {
	tick := time.NewTicker(a.cfg.HealthInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case res := <-a.results:
			a.applyStart(res)
		case q := <-a.queries:
			a.answer(ctx, q)
		case round := <-a.checks:
			a.checking = false
			a.applyChecks(round)
		case <-tick.C:
			a.startChecks(ctx)
			a.restartDue()
			a.converge()
			a.advanceCanaryEnd() // a drain that failed is retried after its backoff
		}
		a.applyPending()
		// Before announcing: what the admin API shows is never behind what
		// the gateways route.
		a.publishStatus()
		if err := a.announce(); err != nil {
			a.logger.Error("announce replicas", "error", err)
		}
	}
}

// checkRound is one round of health checks of the replicas in service.
// It runs off the loop: the engine's list and the checks take up to
// HealthTimeout (tens to hundreds of milliseconds while the engine starts
// containers), and the loop must meanwhile take the results of starts, to
// announce the replicas that became healthy, and answer queries.
type checkRound struct {
	running map[replicaKey]bool // as the driver lists them; nil when it cannot tell
	checked []checked
}

// checked is one replica's check: the slot may hold another replica by the
// time the round comes back (restarted, replaced or retired), and then the
// result is about one that is gone.
type checked struct {
	slot    *slot
	replica *runtime.Replica
	err     error
}

// supervisedSlots are the slots supervised: the agent's own in service
// and a canary's, alike. Replicas beyond the count are a scale-down's to
// remove (scale.go): neither checked nor restarted.
func (a *Agent) supervisedSlots() []*slot {
	return append(slices.Clip(a.slots[:min(a.count, len(a.slots))]), a.canary.supervised()...)
}

// startChecks starts a round of checks of the replicas in service, all at
// once, unless the last round is still running. The round comes back on
// a.checks (applyChecks).
func (a *Agent) startChecks(ctx context.Context) {
	if a.checking {
		return
	}
	var round checkRound
	for _, s := range a.supervisedSlots() {
		if s.replica != nil && (s.state == stateHealthy || s.state == stateUnhealthy) {
			round.checked = append(round.checked, checked{slot: s, replica: s.replica})
		}
	}
	a.checking = true
	a.starts.Go(func() {
		var wg sync.WaitGroup
		wg.Go(func() { round.running = a.runningReplicas(ctx) })
		for i := range round.checked {
			c := &round.checked[i]
			wg.Go(func() { c.err = a.check(ctx, *c.replica) })
		}
		wg.Wait()
		a.checks <- round // room for it: one round at a time
	})
}

// applyChecks acts on a round's results, for the replicas still in their
// slots and in service.
func (a *Agent) applyChecks(round checkRound) {
	live := a.supervisedSlots()
	for _, c := range round.checked {
		s := c.slot
		if s.replica != c.replica || !slices.Contains(live, s) || (s.state != stateHealthy && s.state != stateUnhealthy) {
			continue
		}
		a.judge(s, c.err, round.running)
	}
}

// restartDue restarts the replicas whose backoff is over, and forgets the
// failures of those stable again.
func (a *Agent) restartDue() {
	now := time.Now()
	for _, s := range a.supervisedSlots() {
		if s.state == stateBackoff && !now.Before(s.retryAt) {
			a.restart(s, "retrying after backoff")
		}
		if s.state == stateHealthy && s.failures > 0 && now.Sub(s.healthySince) >= a.cfg.MaxRestartBackoff {
			s.failures = 0 // stable again: the next crash restarts at once
		}
	}
}

// judge acts on one replica's check result.
func (a *Agent) judge(s *slot, checkErr error, running map[replicaKey]bool) {
	logger := a.slotLogger(s)
	if isRunning, known := running[keyOf(s)]; known && !isRunning {
		s.failures++
		logger.Warn("replica exited; replacing", "index", s.index, "port", s.port)
		a.restartAfterBackoff(s)
		return
	}
	if checkErr == nil {
		if s.state == stateUnhealthy {
			logger.Info("replica healthy again", "index", s.index, "port", s.port)
			s.healthySince = time.Now()
		}
		s.state, s.failedChecks = stateHealthy, 0
		return
	}
	s.failedChecks++
	s.state = stateUnhealthy
	logger.Warn("replica failed its health check; withdrawn", "index", s.index, "port", s.port,
		"failed_checks", s.failedChecks, "error", checkErr)
	if s.failedChecks >= a.cfg.ReplaceAfter {
		if running == nil {
			// The driver cannot tell what runs (a Docker engine away): a
			// replacement could not start either, and the replica may serve
			// again when the engine is back. Wait for it.
			logger.Warn("runtime unreachable; not replacing until it answers", "index", s.index)
			return
		}
		s.failures++
		a.restartAfterBackoff(s)
	}
}

func (a *Agent) restartAfterBackoff(s *slot) {
	if wait := a.backoff(s.failures); wait > 0 {
		s.state, s.retryAt = stateBackoff, time.Now().Add(wait)
		a.slotLogger(s).Warn("replica in backoff", "index", s.index, "retry_in", wait)
		return
	}
	a.restart(s, "replacing")
}

func (a *Agent) restart(s *slot, why string) {
	a.slotLogger(s).Info(why, "index", s.index, "port", s.port)
	s.restarts++
	old := s.replica
	s.replica = nil
	a.launch(s, old, false)
}

// replicaKey names a replica among the agent's own and a canary's.
type replicaKey struct {
	arm   runtime.Arm
	index int
}

func keyOf(s *slot) replicaKey { return replicaKey{arm: s.arm, index: s.index} }

// runningReplicas asks the driver which replicas run. When the driver
// cannot tell (a Docker daemon away), it returns nothing and health checks
// decide.
func (a *Agent) runningReplicas(ctx context.Context) map[replicaKey]bool {
	list, err := a.rt.List(ctx)
	if err != nil {
		if ctx.Err() == nil { // not the agent stopping
			a.logger.Warn("cannot list replicas; relying on health checks", "error", err)
		}
		return nil
	}
	out := make(map[replicaKey]bool, len(list))
	for _, r := range list {
		if r.Service == a.cfg.Service {
			out[replicaKey{arm: r.Arm, index: r.Index}] = r.Running
		}
	}
	return out
}

// imageOf is the image slot s runs: the desired image, or its canary arm's.
func (a *Agent) imageOf(s *slot) runtime.Image {
	switch s.arm {
	case runtime.ArmCanary:
		return a.canary.image
	case runtime.ArmBaseline:
		return a.canary.baseline
	}
	return a.want
}

// slotLogger is the logger for s's messages: a canary's say their arm.
func (a *Agent) slotLogger(s *slot) hclog.Logger {
	if s.arm == runtime.ArmStable {
		return a.logger
	}
	return a.logger.With("arm", string(s.arm))
}

// ReplicaStatus is one replica as the admin API shows it.
type ReplicaStatus struct {
	// Arm is empty for the agent's own replicas, "canary" or "baseline"
	// for a canary's (CanaryReplicas); Index is within the arm.
	Arm      string `json:"arm,omitempty"`
	Index    int    `json:"index"`
	Addr     string `json:"addr"`
	Image    string `json:"image"`
	State    string `json:"state"`
	ID       string `json:"id,omitempty"`
	PID      int    `json:"pid,omitempty"`
	Restarts int    `json:"restarts"`
}

func (a *Agent) publishStatus() {
	a.status.Store(a.statusOf(a.slots, a.cfg.Image))
	var arms []*slot
	var img runtime.Image
	if a.canary != nil {
		arms, img = a.canary.slots(), a.canary.image
	}
	a.canaryStatus.Store(a.statusOf(arms, img))
}

// statusOf is slots as the admin API shows them; img is the image of
// those that run nothing.
func (a *Agent) statusOf(slots []*slot, img runtime.Image) *[]ReplicaStatus {
	out := make([]ReplicaStatus, len(slots))
	for i, s := range slots {
		st := ReplicaStatus{Arm: string(s.arm), Index: s.index, State: s.state, Restarts: s.restarts, Image: img.String()}
		st.Addr = runtime.Replica{HostIP: a.cfg.HostIP, Port: s.port}.Addr().String()
		if s.replica != nil {
			st.ID, st.PID, st.Image = s.replica.ID, s.replica.PID, s.replica.Image.String()
		}
		out[i] = st
	}
	return &out
}

// Replicas returns the agent's own replicas' current states. Safe from any
// goroutine.
func (a *Agent) Replicas() []ReplicaStatus { return *a.status.Load() }

// CanaryReplicas returns the states of the replicas of the canary the
// agent hosts, the canary arm's then the baseline arm's; none when it hosts
// none. Safe from any goroutine.
func (a *Agent) CanaryReplicas() []ReplicaStatus { return *a.canaryStatus.Load() }
