package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/urfave/cli/v2"

	"github.com/herd-cluster/herd/pkg/api"
)

// run runs clusterctl against the admin API at addr and returns its exit
// code and what it printed.
func run(t *testing.T, addr string, args ...string) (int, string) {
	t.Helper()
	app := newApp()
	var out bytes.Buffer
	app.Writer, app.ErrWriter = &out, &out
	app.ExitErrHandler = func(*cli.Context, error) {}
	err := app.Run(append([]string{"clusterctl", "--addr", addr}, args...))
	var ec cli.ExitCoder
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &ec):
		return ec.ExitCode(), err.Error()
	}
	return 1, err.Error()
}

// answer writes v as the admin API would.
func answer(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// TestKeyOperationExitCodes: a key operation that failed on some member
// (the gateway answers 502 naming it) exits with 1, something was done; a
// key the gateway refuses (400) exits with 2, nothing was.
func TestKeyOperationExitCodes(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/keys/use":
			answer(w, http.StatusBadGateway, api.KeyResult{Members: 3, Responses: 2, Error: "host-3: key not installed"})
		default:
			answer(w, http.StatusBadRequest, api.Error{Error: "gossip key is not valid base64"})
		}
	}))
	defer srv.Close()

	code, msg := run(t, srv.URL, "keys", "use", "a2V5")
	assert.Equal(t, 1, code)
	assert.Contains(t, msg, "host-3: key not installed")
	code, msg = run(t, srv.URL, "keys", "install", "not-a-key")
	assert.Equal(t, 2, code)
	assert.Contains(t, msg, "not valid base64")
	code, _ = run(t, srv.URL, "keys", "install")
	assert.Equal(t, 2, code, "no KEY")
	code, msg = run(t, "127.0.0.1:1", "members")
	require.Equal(t, 2, code)
	assert.Contains(t, msg, "cannot reach")
}

// TestErrorsNameTheFlags: the API client says what went wrong; clusterctl
// adds the flags (and variables) that set it right.
func TestErrorsNameTheFlags(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		answer(w, http.StatusUnauthorized, api.Error{Error: "missing or wrong token"})
	}))
	defer srv.Close()
	code, msg := run(t, srv.URL, "backends")
	assert.Equal(t, 2, code)
	assert.Equal(t, "unauthorized: wrong or missing token (--token, HERD_TOKEN)", msg)

	srv.Close()
	addr := srv.URL
	for _, args := range [][]string{{"members"}, {"rollout", "status"}, {"keys", "list"}} {
		code, msg = run(t, addr, args...)
		assert.Equal(t, 2, code, args)
		assert.Regexp(t, `^cannot reach `+addr+`: dial tcp .*: connection refused \(is a gateway's admin API there\? set --addr or HERD_ADDR\)$`, msg, args)
	}
	code, msg = run(t, addr, "rollout", "predictor:1.1.0")
	assert.Equal(t, 2, code)
	assert.Regexp(t, `^rollout refused: cannot reach .* \(is a gateway's admin API there\? set --addr or HERD_ADDR\)$`, msg)
}
