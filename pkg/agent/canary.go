package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/herd-cluster/herd/pkg/membership"
	"github.com/herd-cluster/herd/pkg/runtime"
)

// A canary is a deploy request with a canary part (membership.CanaryRequest):
// the agent runs n replicas of the request's image (the canary arm) and,
// when asked, n fresh replicas of its own image (the baseline arm) beside
// its replicas, on the next free ports after theirs, and announces them in
// its `cy` tag with the share of requests the gateways give the canary arm.
//
//   - Start: the answer comes once the request is checked (the image, no
//     rollout or scale of the agent's replicas in progress, ports for both
//     arms, tags that fit); the replicas start all at once, each announced
//     once healthy. The weight is announced as asked from the start: the
//     gateways route only to announced ports. A check (CheckOnly) runs the
//     same checks and starts nothing.
//   - The same request with another weight changes only the tag's weight;
//     the same request again changes nothing. A request for another image,
//     replica count or baseline is refused while a canary runs.
//   - The arms' replicas are supervised like the agent's own: a crashed or
//     failing one is withdrawn from the tag at once and restarted with the
//     usual backoff, so an arm short of its count shows in the tag.
//   - Replicas 0 ends the canary: the tag keeps `cy` with weight 0 and no
//     ports while every live gateway acknowledges the withdrawal (as a
//     scale-down waits), then the replicas stop and `cy` goes: the canary
//     has ended when the tag is gone. A live gateway that does not
//     acknowledge keeps the replicas running, withdrawn, and the end is
//     tried again after a backoff. An agent hosts one canary at most: an
//     end request ends it whatever image it names, without looking for
//     that image on the host, and ending no canary is a success.
//   - While a canary runs the agent refuses scale requests and deploys that
//     would change its image: the baseline arm is compared with the agent's
//     replicas as they are. A deploy is accepted again once the canary is
//     ending; a scale once it has ended (its ports are free).
//   - A canary is never persisted: the desired state file does not know of
//     it, a restarted agent stops what a canary left running (adopt) and
//     announces none, and the coordinator asks again. Shutdown stops the
//     arms with the rest, even with KeepReplicas.

// canary is the canary the agent hosts, owned by the Run goroutine.
type canary struct {
	image    runtime.Image // the canary arm's
	baseline runtime.Image // the baseline arm's: the agent's image when the canary began
	weight   int
	count    int       // replicas per arm
	arms     [][]*slot // the canary arm's slots, then the baseline arm's if asked for

	// ending: withdrawn from the tag, to be stopped once no start is in
	// flight and every live gateway acknowledged (advanceCanaryEnd).
	ending   bool
	draining bool      // the wait for the acknowledgements and the stops run
	failures int       // drains given up in a row, for the backoff
	retryAt  time.Time // when the next drain may begin
}

// drainResult is how a canary's drain ended: the slots whose replicas
// stopped, and err when the gateways did not all acknowledge (nothing was
// stopped) or some stops failed.
type drainResult struct {
	stopped []*slot // identities only: the drain's goroutine touches no slot
	err     error
}

// slots is every arm's slots; none for no canary.
func (c *canary) slots() []*slot {
	if c == nil {
		return nil
	}
	return slices.Concat(c.arms...)
}

// supervised is the slots checked and restarted: none while ending.
func (c *canary) supervised() []*slot {
	if c == nil || c.ending {
		return nil
	}
	return c.slots()
}

func (c *canary) withBaseline() bool { return len(c.arms) > 1 }

// String names the canary in errors: "predictor:1.1.0 (2 replicas per
// arm, with a baseline, weight 5%)".
func (c *canary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%d replica", c.image, c.count)
	if c.count != 1 {
		b.WriteString("s")
	}
	b.WriteString(" per arm")
	if c.withBaseline() {
		b.WriteString(", with a baseline")
	}
	fmt.Fprintf(&b, ", weight %d%%)", c.weight)
	return b.String()
}

