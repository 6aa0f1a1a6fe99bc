package api

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/rollout"
)

func TestTokenGuardsEverythingButHealthz(t *testing.T) {
	s := NewServer("s3cret", hclog.NewNullLogger())
	s.HandleJSON("/v1/members", func(*http.Request) (any, error) { return []Member{{Name: "n1"}}, nil })
	s.HandleJSON("/v1/backends", func(*http.Request) (any, error) { return nil, errors.New("boom") })
	srv := httptest.NewServer(s)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)

	ctx := context.Background()
	_, err = NewClient(srv.URL, "").Members(ctx)
	assert.ErrorIs(t, err, ErrUnauthorized)
	_, err = NewClient(srv.URL, "s3cre").Members(ctx)
	assert.ErrorIs(t, err, ErrUnauthorized)
	ms, err := NewClient(srv.URL, "s3cret").Members(ctx)
	require.NoError(t, err)
	assert.Equal(t, []Member{{Name: "n1"}}, ms)
	_, err = NewClient(srv.URL, "s3cret").Backends(ctx)
	assert.ErrorContains(t, err, "boom")
}

// A call that the gateway answers slowly on purpose (starting a rollout
// waits for every agent's answer) outlives the client's ordinary timeout.
func TestClientTimeouts(t *testing.T) {
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		WriteJSON(w, http.StatusOK, map[string]any{})
	})
	srv := httptest.NewServer(slow)
	defer srv.Close()
	c := NewClient(srv.URL, "")
	c.Timeout = 100 * time.Millisecond
	ctx := context.Background()

	_, err := c.Members(ctx)
	require.Error(t, err, "an ordinary call is bounded by Timeout")
	assert.Contains(t, err.Error(), "deadline exceeded")
	_, err = c.StartRollout(ctx, rollout.Options{Image: "predictor:1.1.0"})
	assert.NoError(t, err)
	_, err = c.Rollback(ctx, rollout.Options{})
	assert.NoError(t, err)
	_, err = c.AbortRollout(ctx)
	assert.NoError(t, err)
}
