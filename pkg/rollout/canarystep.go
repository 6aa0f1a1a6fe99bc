package rollout

import (
	"fmt"
	"maps"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/herd-cluster/herd/pkg/canary"
	"github.com/herd-cluster/herd/pkg/membership"
)

// judgeEvery is how often a step in progress is judged: the live figures
// rollout status shows, and the soonest a regression ends it.
const judgeEvery = time.Second

// advanceCanary moves the canary phase on. It reports whether the phase is
// over and the hosts may be replaced (the canary passed, or was promoted);
// when the canary failed or was aborted it ends the rollout.
func (p *progress) advanceCanary(o observation, d *decision) bool {
	c := p.Canary
	now := o.now.UTC()
	opts := p.Options.Canary
	n, known := o.members[c.Node]
	alive := known && n.Err == nil && n.Status == membership.StatusAlive
	var tag *membership.Canary
	if alive && n.Tags.Canary != nil && n.Tags.Canary.Image == p.Image {
		tag = n.Tags.Canary
	}
	fresh := opts.Baseline == BaselineFresh
	switch c.Phase {
	case CanaryPassed, CanaryPromoted:
		return true
	case CanaryStarting:
		switch {
		case o.abort:
			p.endCanary(now, d, CanaryAborted, "aborted by the operator while the canary started")
		case o.promote:
			p.endCanary(now, d, CanaryPromoted, "promoted by the operator while the canary started")
		case tag.Ready(fresh):
			c.Phase, c.Step, c.Weight = CanaryMeasuring, 1, opts.Steps[0]
			d.log(hclog.Info, "canary replicas healthy; first step", "id", p.ID, "node", c.Node, "weight", c.Weight)
			return p.advanceCanary(o, d)
		case !now.Before(c.Started.Add(time.Duration(p.Deadline))):
			p.endCanary(now, d, CanaryFailed, fmt.Sprintf("canary replicas on %s not healthy on %s within %s",
				c.Node, p.Image, time.Duration(p.Deadline)))
		case !alive:
			p.endCanary(now, d, CanaryFailed, fmt.Sprintf("%s, the canary's host, is %s", c.Node, statusOf(n, known)))
		default:
			d.wake = earliest(d.wake, c.Started.Add(time.Duration(p.Deadline)))
		}
	case CanaryMeasuring:
		p.measure(o, tag, fresh, d)
	case CanaryEnding:
		switch {
		case !alive || n.Tags.Canary == nil: // gone with its host, or removed
			p.canaryEnded(now, d)
			return c.Phase == CanaryPassed || c.Phase == CanaryPromoted
		case !now.Before(c.EndStarted.Add(time.Duration(p.Deadline))):
			c.Phase = CanaryFailed
			p.finish(now, d, StateFailed, c.Outcome+fmt.Sprintf("; the canary on %s was not removed within %s",
				c.Node, time.Duration(p.Deadline)), false, nil)
		default:
			d.wake = earliest(d.wake, c.EndStarted.Add(time.Duration(p.Deadline)))
		}
	}
	return false
}

// measure runs the step in progress: once the agent announces its weight
// the measurement starts; every judgeEvery the step is judged on what the
// gateways counted since; it passes after StepTime on a pass, fails at once
// on a fail, and fails closed at StepDeadline while inconclusive.
func (p *progress) measure(o observation, tag *membership.Canary, fresh bool, d *decision) {
	c, opts := p.Canary, p.Options.Canary
	now := o.now.UTC()
	stepName := fmt.Sprintf("step %d (%d %%)", c.Step, c.Weight)
	switch {
	case o.abort:
		p.endCanary(now, d, CanaryAborted, "aborted by the operator at "+stepName)
		return
	case o.promote:
		p.endCanary(now, d, CanaryPromoted, "promoted by the operator at "+stepName)
		return
	case tag == nil || !tag.Ready(fresh):
		p.endCanary(now, d, CanaryFailed, fmt.Sprintf("%s failed: the canary's replicas on %s stopped being healthy (%s)",
			stepName, c.Node, armsText(tag, opts.Replicas, fresh)))
		return
	}
	if c.StepStarted.IsZero() {
		if tag.Weight != c.Weight {
			return // the deploy request is on its way; its answer or the tag wakes the loop
		}
		c.StepStarted, p.base = now, maps.Clone(o.counts)
		c.Live = nil
		d.log(hclog.Info, "canary step started", "id", p.ID, "step", c.Step, "weight", c.Weight)
		d.wake = earliest(d.wake, now.Add(judgeEvery))
		return
	}
	v := p.judge(o.counts, fresh)
	c.Live = &v
	elapsed := now.Sub(c.StepStarted)
	switch {
	case v.Result == canary.Fail:
		p.endStep(now, v)
		p.endCanary(now, d, CanaryFailed, fmt.Sprintf("%s failed: %s", stepName, v.Reason))
	case v.Result == canary.Pass && elapsed >= time.Duration(opts.StepTime):
		p.endStep(now, v)
		d.log(hclog.Info, "canary step passed", "id", p.ID, "step", c.Step, "weight", c.Weight, "reason", v.Reason)
		if c.Step == len(opts.Steps) {
			p.endCanary(now, d, CanaryPassed, fmt.Sprintf("every step passed (%v %%)", opts.Steps))
			return
		}
		c.Step++
		c.Weight, c.StepStarted = opts.Steps[c.Step-1], time.Time{}
	case v.Result == canary.Inconclusive && elapsed >= time.Duration(opts.StepDeadline):
		p.endStep(now, v)
		p.endCanary(now, d, CanaryFailed, fmt.Sprintf("%s failed closed: still inconclusive at its %s deadline: %s",
			stepName, time.Duration(opts.StepDeadline), v.Reason))
	default:
		d.wake = earliest(d.wake, now.Add(judgeEvery))
	}
}

