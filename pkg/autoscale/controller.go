package autoscale

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/herd-cluster/herd/internal/atomicfile"
)

// Cluster is what the Controller reads of the cluster and how it acts.
type Cluster interface {
	// Deciding reports whether this gateway decides now: one of the live
	// gateways, the same for all of them.
	Deciding() bool
	// Replicas is the service's count: what its agents are asked to run,
	// a rollout's surge replicas not counted.
	Replicas(service string) (int, error)
	// RollingOut reports whether a rollout of the service runs.
	RollingOut(service string) bool
	// Load is the service's one-second buckets that ended after since,
	// summed over every live gateway (see Meter and Sum).
	Load(ctx context.Context, service string, since time.Time) ([]Sample, error)
	// Scale asks for the service's total count.
	Scale(ctx context.Context, service string, n int) error
}

// ControllerConfig configures a Controller.
type ControllerConfig struct {
	// Interval between decisions (1 s).
	Interval time.Duration
	// Dir holds the settings (autoscale.json); "" keeps them in memory.
	Dir    string
	Logger hclog.Logger
	// Events is how many decisions that changed something, or could not,
	// each service keeps for Status (20).
	Events int
}

// Controller decides every Interval, for each service with settings,
// while its gateway is the deciding one: it reads the load, calls Decide,
// and scales. It is frozen while a rollout of the service runs (the state
// is kept; the samples keep coming). Its settings persist in Dir.
type Controller struct {
	cfg     ControllerConfig
	cluster Cluster
	logger  hclog.Logger

	mu       sync.Mutex
	settings map[string]Settings
	services map[string]*tracked
}

// tracked is a service's decisions, kept while this gateway decides.
type tracked struct {
	state   State
	samples []Sample
	last    Decision
	current int
	frozen  string
	events  []Event
}

// Event is one decision that changed the count, was held for a reason an
// operator wants to see, or failed to act.
type Event struct {
	At       time.Time
	From, To int
	Reason   string
	Error    string `json:",omitempty"`
}

// Status is a service's autoscaling as its gateway sees it.
type Status struct {
	Service  string
	Settings Settings
	// Deciding: this gateway decides; the figures below are its own.
	Deciding         bool
	Current, Desired int
	// Stable and Panic are the signal over each window; PerReplica the
	// stable one divided by the count.
	Stable, Panic, PerReplica float64
	Panicking                 bool
	// Frozen says why nothing is decided (a rollout runs), if so.
	Frozen string
	Reason string
	Events []Event
}

// ErrUnknownService: no settings for the service.
var ErrUnknownService = errors.New("no autoscaling for the service")

const settingsFile = "autoscale.json"

// NewController returns a Controller with the settings saved in
// cfg.Dir, if any.
func NewController(cfg ControllerConfig, cluster Cluster) (*Controller, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Events <= 0 {
		cfg.Events = 20
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	c := &Controller{cfg: cfg, cluster: cluster, logger: cfg.Logger, settings: map[string]Settings{}, services: map[string]*tracked{}}
	if cfg.Dir == "" {
		return c, nil
	}
	data, err := os.ReadFile(filepath.Join(cfg.Dir, settingsFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
		return c, nil
	case err != nil:
		return nil, err
	}
	if err := json.Unmarshal(data, &c.settings); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(cfg.Dir, settingsFile), err)
	}
	for svc, s := range c.settings {
		if err := s.Validate(); err != nil {
			return nil, fmt.Errorf("%s: service %s: %w", filepath.Join(cfg.Dir, settingsFile), svc, err)
		}
	}
	return c, nil
}

// Set turns autoscaling of service on with s, or changes its settings.
func (c *Controller) Set(service string, s Settings) error {
	if err := s.Validate(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old, had := c.settings[service]
	c.settings[service] = s
	if err := c.saveLocked(); err != nil {
		if had {
			c.settings[service] = old
		} else {
			delete(c.settings, service)
		}
		return err
	}
	return nil
}

// Off turns autoscaling of service off; the count stays where it is.
func (c *Controller) Off(service string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	old, had := c.settings[service]
	if !had {
		return ErrUnknownService
	}
	delete(c.settings, service)
	delete(c.services, service)
	if err := c.saveLocked(); err != nil {
		c.settings[service] = old
		return err
	}
	return nil
}

// Settings are the settings of every autoscaled service.
func (c *Controller) Settings() map[string]Settings {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]Settings, len(c.settings))
	for k, v := range c.settings {
		out[k] = v
	}
	return out
}