// deployCanary handles a deploy request with a canary part: start, adjust
// or end the canary. With CheckOnly it says whether it would, changing
// nothing.
func (a *Agent) deployCanary(ctx context.Context, req membership.DeployRequest, img runtime.Image) error {
	cr := *req.Canary
	switch {
	case cr.Replicas == 0 && req.CheckOnly:
		return nil
	case cr.Replicas == 0:
		a.endCanary(req.Rollout)
		return nil
	case a.canary != nil:
		return a.adjustCanary(req, img)
	}
	if err := a.canStartCanary(); err != nil {
		return err
	}
	arms := 1
	if cr.Baseline {
		arms = 2
	}
	ports, err := a.canaryPorts(cr.Replicas, arms)
	if err != nil {
		return err
	}
	// The tag with every port must fit beside the others: an agent that
	// cannot announce its canary cannot withdraw it either.
	next := a.tags
	next.Canary = &membership.Canary{Weight: cr.Weight, Image: img.String(), Ports: ports[:cr.Replicas],
		Baseline: ports[cr.Replicas:], Count: cr.Replicas}
	if err := a.canTake(ctx, next, img, "canary of "+img.String()); err != nil {
		return err
	}
	if req.CheckOnly {
		return nil
	}
	a.startCanary(req.Rollout, img, cr, ports)
	return nil
}

// canStartCanary says why a canary cannot begin now, if it cannot: the
// agent's replicas must all run one image, and keep their count, so that
// the baseline is what they run and the canary's ports stay free of theirs.
func (a *Agent) canStartCanary() error {
	switch {
	case a.converging():
		return fmt.Errorf("%s is replacing its replicas with %s (a rollout): a canary waits until that is done",
			a.cfg.Node, a.want)
	case a.failed != nil && a.failed.want == a.want:
		return fmt.Errorf("%s gave up its deploy of %s (%s): its replicas run mixed images, no baseline for a canary",
			a.cfg.Node, a.want, a.failed.reason)
	case a.scaling():
		return fmt.Errorf("%s is changing its replica count to %d (a scale): a canary waits until that is done",
			a.cfg.Node, a.count)
	}
	return nil
}

// scaling reports whether a scale of the agent's replicas is in progress:
// replicas beyond the count still being removed, or one under it that has
// never been healthy yet (a scale-up's).
func (a *Agent) scaling() bool {
	if len(a.slots) != a.count {
		return true
	}
	for _, s := range a.slots {
		if s.healthySince.IsZero() {
			return true
		}
	}
	return false
}

// canaryPorts picks n ports per arm for a canary: the free ones after the
// agent's replicas, within the ports its replicas may use (Config.portRoom).
// A port something else holds is skipped.
func (a *Agent) canaryPorts(n, arms int) ([]uint16, error) {
	room, limit := a.cfg.portRoom()
	need := n * arms
	var ports, taken []uint16
	for i := len(a.slots); i < room && len(ports) < need; i++ {
		port := a.cfg.port(i)
		if err := runtime.CheckPortFree(a.cfg.HostIP, port); err != nil {
			if !errors.Is(err, runtime.ErrPortInUse) {
				return nil, fmt.Errorf("%s: canary port: %w", a.cfg.Node, err)
			}
			taken = append(taken, port)
			continue
		}
		ports = append(ports, port)
	}
	if len(ports) < need {
		if len(taken) > 0 {
			limit += fmt.Sprintf("; ports %s in use", membership.EncodePorts(taken))
		}
		baseline := ""
		if arms > 1 {
			baseline = " and its baseline"
		}
		return nil, fmt.Errorf("%s has room for %d canary replicas after its %d (%s), not the %d of a canary of %d%s",
			a.cfg.Node, len(ports), len(a.slots), limit, need, n, baseline)
	}
	return ports, nil
}

// startCanary starts the arms on ports, n per arm, all at once.
func (a *Agent) startCanary(rollout string, img runtime.Image, cr membership.CanaryRequest, ports []uint16) {
	c := &canary{image: img, baseline: a.want, weight: cr.Weight, count: cr.Replicas}
	arms := []runtime.Arm{runtime.ArmCanary}
	if cr.Baseline {
		arms = append(arms, runtime.ArmBaseline)
	}
	for k, arm := range arms {
		slots := make([]*slot, cr.Replicas)
		for i := range slots {
			slots[i] = &slot{index: i, arm: arm, port: ports[k*cr.Replicas+i], state: stateStopped}
		}
		c.arms = append(c.arms, slots)
	}
	a.canary = c
	a.logger.Info("canary starting", "image", img, "baseline", cr.Baseline, "base_image", c.baseline,
		"replicas", cr.Replicas, "weight", cr.Weight, "ports", membership.EncodePorts(ports), "rollout", rollout)
	for _, s := range c.slots() {
		a.launch(s, nil, false)
	}
	if err := a.announce(); err != nil {
		a.logger.Error("announce the canary", "error", err)
	}
}

