package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/api"
	"github.com/herd-cluster/herd/pkg/autoscale"
)

// autoscaler keeps what it was set, as the gateway's would.
type autoscaler struct{ set map[string]autoscale.Settings }

func (a *autoscaler) Set(_ context.Context, svc string, s autoscale.Settings) ([]string, error) {
	if svc == "nosuch" {
		return nil, autoscale.ErrNoSuchService
	}
	a.set[svc] = s
	return []string{"gw-2"}, nil
}

func (a *autoscaler) Off(_ context.Context, svc string) ([]string, error) {
	if _, ok := a.set[svc]; !ok {
		return nil, autoscale.ErrUnknownService
	}
	delete(a.set, svc)
	return nil, nil
}

func (a *autoscaler) Status() []autoscale.Status {
	var out []autoscale.Status
	for svc, s := range a.set {
		out = append(out, autoscale.Status{Service: svc, Settings: s, Deciding: true, Current: 2, Desired: 3,
			Events: []autoscale.Event{{At: time.Unix(0, 0).UTC(), From: 2, To: 3, Reason: "2 → 3: panic"}}})
	}
	return out
}

func (a *autoscaler) Decider() string { return "gw-1" }

// TestAutoscaleEndpoints: settings with their defaults filled in, bad
// ones refused 400 naming the field, an unknown service 400, off of what
// is not on 404, and the status.
func TestAutoscaleEndpoints(t *testing.T) {
	a := &autoscaler{set: map[string]autoscale.Settings{}}
	s := NewServer("", hclog.NewNullLogger())
	s.HandleAutoscale(a, "gw-1")

	code, body := post(t, s, "/v1/services/predictor/autoscale", `{"min":1,"max":12,"target_inflight":4,"panic_window":"2s"}`)
	require.Equal(t, http.StatusOK, code, body)
	var res api.AutoscaleResult
	require.NoError(t, json.Unmarshal([]byte(body), &res))
	assert.Equal(t, []string{"gw-2"}, res.Missing)
	assert.Equal(t, "2s", res.Settings.PanicWindow)
	assert.Equal(t, "1m0s", res.Settings.StableWindow, "defaults filled in")
	assert.Equal(t, 2*time.Second, a.set["predictor"].PanicWindow)

	for req, want := range map[string]string{
		`{"min":5,"max":3,"target_inflight":4}`:                "max 3: want at least 1 and at least min 5",
		`{"max":3,"target_inflight":-1}`:                       "target in flight -1: want more than 0",
		`{"max":3,"target_inflight":4,"stable_window":"soon"}`: `stable window "soon": want a duration such as 60s`,
		`{"max":3,"target_inflight":4,"panic_window":"2m"}`:    "windows: panic 2m0s, stable 1m0s: want 0 < panic < stable",
		`{"max":3,"target_inflight":4,"tolerance":1.5}`:        "tolerance 1.5: want 0 to less than 1",
		`{"max":3,"target_inflight":4,"surprise":1}`:           "surprise",
	} {
		code, body := post(t, s, "/v1/services/predictor/autoscale", req)
		assert.Equal(t, http.StatusBadRequest, code, req)
		assert.Contains(t, errorOf(t, body), want, req)
	}
	code, body = post(t, s, "/v1/services/nosuch/autoscale", `{"max":3,"target_inflight":4}`)
	assert.Equal(t, http.StatusBadRequest, code)
	assert.Contains(t, errorOf(t, body), "no such service")
	code, body = post(t, s, "/v1/services/tone/autoscale", `{"off":true}`)
	assert.Equal(t, http.StatusNotFound, code)
	assert.Equal(t, `autoscaling of service "tone" is not on`, errorOf(t, body))

	code, body = get(t, s, "/v1/autoscale")
	require.Equal(t, http.StatusOK, code)
	var st api.AutoscaleStatus
	require.NoError(t, json.Unmarshal([]byte(body), &st))
	assert.Equal(t, "gw-1", st.Decider)
	require.Len(t, st.Services, 1)
	assert.Equal(t, 12, st.Services[0].Settings.Max)
	assert.Equal(t, "2 → 3: panic", st.Services[0].Events[0].Reason)

	code, _ = post(t, s, "/v1/services/predictor/autoscale", `{"off":true}`)
	assert.Equal(t, http.StatusOK, code)
	assert.Empty(t, a.set)
}

// errorOf is the error an admin API answer carries.
func errorOf(t *testing.T, body string) string {
	t.Helper()
	var e struct{ Error string }
	require.NoError(t, json.Unmarshal([]byte(body), &e), body)
	return e.Error
}
