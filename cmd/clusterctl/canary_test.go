package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/api"
)

// fakeRolloutAPI takes a rollout start and answers it at once, ended.
type fakeRolloutAPI struct {
	mu  sync.Mutex
	got []api.RolloutOptions
	ro  api.Rollout
}

func (f *fakeRolloutAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Method == http.MethodPost {
		var o api.RolloutOptions
		_ = json.NewDecoder(r.Body).Decode(&o)
		f.got = append(f.got, o)
	}
	answer(w, http.StatusOK, f.ro)
}

func TestRolloutCanaryFlags(t *testing.T) {
	verdict := api.Verdict{Result: api.VerdictFail, Reason: "canary error rate 5.0 % (20 of 400) above the 1 % limit",
		Canary: api.ArmFigures{Requests: 400, Errors: 20, ErrorRate: 0.05, P50: api.Duration(2 * time.Millisecond),
			P99: api.Duration(9 * time.Millisecond)}, Baseline: api.ArmFigures{Requests: 400, P50: api.Duration(2 * time.Millisecond)}}
	f := &fakeRolloutAPI{ro: api.Rollout{ID: "r1", State: api.RolloutFailed, Message: "canary step 1 (5 %) failed",
		Canary: &api.CanaryStatus{Node: "host-1", Phase: api.CanaryFailed, Step: 1,
			Steps: []api.CanaryStep{{Weight: 5, Verdict: verdict}}}}}
	srv := httptest.NewServer(f)
	defer srv.Close()

	code, out := run(t, srv.URL, "rollout", "--canary", "--steps", "5,25,50", "--step-time", "10s", "--max-error-rate", "2%",
		"--max-p99-ratio", "1.5", "--baseline", "stable", "--canary-replicas", "2", "predictor:1.1.0")
	assert.Equal(t, 1, code, out)
	require.Len(t, f.got, 1)
	assert.Equal(t, &api.CanaryOptions{Steps: []int{5, 25, 50}, StepTime: api.Duration(10 * time.Second), Replicas: 2,
		Baseline: "stable", MaxErrorRate: 0.02, MaxP99Ratio: 1.5, MinRequests: 200, P99Slack: api.Duration(5 * time.Millisecond)},
		f.got[0].Canary)
	assert.Contains(t, strings.Join(progressLines(f.ro), "\n"), "r1 canary step 1 (5 %): fail: canary error rate 5.0 %",
		"the plain progress lines name each step's verdict")

	code, out = run(t, srv.URL, "rollout", "status")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "canary on host-1: failed")
	assert.Contains(t, out, "1     5 %     canary    400       20 (5.00 %)  2ms  9ms  fail")

	code, _ = run(t, srv.URL, "rollout", "predictor:1.1.0")
	assert.Equal(t, 1, code)
	assert.Nil(t, f.got[1].Canary, "no canary without --canary")

	for _, tc := range []struct{ args, want string }{
		{"--canary --steps 25,5", `--steps "25,5": must be ascending`},
		{"--canary --steps 0", "from 1 to 99 %"},
		{"--canary --steps 5,x", "want percentages"},
		{"--canary --max-error-rate 0", "--max-error-rate"},
		{"--canary --max-error-rate 101%", "--max-error-rate"},
		{"--canary --max-p99-ratio 1", "must be above 1"},
		{"--canary --min-requests 49", "at least 50"},
		{"--canary --canary-replicas 0", "from 1 to 16"},
		{"--canary --baseline yesterday", "want fresh or stable"},
		{"--canary --step-time 10s --step-deadline 5s", "at least --step-time"},
		{"--step-time 10s", "--step-time is a canary setting: add --canary"},
	} {
		code, out := run(t, srv.URL, append(append([]string{"rollout"}, strings.Fields(tc.args)...), "predictor:1.1.0")...)
		assert.Equal(t, 2, code, "%s: %s", tc.args, out)
		assert.Contains(t, out, tc.want, tc.args)
	}
	assert.Len(t, f.got, 2, "nothing sent for bad flags")
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]float64{"1%": 0.01, "0.5 %": 0.005, "0.01": 0.01, "100%": 1, "1": 1} {
		got, err := parseRate(in)
		require.NoError(t, err, in)
		assert.InDelta(t, want, got, 1e-12, in)
	}
	for _, bad := range []string{"0", "-1%", "NaN", "1.5", "", "%"} {
		_, err := parseRate(bad)
		assert.Error(t, err, bad)
	}
}
