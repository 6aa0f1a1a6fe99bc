package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func answer(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// A call that the gateway answers slowly on purpose (starting a rollout
// waits for every agent's answer) outlives the client's ordinary timeout.
func TestClientTimeouts(t *testing.T) {
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		answer(w, http.StatusOK, map[string]any{})
	})
	srv := httptest.NewServer(slow)
	defer srv.Close()
	c := NewClient(srv.URL, "")
	c.Timeout = 100 * time.Millisecond
	ctx := context.Background()

	_, err := c.Members(ctx)
	require.Error(t, err, "an ordinary call is bounded by Timeout")
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	_, err = c.StartRollout(ctx, RolloutOptions{Image: "predictor:1.1.0"})
	assert.NoError(t, err)
	_, err = c.Rollback(ctx, RolloutOptions{})
	assert.NoError(t, err)
	_, err = c.AbortRollout(ctx)
	assert.NoError(t, err)
}

// TestStandardLibraryOnly: the package links nothing but the standard
// library, so any program can import it without the gateway's dependencies.
func TestStandardLibraryOnly(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Equal(t, []string{"github.com/herd-cluster/herd/pkg/api"}, strings.Fields(string(out)))
}
