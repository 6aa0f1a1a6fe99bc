package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(newHandler(handlerConfig{Version: "1.1.0", Instance: "node-a/3"}))
	defer srv.Close()

	resp, err := http.Post(srv.URL+"/predict", "application/json", strings.NewReader(`{"text":"I love it"}`))
	require.NoError(t, err)
	var out struct {
		Label, Version, Instance string
		Scores                   map[string]float64
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	resp.Body.Close()
	assert.Equal(t, "joy", out.Label)
	assert.Equal(t, "1.1.0", out.Version)
	assert.Equal(t, "node-a/3", out.Instance)
	assert.Len(t, out.Scores, 5)

	for _, body := range []string{`{"txt":"x"}`, `not json`, `{"text": 3}`} {
		resp, err = http.Post(srv.URL+"/predict", "application/json", strings.NewReader(body))
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
	}
	resp, err = http.Post(srv.URL+"/predict", "application/json", strings.NewReader(`{"text":"`+strings.Repeat("a", 70<<10)+`"}`))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)

	// GET /predict?text= scores the same way; without text it is refused.
	resp, err = http.Get(srv.URL + "/predict?text=I+love+it")
	require.NoError(t, err)
	var got struct{ Label, Version string }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "joy", got.Label)
	assert.Equal(t, "1.1.0", got.Version)
	resp, err = http.Get(srv.URL + "/predict")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)

	resp, err = http.Get(srv.URL + "/version")
	require.NoError(t, err)
	var v map[string]string
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&v))
	resp.Body.Close()
	assert.Equal(t, map[string]string{"version": "1.1.0", "instance": "node-a/3"}, v)
}

func TestBrokenBuildFailsHealth(t *testing.T) {
	for broken, want := range map[bool]int{false: 200, true: 500} {
		srv := httptest.NewServer(newHandler(handlerConfig{Version: "9.9.9", Instance: "x", Broken: broken}))
		resp, err := http.Get(srv.URL + "/healthz")
		require.NoError(t, err)
		resp.Body.Close()
		srv.Close()
		assert.Equal(t, want, resp.StatusCode)
	}
}

func TestStreamEndpoints(t *testing.T) {
	srv := httptest.NewServer(newHandler(handlerConfig{Version: "1.0.0", Instance: "x"}))
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/bytes?n=100000")
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Len(t, b, 100000)
	assert.Equal(t, "100000", resp.Header.Get("Content-Length"))
	for _, q := range []string{"n=-1", "n=x", ""} {
		resp, err = http.Get(srv.URL + "/bytes?" + q)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, q)
	}

	resp, err = http.Post(srv.URL+"/discard", "application/octet-stream", strings.NewReader(strings.Repeat("z", 3<<20)))
	require.NoError(t, err)
	var out map[string]int64
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	resp.Body.Close()
	assert.Equal(t, int64(3<<20), out["bytes"])
}

// TestWork: GET /work?ms=N answers after N ms, so a load test controls
// how many requests are in flight; bad values are refused.
func TestWork(t *testing.T) {
	srv := httptest.NewServer(newHandler(handlerConfig{Version: "1.0.0", Instance: "x"}))
	defer srv.Close()
	began := time.Now()
	resp, err := http.Get(srv.URL + "/work?ms=150")
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	resp.Body.Close()
	assert.GreaterOrEqual(t, time.Since(began), 150*time.Millisecond)
	assert.Equal(t, 150.0, out["ms"])
	for _, q := range []string{"ms=-1", "ms=x", "", "ms=60001"} {
		resp, err = http.Get(srv.URL + "/work?" + q)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, q)
	}
}
