package admin

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/herd-cluster/herd/pkg/agent"
	"github.com/herd-cluster/herd/pkg/api"
	"github.com/herd-cluster/herd/pkg/balancer"
	"github.com/herd-cluster/herd/pkg/membership"
	"github.com/herd-cluster/herd/pkg/rollout"
)

func TestMemberOf(t *testing.T) {
	agentNode := membership.Node{Name: "host-a", Addr: netip.MustParseAddrPort("10.0.0.2:7946"), Status: membership.StatusAlive,
		Tags: membership.Tags{Role: membership.RoleAgent, Service: "predictor", Image: "predictor:1.0.0",
			State: membership.StateActive, Ports: []uint16{8000, 8001}}}
	assert.Equal(t, api.Member{Name: "host-a", Addr: "10.0.0.2:7946", Status: "alive", Role: "agent", Service: "predictor",
		Image: "predictor:1.0.0", State: "active", Backends: 2}, memberOf(agentNode))

	rogue := membership.Node{Name: "x", Addr: netip.MustParseAddrPort("10.0.0.9:7946"), Status: membership.StatusFailed,
		Err: errors.New("tag ports: bad range")}
	assert.Equal(t, api.Member{Name: "x", Addr: "10.0.0.9:7946", Status: "failed", Problem: "tag ports: bad range"}, memberOf(rogue))
}

func TestBackendAndReplicaOf(t *testing.T) {
	b := balancer.BackendStatus{Addr: netip.MustParseAddrPort("127.0.0.2:8000"), Node: "host-a", State: balancer.StateEjected,
		InFlight: 3, Requests: 10, Failures: 1}
	assert.Equal(t, api.Backend{Addr: "127.0.0.2:8000", Node: "host-a", State: api.BackendEjected, InFlight: 3, Requests: 10, Failures: 1},
		backendOf(b))

	r := agent.ReplicaStatus{Index: 1, Addr: "127.0.0.2:8001", Image: "predictor:1.0.0", State: "healthy", ID: "c0ffee", PID: 42, Restarts: 1}
	assert.Equal(t, api.Replica{Index: 1, Addr: "127.0.0.2:8001", Image: "predictor:1.0.0", State: api.ReplicaHealthy, ID: "c0ffee",
		PID: 42, Restarts: 1}, replicaOf(r))
}

func TestRolloutOf(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	r := rollout.Rollout{ID: "r1", Previous: "predictor:1.0.0", State: rollout.StateFailed, Message: "late", Reverted: true,
		Created: t0, Finished: t0.Add(time.Minute),
		Hosts: []rollout.Host{{Node: "host-a", State: rollout.HostReverted, Batch: 1, Started: t0, HealthySince: t0.Add(time.Second),
			Finished: t0.Add(time.Minute), Error: "unhealthy"}}}
	r.Image, r.Batch, r.NoAutoRevert = "predictor:1.1.0", 2, true
	setDuration(&r.MinHealthy, api.Duration(5*time.Second))
	setDuration(&r.Deadline, api.Duration(2*time.Minute))

	assert.Equal(t, api.Rollout{ID: "r1",
		RolloutOptions: api.RolloutOptions{Image: "predictor:1.1.0", Batch: 2, MinHealthy: api.Duration(5 * time.Second),
			Deadline: api.Duration(2 * time.Minute), NoAutoRevert: true},
		Previous: "predictor:1.0.0", State: api.RolloutFailed, Message: "late", Reverted: true, Created: t0, Finished: t0.Add(time.Minute),
		Hosts: []api.RolloutHost{{Node: "host-a", State: api.HostReverted, Batch: 1, Started: t0, HealthySince: t0.Add(time.Second),
			Finished: t0.Add(time.Minute), Error: "unhealthy"}},
	}, rolloutOf(r))
	assert.Nil(t, rolloutOf(rollout.Rollout{}).Hosts, "no hosts stay null, as before")

	o := optionsFrom(api.RolloutOptions{Image: "x:1", Batch: 3, MinHealthy: api.Duration(time.Second), Deadline: api.Duration(time.Minute),
		NoAutoRevert: true})
	assert.Equal(t, "x:1", o.Image)
	assert.Equal(t, 3, o.Batch)
	assert.Equal(t, time.Second, time.Duration(o.MinHealthy))
	assert.Equal(t, time.Minute, time.Duration(o.Deadline))
	assert.True(t, o.NoAutoRevert)
}

// The API's state names are the domain's: a renamed state in pkg/rollout or
// pkg/balancer must be a decision about the API too.
func TestStatesMatchTheDomain(t *testing.T) {
	for _, pair := range [][2]string{
		{api.RolloutRunning, string(rollout.StateRunning)}, {api.RolloutSucceeded, string(rollout.StateSucceeded)},
		{api.RolloutFailed, string(rollout.StateFailed)}, {api.RolloutAborted, string(rollout.StateAborted)},
		{api.HostPending, string(rollout.HostPending)}, {api.HostReplacing, string(rollout.HostReplacing)},
		{api.HostVerifying, string(rollout.HostVerifying)}, {api.HostHealthy, string(rollout.HostHealthy)},
		{api.HostReverting, string(rollout.HostReverting)}, {api.HostReverted, string(rollout.HostReverted)},
		{api.HostFailed, string(rollout.HostFailed)},
		{api.BackendUp, string(balancer.StateUp)}, {api.BackendDown, string(balancer.StateDown)},
		{api.BackendEjected, string(balancer.StateEjected)}, {api.BackendSlowStart, string(balancer.StateSlowStart)},
	} {
		assert.Equal(t, pair[0], pair[1])
	}
}