// adjustCanary handles a request for a canary while one runs: a new
// weight for the same canary, or a refusal.
func (a *Agent) adjustCanary(req membership.DeployRequest, img runtime.Image) error {
	c, cr := a.canary, *req.Canary
	switch {
	case c.ending:
		return fmt.Errorf("%s is ending its canary of %s: ask again once it has ended", a.cfg.Node, c.image)
	case img != c.image:
		return fmt.Errorf("%s hosts a canary of %s: end it before starting one of %s", a.cfg.Node, c, img)
	case cr.Replicas != c.count || cr.Baseline != c.withBaseline():
		return fmt.Errorf("%s hosts a canary of %s: end it to change its replicas", a.cfg.Node, c)
	}
	if req.CheckOnly || cr.Weight == c.weight {
		return nil
	}
	a.logger.Info("canary weight changed", "image", c.image, "from", c.weight, "to", cr.Weight, "rollout", req.Rollout)
	c.weight = cr.Weight
	if err := a.announce(); err != nil {
		a.logger.Error("announce the canary's weight", "error", err)
	}
	return nil
}

// refuseForCanary says why a deploy to img must wait, if a canary runs: a
// new image for the agent's replicas would change what the baseline is
// compared with. A deploy of the image they run changes nothing and
// passes, as does one while the canary is ending.
func (a *Agent) refuseForCanary(img runtime.Image) error {
	c := a.canary
	if c == nil || c.ending || img == a.want {
		return nil
	}
	return fmt.Errorf("%s hosts a canary of %s: a deploy of %s waits until the canary has ended", a.cfg.Node, c, img)
}

// endCanary withdraws the canary's replicas from the tag (`cy` stays, with
// weight 0 and no ports) and cancels their starts; advanceCanaryEnd does
// the rest. Ending no canary, or one ending already, does nothing more.
func (a *Agent) endCanary(rollout string) {
	c := a.canary
	if c == nil {
		return
	}
	if c.ending {
		c.retryAt = time.Now() // asked again: a drain given up is tried at once
		a.advanceCanaryEnd()
		return
	}
	a.logger.Info("canary ending", "image", c.image, "rollout", rollout)
	c.ending = true
	for _, s := range c.slots() {
		if s.cancel != nil {
			s.cancel()
		}
	}
	if err := a.announce(); err != nil {
		// Retried by the loop's next announcement; nothing stops before
		// the withdrawal is in the tags (advanceCanaryEnd).
		a.logger.Error("announce the canary's withdrawal", "error", err)
	}
	a.advanceCanaryEnd()
}

// advanceCanaryEnd moves an ending canary on: once no start of it is in
// flight and its withdrawal is in the tags, it waits in the background for
// every live gateway's acknowledgement, then stops the replicas all at
// once (applyCanaryDrain takes the result); with nothing left running, the
// canary is gone and the next announcement drops `cy`.
func (a *Agent) advanceCanaryEnd() {
	c := a.canary
	if c == nil || !c.ending || c.draining || a.startCtx.Err() != nil {
		return // stopping: shutdown stops the replicas itself
	}
	var batch []*slot
	for _, s := range c.slots() {
		if s.cancel != nil {
			return // its result brings what it started
		}
		if s.replica != nil {
			batch = append(batch, s)
		}
	}
	if len(batch) == 0 {
		a.logger.Info("canary ended", "image", c.image)
		a.canary = nil
		return
	}
	cy := a.tags.Canary
	if time.Now().Before(c.retryAt) || cy == nil || len(cy.Ports)+len(cy.Baseline) > 0 {
		return // not yet: a backoff, or the withdrawal not announced
	}
	c.draining = true
	withdrawn := a.tags.Gen
	replicas := make([]runtime.Replica, len(batch))
	for i, s := range batch {
		replicas[i], s.state = *s.replica, stateDraining
	}
	a.logger.Info("canary withdrawn, waiting for the gateways", "image", c.image, "replicas", len(batch))
	a.starts.Go(func() {
		res := drainResult{err: a.syncGateways(a.startCtx, withdrawn)}
		if res.err == nil {
			res.stopped, res.err = a.stopCanaryReplicas(batch, replicas)
		}
		a.results <- startResult{drained: &res}
	})
}