func (c *Controller) saveLocked() error {
	if c.cfg.Dir == "" {
		return nil
	}
	data, err := json.MarshalIndent(c.settings, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(c.cfg.Dir, settingsFile), data, 0o600)
}

// Run decides every Interval until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.step(ctx, time.Now())
		}
	}
}

// step makes one decision for every autoscaled service.
func (c *Controller) step(ctx context.Context, now time.Time) {
	settings := c.Settings()
	if !c.cluster.Deciding() {
		c.mu.Lock()
		clear(c.services) // the next decider starts from the load the gateways kept
		c.mu.Unlock()
		return
	}
	names := make([]string, 0, len(settings))
	for svc := range settings {
		names = append(names, svc)
	}
	slices.Sort(names)
	for _, svc := range names {
		c.decide(ctx, svc, settings[svc], now)
	}
}

// decide makes one decision for svc, and acts on it.
func (c *Controller) decide(ctx context.Context, svc string, s Settings, now time.Time) {
	c.mu.Lock()
	tr := c.services[svc]
	if tr == nil {
		tr = &tracked{}
		c.services[svc] = tr
	}
	since := now.Add(-s.StableWindow)
	if n := len(tr.samples); n > 0 {
		since = tr.samples[n-1].At
	}
	c.mu.Unlock()

	fresh, err := c.cluster.Load(ctx, svc, since)
	if err != nil {
		c.logger.Warn("autoscale: could not read the load", "service", svc, "error", err)
	}
	current, cerr := c.cluster.Replicas(svc)
	rolling := c.cluster.RollingOut(svc)

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.services[svc] != tr { // turned off meanwhile
		return
	}
	tr.samples = append(tr.samples, fresh...)
	i := 0
	for i < len(tr.samples) && now.Sub(tr.samples[i].At) > s.StableWindow {
		i++
	}
	tr.samples = tr.samples[i:]
	switch {
	case cerr != nil:
		tr.frozen = "the count is unknown: " + cerr.Error()
		return
	case rolling:
		if tr.frozen == "" {
			tr.event(now, current, current, "frozen: a rollout of the service runs", "", c.cfg.Events)
			c.logger.Info("autoscale frozen: a rollout runs", "service", svc)
		}
		tr.frozen, tr.current = "a rollout of the service runs", current
		return
	}
	tr.frozen, tr.current = "", current
	d := Decide(s, &tr.state, tr.samples, current, now)
	tr.last = d
	if d.Desired == current {
		if d.Held != "" {
			tr.event(now, current, current, d.Reason, "", c.cfg.Events)
		}
		return
	}
	c.logger.Info("autoscale", "service", svc, "from", current, "to", d.Desired, "reason", d.Reason)
	c.mu.Unlock()
	err = c.cluster.Scale(ctx, svc, d.Desired)
	c.mu.Lock()
	msg := ""
	if err != nil {
		msg = err.Error()
		c.logger.Warn("autoscale: the scale failed", "service", svc, "to", d.Desired, "error", err)
	}
	tr.event(now, current, d.Desired, d.Reason, msg, c.cfg.Events)
}

// event records e, keeping the last n; the same held reason twice in a row
// is recorded once.
func (tr *tracked) event(at time.Time, from, to int, reason, err string, n int) {
	if k := len(tr.events); k > 0 && from == to && tr.events[k-1].Reason == reason {
		return
	}
	tr.events = append(tr.events, Event{At: at, From: from, To: to, Reason: reason, Error: err})
	if len(tr.events) > n {
		tr.events = tr.events[len(tr.events)-n:]
	}
}

// Status is every autoscaled service's status, by name.
func (c *Controller) Status() []Status {
	deciding := c.cluster.Deciding()
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Status, 0, len(c.settings))
	for svc, s := range c.settings {
		st := Status{Service: svc, Settings: s, Deciding: deciding}
		if tr := c.services[svc]; tr != nil && deciding {
			st.Current, st.Desired = tr.current, tr.last.Desired
			st.Stable, st.Panic, st.Panicking = tr.last.Stable, tr.last.Panic, tr.last.Panicking
			if tr.current > 0 {
				st.PerReplica = tr.last.Stable / float64(tr.current)
			}
			st.Frozen, st.Reason = tr.frozen, tr.last.Reason
			st.Events = slices.Clone(tr.events)
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Service, b.Service) })
	return out
}
