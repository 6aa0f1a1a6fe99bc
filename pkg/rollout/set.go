package rollout

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/herd-cluster/herd/pkg/membership"
)

// LegacyService is the service a gateway routed by default before it
// routed every service: a state file from then (rollouts.json in the data
// dir) is that service's history.
const LegacyService = "predictor"

// Set runs a Coordinator per service: rollouts of different services run at
// the same time, one at a time per service. Each service's state is its
// own file: rollouts/<service>.json in the data dir, or rollouts.json for a
// gateway of one service (SetConfig.Only), as before.
type Set struct {
	cfg  Config
	dir  string
	only string

	mu     sync.Mutex
	coords map[string]*Coordinator
	closed bool
}

// SetConfig configures a Set.
type SetConfig struct {
	// Config is every coordinator's; Service and StatePath are set per
	// service.
	Config
	// Dir is the data dir the state files are kept in; empty: in memory.
	Dir string
	// Only, if set, is the only service rolled out (a gateway of one
	// service).
	Only string
}

// NewSet loads every service's state, resuming the rollouts that were
// running. In a Set of every service, a state file of the single-service
// layout (rollouts.json) becomes LegacyService's, once.
func NewSet(cfg SetConfig) (*Set, error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	s := &Set{cfg: cfg.Config, dir: cfg.Dir, only: cfg.Only, coords: make(map[string]*Coordinator)}
	if s.only != "" {
		if _, err := s.coordinator(s.only); err != nil {
			return nil, err
		}
		return s, nil
	}
	if s.dir == "" {
		return s, nil
	}
	if err := s.adoptLegacy(); err != nil {
		return nil, err
	}
	files, err := filepath.Glob(filepath.Join(s.dir, "rollouts", "*.json"))
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		if strings.HasSuffix(name, ".progress") || !membership.ValidServiceName(name) {
			continue
		}
		if _, err := s.coordinator(name); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// adoptLegacy moves the single-service state files to LegacyService's.
func (s *Set) adoptLegacy() error {
	old := filepath.Join(s.dir, "rollouts.json")
	if _, err := os.Stat(old); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	dst := s.statePath(LegacyService)
	if _, err := os.Stat(dst); err == nil {
		return nil // adopted already; the old file is a leftover
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	for _, f := range []struct{ from, to string }{
		{strings.TrimSuffix(old, ".json") + ".progress.json", strings.TrimSuffix(dst, ".json") + ".progress.json"},
		{old, dst}, // last: its presence says the adoption is done
	} {
		if err := os.Rename(f.from, f.to); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("rollout state: %w", err)
		}
	}
	s.cfg.Logger.Info("rollout history of the single-service gateway adopted", "service", LegacyService, "path", dst)
	return nil
}

func (s *Set) statePath(service string) string {
	switch {
	case s.dir == "":
		return ""
	case s.only != "":
		return filepath.Join(s.dir, "rollouts.json")
	}
	return filepath.Join(s.dir, "rollouts", service+".json")
}

// coordinator returns the service's coordinator, starting it if needed.
func (s *Set) coordinator(service string) (*Coordinator, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if c := s.coords[service]; c != nil {
		return c, nil
	}
	cfg := s.cfg
	cfg.Service, cfg.StatePath = service, s.statePath(service)
	if cfg.StatePath != "" {
		if err := os.MkdirAll(filepath.Dir(cfg.StatePath), 0o700); err != nil {
			return nil, fmt.Errorf("rollout state: %w", err)
		}
	}
	c, err := New(cfg)
	if err != nil {
		return nil, err
	}
	s.coords[service] = c
	return c, nil
}

// For returns the coordinator of service; "" names the only service there
// is: the gateway's, or the one whose agents are in the cluster or whose
// rollouts are kept. It refuses (ErrRefused) a service the gateway does not
// roll out, a malformed name, and "" when there are several.
func (s *Set) For(service string) (*Coordinator, error) {
	switch {
	case s.only != "" && (service == "" || service == s.only):
		return s.coordinator(s.only)
	case s.only != "":
		return nil, fmt.Errorf("%w: this gateway rolls out service %q only, not %q", ErrRefused, s.only, service)
	case service == "":
		all := s.Services()
		switch len(all) {
		case 0:
			return nil, fmt.Errorf("%w: no agents in the cluster", ErrRefused)
		case 1:
			return s.coordinator(all[0])
		}
		return nil, fmt.Errorf("%w: the cluster runs several services (%s): name one (--service)",
			ErrRefused, strings.Join(all, ", "))
	case !membership.ValidServiceName(service):
		return nil, fmt.Errorf("%w: %q is not a service name", ErrRefused, service)
	}
	return s.coordinator(service)
}

// Services returns the services that have agents in the cluster, or
// rollouts kept, sorted.
func (s *Set) Services() []string {
	if s.only != "" {
		return []string{s.only}
	}
	names := make(map[string]bool)
	for _, n := range s.cfg.Members.Members() {
		if n.Err == nil && n.Tags.Role == membership.RoleAgent && n.Status != membership.StatusLeft {
			names[n.Tags.Service] = true
		}
	}
	s.mu.Lock()
	for name := range s.coords {
		names[name] = true
	}
	s.mu.Unlock()
	return slices.Sorted(maps.Keys(names))
}

// Start begins a rollout of service ("": see For).
func (s *Set) Start(ctx context.Context, service string, o Options) (Rollout, error) {
	c, err := s.For(service)
	if err != nil {
		return Rollout{}, err
	}
	return c.Start(ctx, o)
}

// Rollback rolls service back to its image before its last rollout.
func (s *Set) Rollback(ctx context.Context, service string, o Options) (Rollout, error) {
	c, err := s.For(service)
	if err != nil {
		return Rollout{}, err
	}
	return c.Rollback(ctx, o)
}

// Abort stops service's running rollout; see Coordinator.Abort.
func (s *Set) Abort(service string) (Rollout, error) {
	c, err := s.For(service)
	if err != nil {
		return Rollout{}, err
	}
	return c.Abort()
}

// Promote skips the canary steps left of service's running rollout; see
// Coordinator.Promote.
func (s *Set) Promote(service string) (Rollout, error) {
	c, err := s.For(service)
	if err != nil {
		return Rollout{}, err
	}
	return c.Promote()
}

// Get returns one of service's rollouts; see Coordinator.Get.
func (s *Set) Get(service, id string) (Rollout, error) {
	c, err := s.For(service)
	if err != nil {
		return Rollout{}, err
	}
	return c.Get(id)
}

// History returns service's rollouts, newest first; "" every service's.
func (s *Set) History(service string) ([]Rollout, error) {
	if service != "" || s.only != "" {
		c, err := s.For(service)
		if err != nil {
			return nil, err
		}
		return c.History(), nil
	}
	s.mu.Lock()
	coords := slices.Collect(maps.Values(s.coords))
	s.mu.Unlock()
	var out []Rollout
	for _, c := range coords {
		out = append(out, c.History()...)
	}
	slices.SortStableFunc(out, func(a, b Rollout) int {
		return cmp.Or(b.Created.Compare(a.Created), cmp.Compare(a.Service, b.Service))
	})
	return out, nil
}

// Close stops every coordinator's loop; see Coordinator.Close.
func (s *Set) Close() {
	s.mu.Lock()
	s.closed = true
	coords := slices.Collect(maps.Values(s.coords))
	s.mu.Unlock()
	for _, c := range coords {
		c.Close()
	}
}
