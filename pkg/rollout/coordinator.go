package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/herd-cluster/herd/pkg/membership"
	"github.com/herd-cluster/herd/pkg/runtime"
)

// Config configures a Coordinator.
type Config struct {
	// Members is the cluster. Required; *membership.Cluster has what it needs.
	Members Members
	// MembersChanged returns a channel that is closed once membership
	// changes after the call: get the channel, then read Members, and no
	// change is missed. A running rollout looks at its hosts again when it is
	// closed; a Start waiting for a failed agent looks whether it came back.
	// Required; pkg/gateway's Gateway.Changed is one.
	MembersChanged func() <-chan struct{}
	// Service is the service whose agents are rolled.
	Service string
	// StatePath is the state file (rollouts.json: the last rollout and the
	// history); the running rollout's progress is saved beside it, in
	// rollouts.progress.json. Empty: state is kept in memory only.
	StatePath string
	// QueryTimeout bounds each deploy query; an agent that does not answer
	// within it is asked once more. Default 5 s.
	QueryTimeout time.Duration
	// DeployRetry is how long the coordinator waits before asking again a
	// host of the batch in progress that did not take a deploy request (its
	// agent answered an error, or twice no answer). Default 1 s.
	DeployRetry time.Duration
	// FailedGrace is how long Start waits for agents of the service that the
	// failure detector marks failed to come back (a busy host missing a few
	// probes) before refusing: a rollout without them would leave them on
	// the old image when they return. Default 10 s.
	FailedGrace time.Duration
	// Logger receives the coordinator's logs. Default: none.
	Logger hclog.Logger
	// Measure reads the gateways' counts of the service's canary arms. A
	// coordinator without it refuses canaries.
	Measure Measure
}

// DefaultConfig returns a Config with the defaults documented on each field;
// Members, MembersChanged and Service are the caller's to set.
func DefaultConfig() Config {
	return Config{
		QueryTimeout: 5 * time.Second,
		DeployRetry:  time.Second,
		FailedGrace:  10 * time.Second,
		Logger:       hclog.NewNullLogger(),
	}
}

// Coordinator runs at most one rollout at a time.
type Coordinator struct {
	cfg    Config
	logger hclog.Logger
	store  store

	// view is what Get and History read, without a lock; it is replaced
	// whole after every change is saved.
	view atomic.Pointer[view]

	mu     sync.Mutex // serializes changes: a start, a step's save, Close
	loop   *loop      // of the current rollout; nil before the first
	closed bool

	changed notifier // closes a channel on every change of the view (changed.go)
}

// view is the state as Get and History show it. Nothing in it is modified
// once it is published.
type view struct {
	current *Rollout  // the running or last rollout; nil before the first
	history []Rollout // the ones before it, newest first
}

// New loads the state files (a corrupt one is an error naming it) and
// resumes a rollout that was running.
func New(cfg Config) (*Coordinator, error) {
	def := DefaultConfig()
	if cfg.QueryTimeout == 0 {
		cfg.QueryTimeout = def.QueryTimeout
	}
	if cfg.DeployRetry == 0 {
		cfg.DeployRetry = def.DeployRetry
	}
	if cfg.FailedGrace == 0 {
		cfg.FailedGrace = def.FailedGrace
	}
	if cfg.Logger == nil {
		cfg.Logger = def.Logger
	}
	if cfg.Members == nil || cfg.MembersChanged == nil {
		return nil, errors.New("rollout coordinator: Members and MembersChanged are required")
	}
	c := &Coordinator{cfg: cfg, logger: cfg.Logger.Named("rollout"), store: newStore(cfg.StatePath)}
	cur, rev, history, err := c.store.load()
	if err != nil {
		return nil, err
	}
	for _, r := range append([]*Rollout{cur}, pointers(history)...) {
		if r != nil && r.Service == "" {
			r.Service = cfg.Service
		}
	}
	c.view.Store(&view{current: cur, history: history})
	if cur != nil && !cur.Done() {
		c.logger.Info("resuming rollout after restart", "id", cur.ID, "image", cur.Image)
		r := clone(cur)
		if cs := r.Canary; cs != nil && cs.Phase == CanaryMeasuring {
			// What the gateways counted before is unknown now: the step in
			// progress is measured afresh, from its next start.
			cs.StepStarted, cs.Live = time.Time{}, nil
		}
		c.mu.Lock()
		c.launch(newProgress(r, rev, cfg.DeployRetry))
		c.mu.Unlock()
	}
	return c, nil
}

// Close stops a running rollout's loop without changing its state, as a
// process exit would; New resumes it. Start is refused afterwards. Close
// may be called more than once.
func (c *Coordinator) Close() {
	c.mu.Lock()
	c.closed = true
	l := c.loop
	c.mu.Unlock()
	if l != nil {
		l.cancel()
		<-l.done
	}
}

