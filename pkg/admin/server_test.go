package admin

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/api"
)

func TestTokenGuardsEverythingButHealthz(t *testing.T) {
	s := NewServer("s3cret", hclog.NewNullLogger())
	s.handleJSON("/v1/members", func(*http.Request) (any, error) { return []api.Member{{Name: "n1"}}, nil })
	s.handleJSON("/v1/backends", func(*http.Request) (any, error) { return nil, errors.New("boom") })
	srv := httptest.NewServer(s)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)

	resp, err = http.Get(srv.URL + "/v1/members")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	assert.Equal(t, `Bearer realm="herd"`, resp.Header.Get("WWW-Authenticate"))
	assert.NotContains(t, string(body), "--", "the server names no command's flags")

	ctx := context.Background()
	_, err = api.NewClient(srv.URL, "").Members(ctx)
	assert.ErrorIs(t, err, api.ErrUnauthorized)
	_, err = api.NewClient(srv.URL, "s3cre").Members(ctx)
	assert.ErrorIs(t, err, api.ErrUnauthorized)
	ms, err := api.NewClient(srv.URL, "s3cret").Members(ctx)
	require.NoError(t, err)
	assert.Equal(t, []api.Member{{Name: "n1"}}, ms)
	_, err = api.NewClient(srv.URL, "s3cret").Backends(ctx)
	assert.ErrorContains(t, err, "boom")
}

// get answers a GET of path on s with its status and body.
func get(t *testing.T, s http.Handler, path string) (int, string) {
	t.Helper()
	w := httptest.NewRecorder()
	s.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
	return w.Code, w.Body.String()
}

// post answers a POST of body to path on s with its status and body.
func post(t *testing.T, s http.Handler, path, body string) (int, string) {
	t.Helper()
	w := httptest.NewRecorder()
	s.ServeHTTP(w, httptest.NewRequest(http.MethodPost, path, strings.NewReader(body)))
	return w.Code, w.Body.String()
}
