package rollout

import (
	"context"
	"sync"
	"time"

	"github.com/herd-cluster/herd/pkg/membership"
)

// loop is the goroutine that drives one rollout: it observes, calls step and
// carries out the decision, until the rollout ends or Close cancels it.
type loop struct {
	cancel      context.CancelFunc
	abort       chan struct{} // closed by Abort
	abortOnce   sync.Once
	promote     chan struct{} // closed by Promote
	promoteOnce sync.Once
	done        chan struct{} // closed when the goroutine has returned
}

// launch starts the loop of p's rollout. c.mu must be held.
func (c *Coordinator) launch(p progress) {
	ctx, cancel := context.WithCancel(context.Background())
	l := &loop{cancel: cancel, abort: make(chan struct{}), promote: make(chan struct{}), done: make(chan struct{})}
	c.loop = l
	go func() {
		defer close(l.done)
		c.run(ctx, l, p)
	}()
}

// run steps p whenever something it depends on happens: membership changes,
// an answer to a deploy request comes, the operator aborts, or the time
// step asked to be woken at comes. There is no poll.
func (c *Coordinator) run(ctx context.Context, l *loop, p progress) {
	deployCtx, stopDeploys := context.WithCancel(ctx)
	var deploys sync.WaitGroup
	defer func() {
		stopDeploys()
		deploys.Wait()
	}()
	answers := make(chan []deployAnswer)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	abort, promote := l.abort, l.promote
	var o observation
	for {
		// The channel first, then the read: a change after it closes it.
		changed := c.cfg.MembersChanged()
		o.now, o.members = time.Now(), c.observeHosts(p.Hosts, p.Canary)
		if o.counts = nil; p.Canary != nil && p.Canary.Phase == CanaryMeasuring && c.cfg.Measure != nil {
			o.counts = c.cfg.Measure(c.cfg.Service)
			o.now = time.Now() // the counts are as of now: asking the other gateways takes a moment
		}
		next, d := step(p, o)
		p, o.answers = next, nil
		if d.save {
			c.commit(&p, d.done)
		}
		for _, line := range d.logs {
			c.logger.Log(line.level, line.msg, line.args...)
		}
		if d.done {
			return
		}
		if order := d.deploy; len(order.nodes) > 0 {
			id := p.ID
			deploys.Go(func() { c.deploy(deployCtx, id, order, answers) })
		}
		var wake <-chan time.Time
		if !d.wake.IsZero() {
			timer.Reset(time.Until(d.wake))
			wake = timer.C
		}
		select {
		case <-ctx.Done():
			return // Close: the state stays as saved, for New to resume
		case <-changed:
		case <-abort:
			o.abort, abort = true, nil
		case <-promote:
			o.promote, promote = true, nil
		case a := <-answers:
			o.answers = a
		case <-wake:
		}
		timer.Stop()
	}
}

// observeHosts returns what membership says of the rollout's hosts.
func (c *Coordinator) observeHosts(hosts []Host, cs *CanaryStatus) map[string]membership.Node {
	want := make(map[string]bool, len(hosts)+1)
	for _, h := range hosts {
		want[h.Node] = true
	}
	if cs != nil {
		want[cs.Node] = true
	}
	out := make(map[string]membership.Node, len(hosts))
	for _, n := range c.cfg.Members.Members() {
		if want[n.Name] {
			out[n.Name] = n
		}
	}
	return out
}

// deploy sends the order and hands the answers to the loop.
func (c *Coordinator) deploy(ctx context.Context, id string, order deployOrder, answers chan<- []deployAnswer) {
	req := membership.DeployRequest{Rollout: id, Image: order.image, Canary: order.canary}
	var out []deployAnswer
	for node, err := range c.cfg.Members.Deploy(ctx, order.nodes, req, c.cfg.QueryTimeout) {
		out = append(out, deployAnswer{node: node, image: order.key, err: err})
	}
	select {
	case answers <- out:
	case <-ctx.Done():
	}
}

// commit saves the rollout as it stands, and the history with it when it
// ended, then shows it to Get and History. Readers never wait for the
// files: they read the view, replaced whole once the files are written.
func (c *Coordinator) commit(p *progress, ended bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := clone(&p.Rollout)
	if err := c.store.saveProgress(&r, p.revert); err != nil {
		c.logger.Error("could not save the rollout's progress", "id", r.ID, "error", err)
	}
	v := c.view.Load()
	if ended {
		if err := c.store.saveAll(&r, v.history); err != nil {
			c.logger.Error("could not save the rollout history", "id", r.ID, "error", err)
		}
	}
	c.view.Store(&view{current: &r, history: v.history})
	c.changed.notify()
}
