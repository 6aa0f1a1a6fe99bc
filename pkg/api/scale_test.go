package api

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestScaleWireShapes(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		v    any
		want string
	}{
		{ScaleRequest{Replicas: 24}, `{"replicas":24}`},
		{ScaleRequest{Replicas: 0, AllowZero: true, AfterRollout: true, Reason: "clusterctl"},
			`{"replicas":0,"allow_zero":true,"after_rollout":true,"reason":"clusterctl"}`},
		{ScaleResult{Service: "predictor", Replicas: 24, Agents: []ScaleAgent{{Node: "host-1", Previous: 4, Replicas: 12},
			{Node: "host-2", Previous: 4, Replicas: 12, Error: "host-2 did not answer", NoAnswer: true}}},
			`{"service":"predictor","replicas":24,"agents":[{"node":"host-1","previous":4,"replicas":12},` +
				`{"node":"host-2","previous":4,"replicas":12,"error":"host-2 did not answer","no_answer":true}]}`},
		{ScaleStatus{Service: "predictor", Replicas: 8, Healthy: 6, Routed: -1,
			Agents:     []ScaleAgentStatus{{Node: "host-1", Status: "alive", Replicas: 8, Healthy: 6, Routed: -1}},
			Queued:     &QueuedScale{Replicas: 12, Rollout: "r1 to predictor:1.1.0", Since: t0},
			LastQueued: &QueuedScaleOutcome{Node: "host-1", Replicas: 3, Done: t0, Error: "refused"}},
			`{"service":"predictor","replicas":8,"healthy":6,"routed":-1,"agents":[{"node":"host-1","status":"alive","replicas":8,"healthy":6,"routed":-1}],` +
				`"queued":{"replicas":12,"rollout":"r1 to predictor:1.1.0","since":"2026-12-01T12:00:00Z"},` +
				`"last_queued":{"node":"host-1","replicas":3,"done":"2026-12-01T12:00:00Z","error":"refused"}}`},
	} {
		b, err := json.Marshal(tc.v)
		require.NoError(t, err)
		assert.Equal(t, tc.want, string(b))
	}
}

func TestScaleStatusReached(t *testing.T) {
	agent := func(node, status string, replicas, healthy, routed int, problem string) ScaleAgentStatus {
		return ScaleAgentStatus{Node: node, Status: status, Replicas: replicas, Healthy: healthy, Routed: routed, Problem: problem}
	}
	st := func(agents ...ScaleAgentStatus) ScaleStatus {
		s := ScaleStatus{Agents: agents}
		for _, a := range agents {
			if a.Status == "alive" {
				s.Replicas += a.Replicas
			}
		}
		return s
	}
	cases := []struct {
		name     string
		st       ScaleStatus
		node     string
		replicas int
		want     bool
	}{
		{"all there", st(agent("a", "alive", 4, 4, 4, ""), agent("b", "alive", 4, 4, 4, "")), "", 8, true},
		{"count not yet", st(agent("a", "alive", 4, 4, 4, ""), agent("b", "alive", 4, 4, 4, "")), "", 12, false},
		{"not all healthy", st(agent("a", "alive", 6, 4, 4, ""), agent("b", "alive", 6, 6, 6, "")), "", 12, false},
		{"not all routed", st(agent("a", "alive", 6, 6, 5, ""), agent("b", "alive", 6, 6, 6, "")), "", 12, false},
		{"not routed here", st(agent("a", "alive", 6, 6, -1, ""), agent("b", "alive", 6, 6, -1, "")), "", 12, true},
		{"a problem of another kind", st(agent("a", "alive", 6, 6, 6, "gave up on an image"), agent("b", "alive", 6, 6, 6, "")), "", 12, true},
		{"a failed agent does not count", st(agent("a", "alive", 6, 6, 6, ""), agent("b", "failed", 6, 0, 0, "b is failed")), "", 6, true},
		{"one node", st(agent("a", "alive", 2, 2, 2, ""), agent("b", "alive", 6, 3, 3, "")), "a", 2, true},
		{"one node, other count", st(agent("a", "alive", 2, 2, 2, "")), "a", 3, false},
		{"unknown node", st(agent("a", "alive", 2, 2, 2, "")), "z", 2, false},
		{"zero", st(agent("a", "alive", 0, 0, 0, "")), "", 0, true},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, tc.st.Reached(tc.node, tc.replicas), tc.name)
	}
	r := ScaleResult{Agents: []ScaleAgent{{Node: "a"}, {Node: "b", Error: "x"}}}
	assert.Equal(t, []ScaleAgent{{Node: "b", Error: "x"}}, r.Failed())
}
