package rollout

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/herd-cluster/herd/pkg/membership"
)

// progress is what step decides on: the rollout as the API shows it and the
// state file keeps it, and what the loop keeps beside it.
type progress struct {
	Rollout
	// revert is set while the batch in progress goes back to Previous. It is
	// saved with the rollout, so that a restart resumes the revert (with its
	// own deadline), not the batch.
	revert *revert
	// asks are the deploy requests of the phase in progress, by node. They
	// are kept in memory only: a restarted coordinator asks again, and a
	// request received twice changes nothing.
	asks map[string]ask
	// seen is the membership status last observed of each host of the batch
	// in progress, so that a change is logged once.
	seen map[string]membership.Status
	// deployRetry is how long after a deploy request was not taken it is
	// sent again (Config.DeployRetry).
	deployRetry time.Duration
	// base are the gateways' counts of the service's arms when the canary
	// step in progress started; kept in memory only: a restarted
	// coordinator measures the step afresh.
	base map[string]GatewayCounts
}

// revert says why the batch in progress goes back to the previous image.
type revert struct {
	// Final is the rollout's state once the revert ends: failed or aborted.
	Final State `json:"final"`
	// Reason is what went wrong: the start of the rollout's final message.
	Reason string `json:"reason"`
}

// ask is where the deploy request to one node stands.
type ask struct {
	image    string    // the request (its key) the phase in progress wants the node to take
	taken    bool      // the node answered that it took image
	inFlight string    // the image of the request in flight to the node; "" when none
	retryAt  time.Time // when a request the node did not take may be sent again
}

// observation is what the loop saw when it called step.
type observation struct {
	now time.Time
	// members are the rollout's hosts as membership shows them, by name; a
	// host membership does not know is absent.
	members map[string]membership.Node
	// answers are the answers to deploy requests since the last step.
	answers []deployAnswer
	// abort: the operator asked to abort (it stays set once it was).
	abort bool
	// promote: the operator asked to skip the canary's remaining steps.
	promote bool
	// counts are the gateways' cumulative counts of the service's arms,
	// read while a canary step is measured.
	counts map[string]GatewayCounts
}

// deployAnswer is one node's answer to a deploy request.
type deployAnswer struct {
	node, image string
	err         error // nil: the node took the image
}

// decision is what step asks of the loop.
type decision struct {
	// save: the rollout changed; save it and show it.
	save bool
	// deploy is the request to send now; none when its nodes are empty.
	deploy deployOrder
	// logs are what to tell the operator.
	logs []logLine
	// wake is when to step again if nothing happens before; zero: only
	// when something does (a membership change, an answer, an abort).
	wake time.Time
	// done: the rollout ended (its State says how); the loop stops.
	done bool
}

// deployOrder asks nodes to run image, or to run a canary of it.
type deployOrder struct {
	image  string
	canary *membership.CanaryRequest
	// key names the request: its answers are matched with it.
	key   string
	nodes []string
}

// logLine is one log entry for the loop to write.
type logLine struct {
	level hclog.Level
	msg   string
	args  []any
}

// newProgress returns the progress of r as loaded or started, with no
// request sent yet.
func newProgress(r Rollout, rev *revert, deployRetry time.Duration) progress {
	return progress{Rollout: r, revert: rev, asks: map[string]ask{}, seen: map[string]membership.Status{},
		deployRetry: deployRetry}
}

// step decides what a rollout does next, given what the loop observed. It
// does no I/O and does not modify p: it returns the next progress, and the
// decision the loop carries out.
func step(p progress, o observation) (progress, decision) {
	before := p
	p = p.clone()
	var d decision
	p.takeAnswers(o, &d)
	if !p.Done() {
		p.advance(o, &d)
	}
	d.done = p.Done()
	d.save = !before.sameRecord(&p)
	if !d.done {
		var retryAt time.Time
		d.deploy, retryAt = p.deploys(o)
		d.wake = earliest(d.wake, retryAt)
	}
	return p, d
}

