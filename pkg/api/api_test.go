package api

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