// judge compares the arms' counts since the step started, summed over the
// gateways. A gateway first heard from after the step started counts from
// its first answer.
func (p *progress) judge(counts map[string]GatewayCounts, fresh bool) canary.Verdict {
	var cn, bl canary.Counts
	if p.base == nil {
		p.base = map[string]GatewayCounts{}
	}
	for gw, now := range counts {
		base, ok := p.base[gw]
		if !ok {
			p.base[gw] = now
			continue
		}
		cn = cn.Add(since(now.Canary, base.Canary))
		if fresh {
			bl = bl.Add(since(now.Baseline, base.Baseline))
		} else {
			bl = bl.Add(since(now.Stable, base.Stable))
		}
	}
	return canary.Judge(cn.Arm(), bl.Arm(), p.Options.Canary.Criteria)
}

// since is what a gateway counted of an arm since base. Counts that went
// down are a restarted gateway's: all of them came after base.
func since(now, base canary.Counts) canary.Counts {
	if now.Requests < base.Requests {
		return now
	}
	return now.Sub(base)
}

// endStep records the step in progress with its verdict.
func (p *progress) endStep(now time.Time, v canary.Verdict) {
	c := p.Canary
	c.Steps = append(c.Steps, CanaryStep{Weight: c.Weight, Started: c.StepStarted, Ended: now, Verdict: v})
	c.Live = nil
}

// endCanary starts removing the arms; the canary ends in final once they
// are gone.
func (p *progress) endCanary(now time.Time, d *decision, final CanaryPhase, why string) {
	c := p.Canary
	c.Phase, c.Final, c.Outcome, c.EndStarted, c.Weight = CanaryEnding, final, why, now, 0
	level := hclog.Info
	if final == CanaryFailed {
		level = hclog.Warn
	}
	d.log(level, "ending the canary", "id", p.ID, "node", c.Node, "outcome", final, "reason", why)
}

// canaryEnded: the arms are gone. A failed or aborted canary ends the
// rollout with no host touched; a passed or promoted one lets it go on.
func (p *progress) canaryEnded(now time.Time, d *decision) {
	c := p.Canary
	c.Phase = c.Final
	switch c.Final {
	case CanaryFailed:
		p.finish(now, d, StateFailed, "canary "+c.Outcome+"; canary removed, no host changed", true, nil)
	case CanaryAborted:
		p.finish(now, d, StateAborted, c.Outcome+"; canary removed, no host changed", true, nil)
	default:
		d.log(hclog.Info, "canary ended; replacing the hosts", "id", p.ID, "outcome", c.Final, "reason", c.Outcome)
	}
}

// canaryOrder is the request the canary's agent should have now.
func (p *progress) canaryOrder() deployOrder {
	c, opts := p.Canary, p.Options.Canary
	replicas := opts.Replicas
	switch c.Phase {
	case CanaryEnding, CanaryFailed, CanaryAborted, CanaryPassed, CanaryPromoted:
		replicas = 0
	}
	req := opts.request(replicas, c.Weight)
	if replicas == 0 {
		req.Weight = 0
	}
	return deployOrder{image: p.Image, canary: req,
		key: fmt.Sprintf("canary %s ×%d at %d %%", p.Image, req.Replicas, req.Weight), nodes: nil}
}

func armsText(tag *membership.Canary, want int, fresh bool) string {
	if tag == nil {
		return "no canary announced"
	}
	s := fmt.Sprintf("%d of %d canary replicas", len(tag.Ports), want)
	if fresh {
		s += fmt.Sprintf(", %d of %d baseline replicas", len(tag.Baseline), want)
	}
	return s + " announced"
}

func statusOf(n membership.Node, known bool) string {
	if !known {
		return string(statusGone)
	}
	if n.Err != nil {
		return "announcing malformed tags"
	}
	return string(n.Status)
}

// canaryActive reports whether the canary phase is in progress: the deploy
// requests go to the canary's agent, not to a batch.
func (p *progress) canaryActive() bool {
	if p.Canary == nil {
		return false
	}
	switch p.Canary.Phase {
	case CanaryStarting, CanaryMeasuring, CanaryEnding:
		return true
	}
	return false
}
