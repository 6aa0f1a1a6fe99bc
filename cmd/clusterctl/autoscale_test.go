package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/api"
)

// TestAutoscaleFlagsFromEnvironment: every setting may come from its
// HERD_AUTOSCALE_* variable, and a flag after the service wins over it.
func TestAutoscaleFlagsFromEnvironment(t *testing.T) {
	var got api.AutoscaleRequest
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.Equal(t, "/v1/services/predictor/autoscale", r.URL.Path)
		require.NoError(t, json.NewDecoder(r.Body).Decode(&got))
		answer(w, http.StatusOK, api.AutoscaleResult{Service: "predictor", Settings: got.AutoscaleSettings})
	}))
	defer srv.Close()
	t.Setenv("HERD_AUTOSCALE_MIN", "2")
	t.Setenv("HERD_AUTOSCALE_MAX", "9")
	t.Setenv("HERD_AUTOSCALE_TARGET_INFLIGHT", "4")
	t.Setenv("HERD_AUTOSCALE_STABLE_WINDOW", "30s")
	t.Setenv("HERD_AUTOSCALE_FLAP_BUDGET", "3")

	code, out := run(t, srv.URL, "autoscale", "predictor", "--max", "12")
	require.Equal(t, 0, code, out)
	assert.Equal(t, api.AutoscaleSettings{Min: 2, Max: 12, TargetInFlight: 4, StableWindow: "30s", FlapBudget: 3}, got.AutoscaleSettings)
	assert.Contains(t, out, "autoscaling predictor: 2 to 12 replicas, 4 requests in flight each")
}
