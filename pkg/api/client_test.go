package api

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
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
	_, err = c.AbortRollout(ctx, "")
	assert.NoError(t, err)
}

// The client's errors are values a caller branches on, and name no
// command's flags: the program using the client knows how it was told the
// address and the token.
func TestClientErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/members":
			if r.Header.Get("Authorization") != "Bearer s3cret" {
				answer(w, http.StatusUnauthorized, Error{Error: "missing or wrong token"})
				return
			}
			answer(w, http.StatusOK, []Member{{Name: "n1"}})
		case "/v1/rollouts":
			answer(w, http.StatusConflict, Error{Error: "a rollout is already running"})
		case "/v1/backends":
			w.WriteHeader(http.StatusInternalServerError)
		default:
			_, _ = w.Write([]byte("<html>not herd</html>"))
		}
	}))
	defer srv.Close()
	ctx := context.Background()

	_, err := NewClient(srv.URL, "wrong").Members(ctx)
	assert.ErrorIs(t, err, ErrUnauthorized)
	ms, err := NewClient(srv.URL, "s3cret").Members(ctx)
	require.NoError(t, err)
	assert.Equal(t, []Member{{Name: "n1"}}, ms)

	_, err = NewClient(srv.URL, "").StartRollout(ctx, RolloutOptions{Image: "x:1"})
	var se *StatusError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, http.StatusConflict, se.Status)
	assert.Equal(t, "a rollout is already running", err.Error())

	_, err = NewClient(srv.URL, "").Backends(ctx)
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "500 Internal Server Error /v1/backends", se.Msg)

	_, err = NewClient(srv.URL, "").Replicas(ctx)
	assert.ErrorContains(t, err, "/v1/replicas answered something that is not Herd's API")

	srv.Close()
	_, err = NewClient(strings.TrimPrefix(srv.URL, "http://"), "").Members(ctx)
	var ue *UnreachableError
	require.ErrorAs(t, err, &ue)
	assert.Equal(t, srv.URL, ue.Addr, "host:port means http")
	assert.Contains(t, err.Error(), "cannot reach "+srv.URL+": dial tcp ")
	assert.NotContains(t, err.Error(), `Get "`, "the address is said once")

	for _, err := range []error{ErrUnauthorized, ErrNoCertificate, se, ue} {
		assert.NotContains(t, err.Error(), "--")
		assert.NotContains(t, err.Error(), "HERD_")
	}
}

func TestWithCA(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		answer(w, http.StatusOK, []Member{{Name: "n1"}})
	}))
	defer srv.Close()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	require.NoError(t, os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600))
	ctx := context.Background()

	_, err := NewClient(srv.URL, "").Members(ctx)
	var ue *UnreachableError
	assert.ErrorAs(t, err, &ue, "an unknown authority fails the handshake")

	c, err := NewClient(srv.URL, "").WithCA(ca)
	require.NoError(t, err)
	ms, err := c.Members(ctx)
	require.NoError(t, err)
	assert.Equal(t, []Member{{Name: "n1"}}, ms)

	_, err = NewClient(srv.URL, "").WithCA(filepath.Join(dir, "missing.pem"))
	assert.ErrorIs(t, err, fs.ErrNotExist)
	notPEM := filepath.Join(dir, "not.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("hello"), 0o600))
	_, err = NewClient(srv.URL, "").WithCA(notPEM)
	assert.ErrorIs(t, err, ErrNoCertificate)
	assert.Contains(t, err.Error(), notPEM)
}

// TestStandardLibraryOnly: the package links nothing but the standard
// library, so any program can import it without the gateway's dependencies.
func TestStandardLibraryOnly(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Equal(t, []string{"github.com/herd-cluster/herd/pkg/api"}, strings.Fields(string(out)))
}
