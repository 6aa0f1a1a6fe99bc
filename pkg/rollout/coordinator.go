package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/herd-cluster/herd/internal/atomicfile"
	"github.com/herd-cluster/herd/pkg/membership"
	"github.com/herd-cluster/herd/pkg/runtime"
)

// MaxHistory bounds the rollouts kept in the state file.
const MaxHistory = 50

// Config configures a Coordinator.
type Config struct {
	Members Members
	// Service is the service whose agents are rolled.
	Service string
	// StatePath is the state file. Empty: state is kept in memory only.
	StatePath string
	// Poll is how often progress is checked. Default 100 ms.
	Poll time.Duration
	// QueryTimeout bounds each deploy query. Default 5 s.
	QueryTimeout time.Duration
	// FailedGrace is how long Start waits for agents of the service that the
	// failure detector marks failed to come back (a busy host missing a few
	// probes) before refusing: a rollout without them would leave them on
	// the old image when they return. Default 10 s.
	FailedGrace time.Duration
	Logger      hclog.Logger
}

// state is the state file.
type state struct {
	Current *Rollout  `json:"current,omitempty"`
	History []Rollout `json:"history"` // newest first
}

// check validates what a resumed rollout relies on.
func (s *state) check() error {
	r := s.Current
	if r == nil || r.Done() {
		return nil
	}
	if err := r.Options.Validate(); err != nil {
		return fmt.Errorf("running rollout %s: %w", r.ID, err)
	}
	if _, err := runtime.ParseImage(r.Image); err != nil {
		return fmt.Errorf("running rollout %s: %w", r.ID, err)
	}
	for _, h := range r.Hosts {
		if h.Batch < 1 || h.Batch > len(r.Hosts) || h.Node == "" {
			return fmt.Errorf("running rollout %s: host %q in batch %d of %d hosts", r.ID, h.Node, h.Batch, len(r.Hosts))
		}
	}
	return nil
}

// Coordinator runs at most one rollout at a time.
type Coordinator struct {
	cfg    Config
	logger hclog.Logger

	mu     sync.Mutex
	st     state
	cancel context.CancelFunc // of the running rollout
	abort  bool
	done   chan struct{}
}

// New loads the state file (a corrupt one is an error naming it) and
// resumes a rollout that was running.
func New(cfg Config) (*Coordinator, error) {
	if cfg.Poll == 0 {
		cfg.Poll = 100 * time.Millisecond
	}
	if cfg.QueryTimeout == 0 {
		cfg.QueryTimeout = 5 * time.Second
	}
	if cfg.FailedGrace == 0 {
		cfg.FailedGrace = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	c := &Coordinator{cfg: cfg, logger: cfg.Logger.Named("rollout")}
	if cfg.StatePath != "" {
		b, err := os.ReadFile(cfg.StatePath)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("rollout state %s: %w", cfg.StatePath, err)
		default:
			if err := json.Unmarshal(b, &c.st); err != nil {
				return nil, fmt.Errorf("rollout state %s is corrupt: %w (move it away to start with no history)", cfg.StatePath, err)
			}
			if err := c.st.check(); err != nil {
				return nil, fmt.Errorf("rollout state %s is corrupt: %w (move it away to start with no history)", cfg.StatePath, err)
			}
		}
	}
	if r := c.st.Current; r != nil && !r.Done() {
		c.logger.Info("resuming rollout after restart", "id", r.ID, "image", r.Image)
		c.launch(r)
	}
	return c, nil
}

