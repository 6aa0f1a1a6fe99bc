package agent

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/internal/testutil"
	"github.com/herd-cluster/herd/pkg/membership"
	"github.com/herd-cluster/herd/pkg/runtime"
)

// slowList is a driver whose List, once slow is set, waits for release: an
// engine busy starting containers.
type slowList struct {
	Runtime
	slow    atomic.Bool
	release chan struct{}
	waiting atomic.Int32 // Lists that waited
}

func (s *slowList) List(ctx context.Context) ([]runtime.Replica, error) {
	if s.slow.Load() {
		s.waiting.Add(1)
		select {
		case <-s.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return s.Runtime.List(ctx)
}

// TestChecksDoNotHoldTheLoop: while a round of checks waits for the
// driver's list, the agent answers a scale request and announces the new
// replica as soon as it is healthy, and starts no second round.
func TestChecksDoNotHoldTheLoop(t *testing.T) {
	testutil.BuildPredictorImages(t, imagesDir, "1.0.0")
	g := startGateway(t)
	cfg := agentConfig(t, g, 1)
	cfg.BasePort = testutil.FreePortRange(t, 2, "127.0.0.1")
	rt := &slowList{Runtime: newDriver(t, t.TempDir()), release: make(chan struct{})}
	ta := runAgent(t, cfg, rt)
	g.waitBackends(t, 1)

	rt.slow.Store(true)
	require.Eventually(t, func() bool { return rt.waiting.Load() == 1 }, 5*time.Second, 5*time.Millisecond,
		"a round of checks waits for the list")
	ans := scaleAgent(t, g.cluster, cfg.Node, membership.ScaleRequest{Replicas: 2})
	require.NoError(t, ans.Err)
	g.waitBackends(t, 2)
	assert.Equal(t, int32(1), rt.waiting.Load(), "one round at a time")

	close(rt.release)
	require.Eventually(t, func() bool { return rt.waiting.Load() > 1 }, 5*time.Second, 5*time.Millisecond,
		"rounds go on once the list answers")
	ta.healthy(t, 2)
}

// TestApplyChecks: a round's results act on the replicas still in their
// slots and in service, and on nothing that changed meanwhile.
func TestApplyChecks(t *testing.T) {
	failed := errors.New("connection refused")
	replica := func(i int) *runtime.Replica { return &runtime.Replica{ID: string(rune('a' + i)), Index: i} }
	tests := []struct {
		name      string
		state     string // the slot's state when the round comes back
		replaced  bool   // the slot holds another replica by then
		retired   bool   // beyond the count by then
		err       error
		running   map[replicaKey]bool
		wantState string
	}{
		{name: "failed check withdraws", state: stateHealthy, err: failed, wantState: stateUnhealthy},
		{name: "passing check brings it back", state: stateUnhealthy, wantState: stateHealthy},
		{name: "restarted meanwhile", state: stateStarting, replaced: true, err: failed, wantState: stateStarting},
		{name: "replaced by a healthy one meanwhile", state: stateHealthy, replaced: true, err: failed, wantState: stateHealthy},
		{name: "being replaced (a rollout)", state: stateDraining, err: failed, wantState: stateDraining},
		{name: "retired by a scale-down", state: stateHealthy, retired: true, err: failed, wantState: stateHealthy},
		{name: "listed as exited, restarted meanwhile", state: stateHealthy, replaced: true, running: map[replicaKey]bool{{index: 0}: false},
			wantState: stateHealthy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &Agent{cfg: Config{ReplaceAfter: 3}, logger: quietLogger("t"), count: 1}
			checkedReplica := replica(0)
			s := &slot{index: 0, replica: checkedReplica, state: tt.state}
			a.slots = []*slot{s}
			if tt.replaced {
				s.replica = replica(1)
			}
			if tt.retired {
				a.count = 0
			}
			a.applyChecks(checkRound{running: tt.running, checked: []checked{{slot: s, replica: checkedReplica, err: tt.err}}})
			assert.Equal(t, tt.wantState, s.state)
		})
	}
}