// stopCanaryReplicas stops replicas (those of batch) all at once, once
// every gateway has acknowledged: the stops go through even if the agent
// is stopping meanwhile. It returns the slots whose replica stopped.
func (a *Agent) stopCanaryReplicas(batch []*slot, replicas []runtime.Replica) ([]*slot, error) {
	errs := make([]error, len(replicas))
	var wg sync.WaitGroup
	for i, r := range replicas {
		wg.Go(func() {
			if err := a.rt.Stop(context.Background(), r, a.cfg.StopGrace); err != nil {
				errs[i] = fmt.Errorf("stop %s replica %d: %w", r.Arm, r.Index, err)
			}
		})
	}
	wg.Wait()
	var stopped []*slot
	for i, s := range batch {
		if errs[i] == nil {
			stopped = append(stopped, s)
		}
	}
	return stopped, errors.Join(errs...)
}

// applyCanaryDrain records how a drain ended; one that failed is tried
// again after a backoff.
func (a *Agent) applyCanaryDrain(res drainResult) {
	c := a.canary
	c.draining = false
	for _, s := range res.stopped {
		s.replica, s.state = nil, stateStopped
	}
	switch {
	case res.err == nil:
		c.failures = 0
	case a.startCtx.Err() != nil:
		return // stopping: shutdown stops what is left
	default:
		c.failures++
		c.retryAt = time.Now().Add(a.backoff(c.failures + 1))
		var unacked *membership.UnackedError
		if errors.As(res.err, &unacked) {
			a.logger.Error("canary replicas kept, withdrawn: not every live gateway acknowledged their withdrawal",
				"image", c.image, "gateways", unacked.Gateways, "retry_in", time.Until(c.retryAt).Round(time.Millisecond))
		} else {
			a.logger.Error("canary end not done; trying again", "image", c.image, "error", res.err,
				"retry_in", time.Until(c.retryAt).Round(time.Millisecond))
		}
	}
	a.advanceCanaryEnd()
}

// applyCanaryStart records the result of a start of one of the canary's
// replicas. A canary always outlives its starts: it ends only once none
// is in flight.
func (a *Agent) applyCanaryStart(res startResult) {
	c := a.canary
	s := c.arms[0][res.index]
	if res.arm == runtime.ArmBaseline {
		s = c.arms[1][res.index]
	}
	s.replica, s.cancel = res.replica, nil
	switch {
	case res.err != nil && (c.ending || a.startCtx.Err() != nil):
		s.state = stateStopped // cancelled: what it started is stopped with the rest
	case res.err != nil:
		s.failures++
		s.state, s.retryAt = stateBackoff, time.Now().Add(a.backoff(s.failures))
		a.slotLogger(s).Error("canary replica failed to start", "index", s.index, "port", s.port, "image", s.starting,
			"error", res.err, "retry_in", time.Until(s.retryAt).Round(time.Millisecond))
	default:
		s.state, s.failedChecks, s.healthySince = stateHealthy, 0, time.Now()
		a.slotLogger(s).Debug("canary replica healthy", "index", s.index, "addr", res.replica.Addr())
	}
	a.advanceCanaryEnd()
}

// canaryTag is the `cy` tag for the canary: the healthy replicas of each
// arm and the weight; while ending, weight 0 and no ports. nil for none.
func (a *Agent) canaryTag() *membership.Canary {
	c := a.canary
	if c == nil {
		return nil
	}
	cy := &membership.Canary{Weight: c.weight, Image: c.image.String(), Count: c.count}
	if c.ending {
		return withdrawnCanary(cy)
	}
	for k, arm := range c.arms {
		for _, s := range arm {
			if s.state != stateHealthy {
				continue
			}
			if k == 0 {
				cy.Ports = append(cy.Ports, s.port)
			} else {
				cy.Baseline = append(cy.Baseline, s.port)
			}
		}
	}
	return cy
}

// withdrawnCanary is cy with no replica routed: weight 0, no ports.
func withdrawnCanary(cy *membership.Canary) *membership.Canary {
	return &membership.Canary{Image: cy.Image, Count: cy.Count}
}

// sameCanary reports whether two `cy` tags say the same.
func sameCanary(x, y *membership.Canary) bool {
	if x == nil || y == nil {
		return x == y
	}
	return x.Weight == y.Weight && x.Image == y.Image && x.Count == y.Count &&
		slices.Equal(x.Ports, y.Ports) && slices.Equal(x.Baseline, y.Baseline)
}
