package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/api"
	"github.com/herd-cluster/herd/pkg/membership"
	"github.com/herd-cluster/herd/pkg/scale"
)

// scaler answers what the test set and records what it was asked.
type scaler struct {
	got    scale.Request
	res    scale.Result
	err    error
	status scale.Status
}

func (s *scaler) Scale(_ context.Context, r scale.Request) (scale.Result, error) {
	s.got = r
	return s.res, s.err
}

func (s *scaler) Status(service string) scale.Status {
	st := s.status
	st.Service = service
	return st
}

func TestScaleEndpoints(t *testing.T) {
	sc := &scaler{res: scale.Result{Service: "predictor", Replicas: 24, Agents: []scale.AgentResult{
		{Node: "host-1", Previous: 4, Replicas: 12},
		{Node: "host-2", Previous: 4, Replicas: 12, Err: fmt.Errorf("host-2 did not answer within 5s: %w", membership.ErrNoAnswer)},
	}}}
	s := NewServer("", hclog.NewNullLogger())
	s.HandleScale(sc)

	code, body := post(t, s, "/v1/services/predictor/scale", `{"replicas":24,"reason":"clusterctl"}`)
	assert.Equal(t, http.StatusOK, code, body)
	assert.Equal(t, `{"agents":[{"node":"host-1","previous":4,"replicas":12},`+
		`{"error":"host-2 did not answer within 5s: no answer","no_answer":true,"node":"host-2","previous":4,"replicas":12}],`+
		`"replicas":24,"service":"predictor"}`, compact(t, body))
	assert.Equal(t, scale.Request{Service: "predictor", Replicas: 24, Reason: "clusterctl from 192.0.2.1"}, sc.got)

	code, _ = post(t, s, "/v1/nodes/host-2/scale", `{"replicas":0,"allow_zero":true,"after_rollout":true}`)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, scale.Request{Node: "host-2", AllowZero: true, AfterRollout: true, Reason: "admin API from 192.0.2.1"}, sc.got)

	sc.res.Queued = true
	code, body = post(t, s, "/v1/services/predictor/scale", `{"replicas":24,"after_rollout":true}`)
	assert.Equal(t, http.StatusAccepted, code)
	assert.Contains(t, body, `"queued": true`)

	for _, tc := range []struct {
		err  error
		code int
	}{
		{fmt.Errorf("%w: replica count -1: must be 0 or more", scale.ErrRefused), http.StatusBadRequest},
		{fmt.Errorf("%w: predictor", scale.ErrRolloutRunning), http.StatusConflict},
		{scale.ErrClosed, http.StatusServiceUnavailable},
	} {
		sc.err = tc.err
		code, body = post(t, s, "/v1/services/predictor/scale", `{"replicas":-1}`)
		assert.Equal(t, tc.code, code, tc.err.Error())
		assert.Equal(t, compact(t, fmt.Sprintf(`{"error":%q}`, tc.err.Error())), compact(t, body))
	}
	sc.err = nil
	for _, bad := range []string{``, `{"replicas":"3"}`, `{"replicas":3,"extra":1}`, `{"replicas":3} {}`} {
		code, _ = post(t, s, "/v1/services/predictor/scale", bad)
		assert.Equal(t, http.StatusBadRequest, code, bad)
	}

	code, body = get(t, s, "/v1/services/predictor/scale")
	assert.Equal(t, http.StatusNotFound, code)
	assert.Contains(t, body, `no agents of service \"predictor\"`)
	since := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	sc.status = scale.Status{Replicas: 24, Healthy: 20, Routed: 19, Rollout: "r1 to predictor:1.1.0",
		Agents: []scale.AgentStatus{{Node: "host-1", Status: membership.StatusAlive, Replicas: 12, Healthy: 10, Routed: 9,
			Problem: "gateway gw-2 did not acknowledge"}},
		Queued: &scale.Queued{Request: scale.Request{Service: "predictor", Replicas: 30}, Rollout: "r1 to predictor:1.1.0", Since: since}}
	code, body = get(t, s, "/v1/services/predictor/scale")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, `{"agents":[{"healthy":10,"node":"host-1","problem":"gateway gw-2 did not acknowledge",`+
		`"replicas":12,"routed":9,"status":"alive"}],"healthy":20,`+
		`"queued":{"replicas":30,"rollout":"r1 to predictor:1.1.0","since":"2026-12-01T12:00:00Z"},`+
		`"replicas":24,"rollout":"r1 to predictor:1.1.0","routed":19,"service":"predictor"}`, compact(t, body))

	// What the client reads back.
	var st api.ScaleStatus
	require.NoError(t, json.Unmarshal([]byte(body), &st))
	assert.Equal(t, 19, st.Routed)
}

// FuzzDecodeScaleBody: the scale API's body decoder takes only one JSON
// object of known fields within 64 KiB, and never panics.
func FuzzDecodeScaleBody(f *testing.F) {
	f.Add([]byte(`{"replicas":24}`))
	f.Add([]byte(`{"replicas":0,"allow_zero":true,"after_rollout":true,"reason":"x"}`))
	f.Add([]byte(`{"replicas":-1}`))
	f.Add([]byte(`{"replicas":1e99}`))
	f.Add([]byte(`{"replicas":3,"unknown":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r api.ScaleRequest
		err := decodeBody(httptest.NewRequest("POST", "/v1/services/predictor/scale", bytes.NewReader(b)), &r)
		if err == nil {
			require.LessOrEqual(t, len(bytes.TrimSpace(b)), maxBody)
		}
	})
}