// Start begins a rollout to o.Image. It is refused (ErrRefused, nothing
// changed) when the image is malformed, there are no agents, an agent does
// not have the image, or an agent is failed and does not come back within
// FailedGrace (a *FailedAgentsError); and (ErrBusy) when one is running.
func (c *Coordinator) Start(ctx context.Context, o Options) (Rollout, error) {
	return c.start(ctx, o, false)
}

// Rollback starts a rollout to the image before the last rollout's.
func (c *Coordinator) Rollback(ctx context.Context, o Options) (Rollout, error) {
	return c.start(ctx, o, true)
}

func (c *Coordinator) start(ctx context.Context, o Options, rollback bool) (Rollout, error) {
	o.defaults()
	v := c.view.Load()
	if err := busy(v); err != nil {
		return Rollout{}, err
	}
	if rollback {
		last := v.last()
		if last == nil || last.Previous == "" {
			return Rollout{}, fmt.Errorf("%w: no earlier rollout to roll back", ErrRefused)
		}
		o.Image = last.Previous
	}
	if err := o.Validate(); err != nil {
		return Rollout{}, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	if _, err := runtime.ParseImage(o.Image); err != nil {
		return Rollout{}, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	agents, previous, err := c.agentsWaitingForFailed(ctx)
	if err != nil {
		return Rollout{}, err
	}
	if len(agents) == 0 {
		return Rollout{}, fmt.Errorf("%w: no agents of service %q in the cluster", ErrRefused, c.cfg.Service)
	}
	if err := c.checkImage(ctx, agents, o.Image); err != nil {
		return Rollout{}, err
	}

	r := &Rollout{ID: newID(), Service: c.cfg.Service, Options: o, Previous: previous, State: StateRunning, Created: time.Now().UTC()}
	if o.Canary != nil {
		node, err := c.canaryNode(o.Canary, agents)
		if err != nil {
			return Rollout{}, err
		}
		r.Canary = &CanaryStatus{Node: node, Phase: CanaryStarting, Started: r.Created}
	}
	for i, n := range agents {
		r.Hosts = append(r.Hosts, Host{Node: n, State: HostPending, Batch: i/o.Batch + 1})
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return Rollout{}, ErrClosed
	}
	v = c.view.Load()
	if err := busy(v); err != nil { // lost a race with another Start
		return Rollout{}, err
	}
	if c.loop != nil {
		<-c.loop.done // the last rollout's loop saved its end; it is on its way out
	}
	history := v.history
	if v.current != nil {
		history = append([]Rollout{*v.current}, history[:min(len(history), MaxHistory-1)]...)
	}
	if err := c.store.saveAll(r, history); err != nil {
		return Rollout{}, err
	}
	c.view.Store(&view{current: r, history: history})
	c.changed.notify()
	c.logger.Info("rollout started", "id", r.ID, "image", r.Image, "previous", r.Previous, "hosts", len(agents),
		"batch", o.Batch)
	c.launch(newProgress(clone(r), nil, c.cfg.DeployRetry))
	return clone(r), nil
}

// canaryNode checks that a canary can run and returns its agent: the one
// asked for, or the first alive agent by name.
func (c *Coordinator) canaryNode(o *CanaryOptions, agents []string) (string, error) {
	if c.cfg.Measure == nil {
		return "", fmt.Errorf("%w: this coordinator cannot measure a canary", ErrRefused)
	}
	replicas := 0
	for _, n := range c.cfg.Members.Members() {
		if n.Err == nil && n.Status == membership.StatusAlive && n.Tags.Role == membership.RoleAgent &&
			n.Tags.Service == c.cfg.Service {
			replicas += n.Tags.Count
		}
	}
	if replicas < 2 {
		return "", fmt.Errorf("%w: a canary needs at least 2 replicas in service %q (it has %d): with one there is "+
			"no stable fleet to take the rest of the requests and the canary's retries", ErrRefused, c.cfg.Service, replicas)
	}
	if o.Node == "" {
		return agents[0], nil
	}
	if !slices.Contains(agents, o.Node) {
		return "", fmt.Errorf("%w: canary node %q is not an alive agent of service %q (agents: %s)", ErrRefused, o.Node,
			c.cfg.Service, strings.Join(agents, ", "))
	}
	return o.Node, nil
}

// ErrNoCanary: Promote with no canary running.
var ErrNoCanary = errors.New("no canary is running")

// Promote skips the running canary's remaining steps: its arms are removed
// and the host-by-host rollout begins. ErrNoCanary when there is none.
func (c *Coordinator) Promote() (Rollout, error) {
	c.mu.Lock()
	l, v := c.loop, c.view.Load()
	c.mu.Unlock()
	if l == nil || v.current == nil || v.current.Done() || v.current.Canary == nil ||
		(v.current.Canary.Phase != CanaryStarting && v.current.Canary.Phase != CanaryMeasuring) {
		return Rollout{}, ErrNoCanary
	}
	l.promoteOnce.Do(func() { close(l.promote) })
	return c.Get("current")
}

// busy returns ErrBusy, naming the running rollout, if there is one.
func busy(v *view) error {
	if r := v.current; r != nil && !r.Done() {
		return fmt.Errorf("%w: service %q is being rolled out to %s (%s, started %s); abort it or wait",
			ErrBusy, r.Service, r.Image, r.ID, r.Created.Format(time.RFC3339))
	}
	return nil
}

// checkImage asks every agent whether it has image: all must, before
// anything is stopped.
func (c *Coordinator) checkImage(ctx context.Context, agents []string, image string) error {
	var missing []string
	for _, err := range c.cfg.Members.Deploy(ctx, agents, membership.DeployRequest{Image: image, CheckOnly: true}, c.cfg.QueryTimeout) {
		if err != nil {
			missing = append(missing, err.Error())
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("%w: %s", ErrRefused, strings.Join(missing, "; "))
	}
	return nil
}

// Abort stops the running rollout: the batch in progress goes back to the
// previous image (hosts already done stay on the new one). It returns once
// that revert has ended, or ErrNotRunning.
func (c *Coordinator) Abort() (Rollout, error) {
	c.mu.Lock()
	l, v := c.loop, c.view.Load()
	c.mu.Unlock()
	if l == nil || v.current == nil || v.current.Done() {
		return Rollout{}, ErrNotRunning
	}
	l.abortOnce.Do(func() { close(l.abort) })
	<-l.done
	return c.Get("current")
}

// Get returns a rollout by id; "current" (or "") is the running or last one.
func (c *Coordinator) Get(id string) (Rollout, error) {
	v := c.view.Load()
	if id == "" || id == "current" {
		if r := v.last(); r != nil {
			return clone(r), nil
		}
		return Rollout{}, fmt.Errorf("%w: there has been no rollout yet", ErrNotFound)
	}
	if v.current != nil && v.current.ID == id {
		return clone(v.current), nil
	}
	for i := range v.history {
		if v.history[i].ID == id {
			return clone(&v.history[i]), nil
		}
	}
	return Rollout{}, fmt.Errorf("%w: %q", ErrNotFound, id)
}

// History returns every rollout kept, newest first.
func (c *Coordinator) History() []Rollout {
	v := c.view.Load()
	var out []Rollout
	if v.current != nil {
		out = append(out, clone(v.current))
	}
	for i := range v.history {
		out = append(out, clone(&v.history[i]))
	}
	return out
}

// last is the running or last rollout; nil before the first.
func (v *view) last() *Rollout {
	if v.current != nil {
		return v.current
	}
	if len(v.history) > 0 {
		return &v.history[0]
	}
	return nil
}

// agentsWaitingForFailed returns agents() once none of the service's agents
// is failed, waiting up to FailedGrace for failed ones to come back; after
// that it refuses, naming them.
func (c *Coordinator) agentsWaitingForFailed(ctx context.Context) ([]string, string, error) {
	giveUp := time.NewTimer(c.cfg.FailedGrace)
	defer giveUp.Stop()
	for {
		changed := c.cfg.MembersChanged()
		names, failed, previous := c.agents()
		if len(failed) == 0 {
			return names, previous, nil
		}
		select {
		case <-changed:
			continue
		case <-ctx.Done():
		case <-giveUp.C:
		}
		return nil, "", &FailedAgentsError{Nodes: failed, Grace: c.cfg.FailedGrace}
	}
}

// agents returns the service's alive agents and its failed ones by name,
// and the image most alive ones fully run (the rollout's "previous"). Agents
// that left or are leaving are not part of the service any more.
func (c *Coordinator) agents() (names, failed []string, previous string) {
	count := map[string]int{}
	for _, n := range c.cfg.Members.Members() {
		if n.Err != nil || n.Tags.Role != membership.RoleAgent || n.Tags.Service != c.cfg.Service {
			continue
		}
		switch n.Status {
		case membership.StatusAlive:
			names = append(names, n.Name)
			count[n.Tags.Image]++
		case membership.StatusFailed:
			failed = append(failed, n.Name)
		}
	}
	sort.Strings(names)
	sort.Strings(failed)
	best := 0
	for img, k := range count {
		if k > best || (k == best && img < previous) {
			previous, best = img, k
		}
	}
	return names, failed, previous
}

func pointers(rs []Rollout) []*Rollout {
	out := make([]*Rollout, len(rs))
	for i := range rs {
		out[i] = &rs[i]
	}
	return out
}

func clone(r *Rollout) Rollout {
	out := *r
	out.Hosts = slices.Clone(r.Hosts)
	out.Canary = r.Canary.clone()
	return out
}

func newID() string {
	return time.Now().UTC().Format("20060102-150405.000")
}