// takeAnswers records the answers to deploy requests.
func (p *progress) takeAnswers(o observation, d *decision) {
	for _, a := range o.answers {
		k, ok := p.asks[a.node]
		if !ok || k.inFlight != a.image {
			continue
		}
		k.inFlight = ""
		if a.image == k.image { // else: an answer for a phase that is over
			if a.err == nil {
				k.taken = true
			} else {
				k.retryAt = o.now.Add(p.deployRetry)
				d.log(hclog.Warn, "deploy request not taken; asking again", "node", a.node, "image", a.image,
					"error", a.err, "in", p.deployRetry)
			}
		}
		p.asks[a.node] = k
	}
}

// advance moves the rollout on as far as the observation allows: batches
// that are done, a deadline passed, an abort, the end.
func (p *progress) advance(o observation, d *decision) {
	now := o.now.UTC()
	if p.Canary != nil && !p.advanceCanary(o, d) {
		return
	}
	for {
		idx := p.batchInProgress()
		if idx == nil {
			p.finish(now, d, StateSucceeded, fmt.Sprintf("%d hosts on %s", len(p.Hosts), p.Image), false, nil)
			return
		}
		if p.revert != nil {
			p.advanceRevert(idx, o, d)
			return
		}
		p.begin(idx, now)
		p.observe(idx, p.Image, HostReplacing, o, d)
		minHealthy := time.Duration(p.MinHealthy)
		deadline := p.started(idx).Add(time.Duration(p.Deadline))
		switch {
		case p.healthyFor(idx, minHealthy, now):
			for _, i := range idx {
				p.Hosts[i].State, p.Hosts[i].Finished = HostHealthy, now
			}
			d.log(hclog.Info, "batch healthy", "id", p.ID, "batch", p.Hosts[idx[0]].Batch, "image", p.Image)
			if o.abort && p.batchInProgress() != nil { // nothing in progress to revert
				p.finish(now, d, StateAborted, "aborted by the operator", false, nil)
				return
			}
		case o.abort:
			p.startRevert(idx, now, d, StateAborted, "aborted by the operator")
		case p.gaveUp(idx, o) != "":
			why := p.gaveUp(idx, o)
			if p.NoAutoRevert {
				p.finish(now, d, StateFailed, why, false, idx)
				return
			}
			p.startRevert(idx, now, d, StateFailed, why)
		case !now.Before(deadline):
			why := p.late(idx, p.Image, minHealthy)
			if p.NoAutoRevert {
				p.finish(now, d, StateFailed, why, false, idx)
				return
			}
			p.startRevert(idx, now, d, StateFailed, why)
		default:
			d.wake = earliest(deadline, p.healthyAt(idx, minHealthy))
			return
		}
	}
}

// advanceRevert moves the revert of the batch in progress on. An abort does
// not stop it: a revert runs to its end.
func (p *progress) advanceRevert(idx []int, o observation, d *decision) {
	now := o.now.UTC()
	p.observe(idx, p.Previous, HostReverting, o, d)
	deadline := p.started(idx).Add(time.Duration(p.Deadline))
	switch {
	case p.healthyFor(idx, 0, now): // the previous image ran before: converged is enough
		p.finish(now, d, p.revert.Final, p.revert.Reason+"; batch reverted to "+p.Previous, true, idx)
	case !now.Before(deadline):
		why := p.late(idx, p.Previous, 0)
		p.finish(now, d, p.revert.Final, p.revert.Reason+"; revert to "+p.Previous+" also failed: "+why, false, idx)
	default:
		d.wake = deadline
	}
}

// batchInProgress returns the indexes of the hosts of the first batch not
// yet healthy, nil when every host is.
func (p *progress) batchInProgress() []int {
	b := 0
	for _, h := range p.Hosts {
		if h.State != HostHealthy && (b == 0 || h.Batch < b) {
			b = h.Batch
		}
	}
	if b == 0 {
		return nil
	}
	var idx []int
	for i, h := range p.Hosts {
		if h.Batch == b {
			idx = append(idx, i)
		}
	}
	return idx
}

