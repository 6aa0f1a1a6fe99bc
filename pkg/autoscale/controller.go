package autoscale

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
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
	// Scale asks for the service's total count, for reason (the
	// decision's, for the logs).
	Scale(ctx context.Context, service string, n int, reason string) error
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
	// OnEvent, if set, is told each event as it is recorded (the gateway
	// shares them with the other gateways: Record).
	OnEvent func(service string, e Event)
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
	entries  map[string]Entry
	services map[string]*tracked
	// events are each service's last decisions, this gateway's own and
	// those the deciding gateway shared (Record): they outlive a change
	// of decider.
	events map[string][]Event
}

// Entry is a service's settings as the gateways share them: each change
// has a version (the Unix nanosecond it was made at), and a gateway keeps
// the newest it has seen; turning autoscaling off is an entry too, so a
// gateway that missed it does not bring the old settings back.
type Entry struct {
	Settings Settings
	Off      bool  `json:",omitempty"`
	Version  int64 // Unix nanoseconds of the change
}

// tracked is a service's decisions, kept while this gateway decides.
type tracked struct {
	state   State
	samples []Sample
	last    Decision
	current int
	frozen  string
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

// resample is how far back each decision reads the load again.
const resample = 3 * time.Second

// ErrNoSuchService: the cluster runs no such service.
var ErrNoSuchService = errors.New("no such service")

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
	c := &Controller{cfg: cfg, cluster: cluster, logger: cfg.Logger, entries: map[string]Entry{}, services: map[string]*tracked{},
		events: map[string][]Event{}}
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
	if err := json.Unmarshal(data, &c.entries); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(cfg.Dir, settingsFile), err)
	}
	for svc, e := range c.entries {
		if err := e.validate(); err != nil {
			return nil, fmt.Errorf("%s: service %s: %w", filepath.Join(cfg.Dir, settingsFile), svc, err)
		}
	}
	return c, nil
}

func (e Entry) validate() error {
	if e.Off {
		return nil
	}
	return e.Settings.Validate()
}

// Set turns autoscaling of service on with s, or changes its settings:
// a change made here now. It returns the entry to share with the other
// gateways (Apply).
func (c *Controller) Set(service string, s Settings) (Entry, error) {
	e := Entry{Settings: s, Version: time.Now().UnixNano()}
	_, err := c.Apply(service, e)
	return e, err
}

// Off turns autoscaling of service off; the count stays where it is. It
// returns the entry to share.
func (c *Controller) Off(service string) (Entry, error) {
	c.mu.Lock()
	cur, ok := c.entries[service]
	c.mu.Unlock()
	if !ok || cur.Off {
		return Entry{}, ErrUnknownService
	}
	e := Entry{Off: true, Version: max(time.Now().UnixNano(), cur.Version+1)}
	_, err := c.Apply(service, e)
	return e, err
}

// Apply takes e for service if it is newer than the entry held (another
// gateway's change, or a gateway's entries learned at start), and saves
// it. applied is false for an entry not newer, which changes nothing.
func (c *Controller) Apply(service string, e Entry) (applied bool, err error) {
	if err := e.validate(); err != nil {
		return false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old, had := c.entries[service]
	if had && e.Version <= old.Version {
		return false, nil
	}
	c.entries[service] = e
	if err := c.saveLocked(); err != nil {
		if had {
			c.entries[service] = old
		} else {
			delete(c.entries, service)
		}
		return false, err
	}
	if e.Off {
		delete(c.services, service)
	}
	return true, nil
}

// Entries are every service's entry, turned off ones too, to share.
func (c *Controller) Entries() map[string]Entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.entries)
}

// Settings are the settings of every autoscaled service.
func (c *Controller) Settings() map[string]Settings {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]Settings, len(c.entries))
	for k, e := range c.entries {
		if !e.Off {
			out[k] = e.Settings
		}
	}
	return out
}

func (c *Controller) saveLocked() error {
	if c.cfg.Dir == "" {
		return nil
	}
	data, err := json.MarshalIndent(c.entries, "", "  ")
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
		tr = &tracked{state: State{Started: now}}
		c.services[svc] = tr
	}
	since := now.Add(-s.StableWindow)
	if n := len(tr.samples); n > 0 {
		// The last seconds again: a gateway closes a second's bucket a
		// reading after the others, so a sum read at once may lack it.
		if again := tr.samples[n-1].At.Add(-resample); again.After(since) {
			since = again
		}
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
	if err == nil || len(fresh) > 0 {
		tr.samples = slices.DeleteFunc(tr.samples, func(smp Sample) bool { return smp.At.After(since) })
		tr.samples = append(tr.samples, fresh...)
	}
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
			c.recordLocked(svc, Event{At: now, From: current, To: current, Reason: "frozen: a rollout of the service runs"}, true)
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
			c.recordLocked(svc, Event{At: now, From: current, To: current, Reason: d.Reason}, true)
		}
		return
	}
	c.logger.Info("autoscale", "service", svc, "from", current, "to", d.Desired, "reason", d.Reason)
	c.mu.Unlock()
	err = c.cluster.Scale(ctx, svc, d.Desired, "autoscaler: "+d.Reason)
	c.mu.Lock()
	msg := ""
	if err != nil {
		msg = err.Error()
		c.logger.Warn("autoscale: the scale failed", "service", svc, "to", d.Desired, "error", err)
	}
	c.recordLocked(svc, Event{At: now, From: current, To: d.Desired, Reason: d.Reason, Error: msg}, true)
}

// Record keeps an event the deciding gateway shared.
func (c *Controller) Record(service string, e Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recordLocked(service, e, false)
}

// recordLocked keeps e among service's last events, in time order; the
// same hold twice in a row, or an event already kept, is kept once. Our
// own are shared (OnEvent).
func (c *Controller) recordLocked(service string, e Event, own bool) {
	evs := c.events[service]
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].At.Equal(e.At) && evs[i].Reason == e.Reason {
			return
		}
	}
	if k := len(evs); k > 0 && e.From == e.To && evs[k-1].From == evs[k-1].To && evs[k-1].Reason == e.Reason {
		return
	}
	i := len(evs)
	for i > 0 && evs[i-1].At.After(e.At) {
		i--
	}
	evs = slices.Insert(evs, i, e)
	if len(evs) > c.cfg.Events {
		evs = evs[len(evs)-c.cfg.Events:]
	}
	c.events[service] = evs
	if own && c.cfg.OnEvent != nil {
		go c.cfg.OnEvent(service, e)
	}
}

// Status is every autoscaled service's status, by name.
func (c *Controller) Status() []Status {
	deciding := c.cluster.Deciding()
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Status, 0, len(c.entries))
	for svc, e := range c.entries {
		if e.Off {
			continue
		}
		s := e.Settings
		st := Status{Service: svc, Settings: s, Deciding: deciding}
		if tr := c.services[svc]; tr != nil && deciding {
			st.Current, st.Desired = tr.current, tr.last.Desired
			st.Stable, st.Panic, st.Panicking = tr.last.Stable, tr.last.Panic, tr.last.Panicking
			if tr.current > 0 {
				st.PerReplica = tr.last.Stable / float64(tr.current)
			}
			st.Frozen, st.Reason = tr.frozen, tr.last.Reason
		}
		st.Events = slices.Clone(c.events[svc])
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Service, b.Service) })
	return out
}
