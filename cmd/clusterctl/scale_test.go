package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/api"
)

// fakeScaleAPI answers the scale endpoints: a scale request with result or
// refusal, and a status that moves one step per read through statuses.
type fakeScaleAPI struct {
	mu       sync.Mutex
	got      []api.ScaleRequest
	paths    []string
	status   int
	result   any
	statuses []api.ScaleStatus
}

func (f *fakeScaleAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Method == http.MethodGet {
		st := f.statuses[0]
		if len(f.statuses) > 1 {
			f.statuses = f.statuses[1:]
		}
		answer(w, http.StatusOK, st)
		return
	}
	var req api.ScaleRequest
	_ = json.NewDecoder(r.Body).Decode(&req)
	f.got = append(f.got, req)
	f.paths = append(f.paths, r.URL.Path)
	answer(w, f.status, f.result)
}

func agentsAt(replicas, healthy, routed int) api.ScaleStatus {
	st := api.ScaleStatus{Service: "predictor"}
	for _, n := range []string{"host-1", "host-2"} {
		st.Agents = append(st.Agents, api.ScaleAgentStatus{Node: n, Status: "alive", Replicas: replicas, Healthy: healthy, Routed: routed})
		st.Replicas, st.Healthy, st.Routed = st.Replicas+replicas, st.Healthy+healthy, st.Routed+routed
	}
	return st
}