// begin starts the batch's hosts that are pending. A batch resumed after a
// restart keeps its start, hence its deadline.
func (p *progress) begin(idx []int, now time.Time) {
	for _, i := range idx {
		h := &p.Hosts[i]
		if h.Started.IsZero() {
			h.Started = now
		}
		if h.State == HostPending {
			h.State = HostReplacing
		}
	}
}

// startRevert sends the batch back to the previous image; the revert has a
// deadline of its own.
func (p *progress) startRevert(idx []int, now time.Time, d *decision, final State, reason string) {
	p.revert = &revert{Final: final, Reason: reason}
	for _, i := range idx {
		h := &p.Hosts[i]
		h.State, h.HealthySince, h.Started = HostReverting, time.Time{}, now
	}
	d.log(hclog.Warn, "reverting batch", "id", p.ID, "batch", p.Hosts[idx[0]].Batch, "to", p.Previous, "reason", reason)
}

// statusGone is the status logged of a host membership no longer knows.
const statusGone membership.Status = "gone"

// observe updates the batch's hosts from membership: a host that fully runs
// image is healthy since the first time it was seen so; one that does not
// (or is not alive) is not, and its count starts again. phase is the state
// of a host that is not healthy.
func (p *progress) observe(idx []int, image string, phase HostState, o observation, d *decision) {
	now := o.now.UTC()
	for _, i := range idx {
		h := &p.Hosts[i]
		n, known := o.members[h.Node]
		status := n.Status
		if !known {
			status = statusGone
		}
		if last, ok := p.seen[h.Node]; (ok || status != membership.StatusAlive) && last != status {
			d.log(hclog.Warn, "host of the batch in progress changed status", "id", p.ID, "node", h.Node,
				"status", status)
		}
		p.seen[h.Node] = status
		if known && n.Err == nil && n.Status == membership.StatusAlive && n.Tags.Converged(image) {
			if h.HealthySince.IsZero() {
				h.HealthySince = now
				if phase == HostReplacing {
					h.State = HostVerifying
				}
			}
			continue
		}
		h.HealthySince, h.State = time.Time{}, phase
	}
}

// gaveUp says which host of the batch gave up converging to the rollout's
// image, and why (its Fail tag: a gateway that did not acknowledge a
// replica's withdrawal); empty when none did. Such a batch fails at once,
// without waiting for its deadline.
func (p *progress) gaveUp(idx []int, o observation) string {
	for _, i := range idx {
		n, known := o.members[p.Hosts[i].Node]
		if known && n.Err == nil && n.Tags.Want == p.Image && n.Tags.Fail != "" {
			return p.Hosts[i].Node + " gave up on " + p.Image + ": " + n.Tags.Fail
		}
	}
	return ""
}

// healthyFor reports whether every host of the batch has been healthy for
// at least d.
func (p *progress) healthyFor(idx []int, d time.Duration, now time.Time) bool {
	for _, i := range idx {
		since := p.Hosts[i].HealthySince
		if since.IsZero() || now.Sub(since) < d {
			return false
		}
	}
	return true
}

// healthyAt is when the batch will have been healthy for d if it stays so;
// zero when a host is not healthy.
func (p *progress) healthyAt(idx []int, d time.Duration) time.Time {
	var last time.Time
	for _, i := range idx {
		since := p.Hosts[i].HealthySince
		if since.IsZero() {
			return time.Time{}
		}
		if since.After(last) {
			last = since
		}
	}
	return last.Add(d)
}

// started is when the batch (or its revert) started: its deadline counts
// from then.
func (p *progress) started(idx []int) time.Time {
	var first time.Time
	for _, i := range idx {
		if s := p.Hosts[i].Started; first.IsZero() || s.Before(first) {
			first = s
		}
	}
	return first
}