// Close stops a running rollout's loop without changing its state, as a
// process exit would; New resumes it.
func (c *Coordinator) Close() {
	c.mu.Lock()
	cancel, done := c.cancel, c.done
	c.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
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
	c.mu.Lock()
	if r := c.st.Current; r != nil && !r.Done() {
		c.mu.Unlock()
		return Rollout{}, fmt.Errorf("%w: %s to %s (started %s)", ErrBusy, r.ID, r.Image, r.Created.Format(time.RFC3339))
	}
	if rollback {
		last := c.lastLocked()
		if last == nil || last.Previous == "" {
			c.mu.Unlock()
			return Rollout{}, fmt.Errorf("%w: no earlier rollout to roll back", ErrRefused)
		}
		o.Image = last.Previous
	}
	c.mu.Unlock()
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
	// Every agent must have the image before anything is stopped.
	var missing []string
	for _, err := range c.cfg.Members.Deploy(ctx, agents, membership.DeployRequest{Image: o.Image, CheckOnly: true}, c.cfg.QueryTimeout) {
		if err != nil {
			missing = append(missing, err.Error())
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return Rollout{}, fmt.Errorf("%w: %s", ErrRefused, strings.Join(missing, "; "))
	}

	r := &Rollout{
		ID: newID(), Options: o, Previous: previous, State: StateRunning, Created: time.Now().UTC(),
	}
	for i, n := range agents {
		r.Hosts = append(r.Hosts, Host{Node: n, State: HostPending, Batch: i/o.Batch + 1})
	}
	c.mu.Lock()
	if cur := c.st.Current; cur != nil && !cur.Done() { // lost a race with another Start
		c.mu.Unlock()
		return Rollout{}, fmt.Errorf("%w: %s to %s", ErrBusy, cur.ID, cur.Image)
	}
	if cur := c.st.Current; cur != nil {
		c.pushHistoryLocked(*cur)
	}
	c.st.Current = r
	err = c.saveLocked()
	out := clone(r)
	c.mu.Unlock()
	if err != nil {
		return Rollout{}, err
	}
	c.logger.Info("rollout started", "id", r.ID, "image", r.Image, "previous", r.Previous, "hosts", len(agents),
		"batch", o.Batch)
	c.launch(r)
	return out, nil
}

// Abort stops the running rollout: the batch in progress goes back to the
// previous image (hosts already done stay on the new one). It returns once
// that revert has ended, or ErrNotRunning.
func (c *Coordinator) Abort() (Rollout, error) {
	c.mu.Lock()
	r := c.st.Current
	if r == nil || r.Done() {
		c.mu.Unlock()
		return Rollout{}, ErrNotRunning
	}
	c.abort = true
	done := c.done
	c.mu.Unlock()
	<-done
	return c.Get("current")
}

// Get returns a rollout by id; "current" (or "") is the running or last one.
func (c *Coordinator) Get(id string) (Rollout, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if id == "" || id == "current" {
		if r := c.lastLocked(); r != nil {
			return clone(r), nil
		}
		return Rollout{}, fmt.Errorf("%w: there has been no rollout yet", ErrNotFound)
	}
	if c.st.Current != nil && c.st.Current.ID == id {
		return clone(c.st.Current), nil
	}
	for i := range c.st.History {
		if c.st.History[i].ID == id {
			return clone(&c.st.History[i]), nil
		}
	}
	return Rollout{}, fmt.Errorf("%w: %q", ErrNotFound, id)
}

// History returns every rollout kept, newest first.
func (c *Coordinator) History() []Rollout {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Rollout
	if c.st.Current != nil {
		out = append(out, clone(c.st.Current))
	}
	for i := range c.st.History {
		out = append(out, clone(&c.st.History[i]))
	}
	return out
}

func (c *Coordinator) lastLocked() *Rollout {
	if c.st.Current != nil {
		return c.st.Current
	}
	if len(c.st.History) > 0 {
		return &c.st.History[0]
	}
	return nil
}

func (c *Coordinator) pushHistoryLocked(r Rollout) {
	c.st.History = append([]Rollout{r}, c.st.History...)
	if len(c.st.History) > MaxHistory {
		c.st.History = c.st.History[:MaxHistory]
	}
}

func (c *Coordinator) saveLocked() error {
	if c.cfg.StatePath == "" {
		return nil
	}
	b, err := json.MarshalIndent(c.st, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(c.cfg.StatePath, b, 0o600)
}

// agentsWaitingForFailed returns agents() once none of the service's agents
// is failed, waiting up to FailedGrace for failed ones to come back; after
// that it refuses, naming them.
func (c *Coordinator) agentsWaitingForFailed(ctx context.Context) ([]string, string, error) {
	giveUp := time.Now().Add(c.cfg.FailedGrace)
	for {
		names, failed, previous := c.agents()
		if len(failed) == 0 {
			return names, previous, nil
		}
		if time.Now().After(giveUp) || ctx.Err() != nil {
			return nil, "", &FailedAgentsError{Nodes: failed, Grace: c.cfg.FailedGrace}
		}
		select {
		case <-ctx.Done():
		case <-time.After(c.cfg.Poll):
		}
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

func (c *Coordinator) launch(r *Rollout) {
	ctx, cancel := context.WithCancel(context.Background())
	c.mu.Lock()
	c.cancel, c.abort, c.done = cancel, false, make(chan struct{})
	done := c.done
	c.mu.Unlock()
	go func() {
		defer close(done)
		c.run(ctx, r)
	}()
}

// update applies fn to the running rollout under the lock and saves it.
func (c *Coordinator) update(r *Rollout, fn func(r *Rollout)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fn(r)
	if err := c.saveLocked(); err != nil {
		c.logger.Error("could not save rollout state", "error", err)
	}
}

func (c *Coordinator) aborted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.abort
}

// run drives r batch by batch until it ends or ctx is cancelled (Close).
func (c *Coordinator) run(ctx context.Context, r *Rollout) {
	batches := 0
	for _, h := range r.Hosts {
		batches = max(batches, h.Batch)
	}
	for b := 1; b <= batches; b++ {
		idx := r.batch(b)
		if r.allIn(idx, HostHealthy) {
			continue // done before a restart
		}
		ok, why := c.runBatch(ctx, r, idx, r.Image, HostReplacing)
		if ctx.Err() != nil {
			return // Close: leave the state for New to resume
		}
		if ok {
			c.update(r, func(r *Rollout) {
				for _, i := range idx {
					r.Hosts[i].State, r.Hosts[i].Finished = HostHealthy, time.Now().UTC()
				}
			})
			continue
		}
		final, msg := StateFailed, why
		if c.aborted() {
			final, msg = StateAborted, "aborted by the operator"
		}
		reverted := false
		if !r.NoAutoRevert || final == StateAborted {
			c.logger.Warn("reverting batch", "id", r.ID, "batch", b, "to", r.Previous, "reason", msg)
			c.update(r, func(r *Rollout) {
				for _, i := range idx {
					r.Hosts[i].State, r.Hosts[i].HealthySince = HostReverting, time.Time{}
				}
			})
			rok, rwhy := c.runBatch(ctx, r, idx, r.Previous, HostReverting)
			if ctx.Err() != nil {
				return
			}
			reverted = rok
			if rok {
				msg += "; batch reverted to " + r.Previous
			} else {
				msg += "; revert to " + r.Previous + " also failed: " + rwhy
			}
		}
		c.finish(r, final, msg, reverted, idx)
		return
	}
	c.finish(r, StateSucceeded, fmt.Sprintf("%d hosts on %s", len(r.Hosts), r.Image), false, nil)
}

func (c *Coordinator) finish(r *Rollout, final State, msg string, reverted bool, batch []int) {
	c.update(r, func(r *Rollout) {
		r.State, r.Message, r.Reverted, r.Finished = final, msg, reverted, time.Now().UTC()
		for _, i := range batch {
			switch {
			case reverted:
				r.Hosts[i].State = HostReverted
			case r.Hosts[i].State != HostHealthy:
				r.Hosts[i].State = HostFailed
			}
			r.Hosts[i].Finished = r.Finished
		}
	})
	c.logger.Info("rollout ended", "id", r.ID, "state", final, "message", msg)
}

// runBatch sets image on the batch's hosts and waits until all of them have
// run it healthily for MinHealthy (true), or the deadline passes, the
// operator aborts, or ctx ends (false, why).
func (c *Coordinator) runBatch(ctx context.Context, r *Rollout, idx []int, image string, phase HostState) (bool, string) {
	nodes := make([]string, len(idx))
	c.update(r, func(r *Rollout) {
		for k, i := range idx {
			nodes[k] = r.Hosts[i].Node
			if r.Hosts[i].Started.IsZero() || phase == HostReverting {
				r.Hosts[i].Started = time.Now().UTC()
			}
			if r.Hosts[i].State == HostPending {
				r.Hosts[i].State = phase
			}
		}
	})
	started := r.Hosts[idx[0]].Started
	deadline := started.Add(time.Duration(r.Deadline))
	// A revert goes back to the image that ran before: converged is enough.
	minHealthy := time.Duration(r.MinHealthy)
	if phase == HostReverting {
		minHealthy = 0
	}
	req := membership.DeployRequest{Rollout: r.ID, Image: image}
	pending := nodes
	tick := time.NewTicker(c.cfg.Poll)
	defer tick.Stop()
	for {
		// (Re)send the desired image to hosts that have not taken it: an
		// agent that missed the query or restarted gets it again.
		if len(pending) > 0 {
			var again []string
			for n, err := range c.cfg.Members.Deploy(ctx, pending, req, c.cfg.QueryTimeout) {
				if err != nil {
					again = append(again, n)
					c.logger.Warn("deploy request not taken; retrying", "node", n, "error", err)
				}
			}
			pending = again
		}
		tags := c.tags()
		now := time.Now()
		allDone := true
		c.update(r, func(r *Rollout) {
			for _, i := range idx {
				h := &r.Hosts[i]
				t, ok := tags[h.Node]
				if ok && t.Converged(image) {
					if h.HealthySince.IsZero() {
						h.HealthySince = now.UTC()
						if phase == HostReplacing {
							h.State = HostVerifying
						}
					}
				} else {
					h.HealthySince = time.Time{}
					h.State = phase
				}
				allDone = allDone && !h.HealthySince.IsZero() && now.Sub(h.HealthySince) >= minHealthy
			}
		})
		if allDone {
			return true, ""
		}
		if phase != HostReverting && c.aborted() { // an abort's own revert runs to its end
			return false, "aborted"
		}
		if now.After(deadline) {
			var late []string
			for _, i := range idx {
				if r.Hosts[i].HealthySince.IsZero() {
					late = append(late, r.Hosts[i].Node)
				}
			}
			if len(late) == 0 {
				return false, fmt.Sprintf("batch did not stay healthy on %s for %s within %s", image, minHealthy, time.Duration(r.Deadline))
			}
			return false, fmt.Sprintf("%s not healthy on %s within %s", strings.Join(late, ", "), image, time.Duration(r.Deadline))
		}
		select {
		case <-ctx.Done():
			return false, "stopped"
		case <-tick.C:
		}
	}
}

func (c *Coordinator) tags() map[string]membership.Tags {
	out := map[string]membership.Tags{}
	for _, n := range c.cfg.Members.Members() {
		if n.Err == nil && n.Status == membership.StatusAlive {
			out[n.Name] = n.Tags
		}
	}
	return out
}

func (r *Rollout) batch(b int) []int {
	var idx []int
	for i, h := range r.Hosts {
		if h.Batch == b {
			idx = append(idx, i)
		}
	}
	return idx
}

func (r *Rollout) allIn(idx []int, state HostState) bool {
	return !slices.ContainsFunc(idx, func(i int) bool { return r.Hosts[i].State != state })
}

func clone(r *Rollout) Rollout {
	out := *r
	out.Hosts = slices.Clone(r.Hosts)
	return out
}

func newID() string {
	return time.Now().UTC().Format("20060102-150405.000")
}