func TestScaleCommand(t *testing.T) {
	f := &fakeScaleAPI{status: http.StatusOK, result: api.ScaleResult{Service: "predictor", Replicas: 8,
		Agents: []api.ScaleAgent{{Node: "host-1", Previous: 2, Replicas: 4}, {Node: "host-2", Previous: 2, Replicas: 4}}},
		statuses: []api.ScaleStatus{agentsAt(2, 2, 2), agentsAt(4, 2, 2), agentsAt(4, 4, 3), agentsAt(4, 4, 4)}}
	srv := httptest.NewServer(f)
	defer srv.Close()

	code, out := run(t, srv.URL, "scale", "predictor", "8", "--wait", "--timeout", "10s")
	require.Equal(t, 0, code, out)
	assert.Equal(t, []api.ScaleRequest{{Replicas: 8, Reason: "clusterctl"}}, f.got, "flags after the arguments")
	assert.Equal(t, "/v1/services/predictor/scale", f.paths[0])
	assert.Contains(t, out, "host-1  2     4   ok")
	assert.Contains(t, out, "predictor: 8 replicas, 8 healthy, 6 routed\n")
	assert.Contains(t, out, "done: predictor: 8 replicas, 8 healthy, 8 routed\n")

	code, out = run(t, srv.URL, "scale", "--allow-zero", "--node", "host-2", "0", "--after-rollout")
	require.Equal(t, 0, code, out)
	assert.Equal(t, api.ScaleRequest{Replicas: 0, AllowZero: true, AfterRollout: true, Reason: "clusterctl"}, f.got[1])
	assert.Equal(t, "/v1/nodes/host-2/scale", f.paths[1])

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"scale", "predictor", "-3"}, "scale refused: replica count -3: must be 0 or more"},
		{[]string{"scale", "--node", "host-1", "-3"}, "scale refused: replica count -3: must be 0 or more"},
		{[]string{"scale", "predictor", "-3", "--wait"}, "scale refused: replica count -3: must be 0 or more"},
		{[]string{"scale", "--wait", "predictor", "many"}, `scale: "many" is not a replica count`},
		{[]string{"scale", "predictor"}, "usage: clusterctl scale SERVICE N"},
		{[]string{"scale", "--node", "host-2", "predictor", "3"}, "usage: clusterctl scale SERVICE N"},
		{[]string{"scale", "predictor", "3", "--bogus"}, "flag provided but not defined: -bogus"},
	} {
		code, out = run(t, srv.URL, tc.args...)
		assert.Equal(t, 2, code, "%v: %s", tc.args, out)
		assert.Contains(t, out, tc.want, tc.args)
	}
	assert.Len(t, f.got, 2, "nothing sent for bad usage")

	f.status, f.result = http.StatusBadRequest, api.Error{Error: "scale refused: 0 replicas would stop service predictor; zero must be allowed explicitly"}
	code, out = run(t, srv.URL, "scale", "predictor", "0")
	assert.Equal(t, 2, code)
	assert.Equal(t, "scale refused: 0 replicas would stop service predictor; zero must be allowed explicitly (--allow-zero)", out)
	f.status, f.result = http.StatusConflict, api.Error{Error: "a rollout of the service is running: predictor (rollout r1 to predictor:1.1.0); scale it once that has ended, or queue it behind it"}
	code, out = run(t, srv.URL, "scale", "predictor", "6")
	assert.Equal(t, 2, code)
	assert.Contains(t, out, "--after-rollout")
	f.status, f.result = http.StatusBadRequest, api.Error{Error: `no agents of service "nope" in the cluster`}
	code, out = run(t, srv.URL, "scale", "nope", "6")
	assert.Equal(t, 2, code)
	assert.Equal(t, `scale refused: no agents of service "nope" in the cluster`, out)

	// An agent that did not answer: named, exit 1, after the others reached their count.
	f.status, f.result = http.StatusOK, api.ScaleResult{Service: "predictor", Replicas: 8, Agents: []api.ScaleAgent{
		{Node: "host-1", Previous: 2, Replicas: 4}, {Node: "host-2", Previous: 2, Replicas: 4, Error: "host-2 did not answer within 5s, asked 2 times: no answer", NoAnswer: true}}}
	st := agentsAt(4, 4, 4)
	st.Agents[1].Replicas, st.Agents[1].Healthy, st.Agents[1].Routed = 2, 2, 2
	f.statuses = []api.ScaleStatus{st}
	code, out = run(t, srv.URL, "scale", "predictor", "8")
	assert.Equal(t, 1, code)
	assert.Equal(t, "not every agent took its count (the others' change stands): host-2 did not answer within 5s, asked 2 times: no answer", out)
	code, out = run(t, srv.URL, "scale", "predictor", "8", "--wait")
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "host-2 did not answer")

	// A scale-down given up: the agent withdrew the replicas beyond the
	// count, then put them back with its reason. The same reason before
	// the withdrawal is an earlier one's, not yet cleared by gossip.
	f.result = api.ScaleResult{Service: "predictor", Replicas: 2, Agents: []api.ScaleAgent{
		{Node: "host-1", Previous: 4, Replicas: 1}, {Node: "host-2", Previous: 4, Replicas: 1}}}
	gaveUp := agentsAt(4, 4, 4)
	gaveUp.Agents[0].Problem = "gateway gw-2 did not acknowledge the withdrawal of replica 1 within 15s; scale-down to 1 given up"
	f.statuses = []api.ScaleStatus{gaveUp, agentsAt(4, 1, 1), gaveUp}
	code, out = run(t, srv.URL, "scale", "predictor", "2", "--wait")
	assert.Equal(t, 1, code)
	assert.Equal(t, "gateway gw-2 did not acknowledge the withdrawal of replica 1 within 15s; scale-down to 1 given up", out)

	// Queued behind a rollout, then done.
	f.result = api.ScaleResult{Service: "predictor", Replicas: 8, Queued: true, Agents: []api.ScaleAgent{
		{Node: "host-1", Previous: 2, Replicas: 4}, {Node: "host-2", Previous: 2, Replicas: 4}}}
	queued := agentsAt(2, 2, 2)
	queued.Rollout, queued.Queued = "r1 to predictor:1.1.0", &api.QueuedScale{Replicas: 8, Rollout: "r1 to predictor:1.1.0"}
	f.status, f.statuses = http.StatusAccepted, []api.ScaleStatus{queued, agentsAt(4, 4, 4)}
	code, out = run(t, srv.URL, "scale", "predictor", "8", "--after-rollout", "--wait")
	assert.Equal(t, 0, code, out)
	assert.Contains(t, out, "queued: it runs once the rollout of predictor has ended")
	assert.Contains(t, out, "done: predictor: 8 replicas")
}

func TestScaleStatusCommand(t *testing.T) {
	st := agentsAt(4, 3, 3)
	st.Agents[1].Problem = "gateway gw-2 did not acknowledge"
	srv := httptest.NewServer(&fakeScaleAPI{statuses: []api.ScaleStatus{st}})
	defer srv.Close()
	code, out := run(t, srv.URL, "scale", "status", "predictor")
	require.Equal(t, 0, code, out)
	assert.Equal(t, `predictor: 8 replicas, 6 healthy, 6 routed
NODE    STATUS  REPLICAS  HEALTHY  ROUTED  PROBLEM
host-1  alive   4         3        3       -
host-2  alive   4         3        3       gateway gw-2 did not acknowledge
`, out)
}