// late says why the batch missed its deadline on image.
func (p *progress) late(idx []int, image string, minHealthy time.Duration) string {
	var late []string
	for _, i := range idx {
		if p.Hosts[i].HealthySince.IsZero() {
			late = append(late, p.Hosts[i].Node)
		}
	}
	if len(late) == 0 {
		return fmt.Sprintf("batch did not stay healthy on %s for %s within %s", image, minHealthy, time.Duration(p.Deadline))
	}
	return fmt.Sprintf("%s not healthy on %s within %s", strings.Join(late, ", "), image, time.Duration(p.Deadline))
}

// finish ends the rollout. The batch in progress (idx) is reverted, or its
// hosts that were not healthy failed.
func (p *progress) finish(now time.Time, d *decision, final State, msg string, reverted bool, idx []int) {
	p.State, p.Message, p.Reverted, p.Finished = final, msg, reverted, now
	for _, i := range idx {
		h := &p.Hosts[i]
		switch {
		case reverted:
			h.State = HostReverted
		case h.State != HostHealthy:
			h.State = HostFailed
		}
		h.Finished = now
	}
	p.revert = nil
	d.log(hclog.Info, "rollout ended", "id", p.ID, "state", final, "message", msg)
}

// deploys returns the request to send now: the phase's image to each host
// of the batch in progress that is alive, has not taken it, has no request
// in flight and is not waiting to be asked again; and when the next host
// waiting will be.
func (p *progress) deploys(o observation) (deployOrder, time.Time) {
	var order deployOrder
	var nodes []string
	if p.canaryActive() {
		order, nodes = p.canaryOrder(), []string{p.Canary.Node}
	} else {
		order = deployOrder{image: p.Image}
		if p.revert != nil {
			order.image = p.Previous
		}
		order.key = order.image
		for _, i := range p.batchInProgress() {
			nodes = append(nodes, p.Hosts[i].Node)
		}
	}
	var next time.Time
	for _, node := range nodes {
		k := p.asks[node]
		if k.image != order.key {
			k = ask{image: order.key, inFlight: k.inFlight}
		}
		n, known := o.members[node]
		switch {
		case k.taken || k.inFlight != "" || !known || n.Status != membership.StatusAlive:
		case o.now.Before(k.retryAt):
			next = earliest(next, k.retryAt)
		default:
			k.inFlight = order.key
			order.nodes = append(order.nodes, node)
		}
		p.asks[node] = k
	}
	return order, next
}

// clone returns a copy of p that shares nothing mutable with it.
func (p progress) clone() progress {
	p.Hosts = slices.Clone(p.Hosts)
	if p.revert != nil {
		r := *p.revert
		p.revert = &r
	}
	p.Canary = p.Canary.clone()
	p.asks = maps.Clone(p.asks)
	p.seen = maps.Clone(p.seen)
	p.base = maps.Clone(p.base)
	if p.asks == nil {
		p.asks = map[string]ask{}
	}
	if p.seen == nil {
		p.seen = map[string]membership.Status{}
	}
	return p
}

// sameRecord reports whether p and q save the same: the rollout and its
// revert.
func (p *progress) sameRecord(q *progress) bool {
	a, b := &p.Rollout, &q.Rollout
	if a.ID != b.ID || a.Options.Canary != nil && !a.Options.Canary.equal(b.Options.Canary) || !a.Canary.equal(b.Canary) ||
		a.Options.Image != b.Options.Image || a.Options.Batch != b.Options.Batch || a.Options.MinHealthy != b.Options.MinHealthy ||
		a.Options.Deadline != b.Options.Deadline || a.Options.NoAutoRevert != b.Options.NoAutoRevert || a.Previous != b.Previous || a.State != b.State ||
		a.Message != b.Message || a.Reverted != b.Reverted || !a.Created.Equal(b.Created) ||
		!a.Finished.Equal(b.Finished) || !slices.Equal(a.Hosts, b.Hosts) {
		return false
	}
	if p.revert == nil || q.revert == nil {
		return p.revert == q.revert
	}
	return *p.revert == *q.revert
}

func (d *decision) log(level hclog.Level, msg string, args ...any) {
	d.logs = append(d.logs, logLine{level: level, msg: msg, args: args})
}

// earliest returns the earlier of two times, zero meaning none.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}
