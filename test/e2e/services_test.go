package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/api"
)

// getAs asks the gateway for path with the Host header host and returns
// the status and the body.
func getAs(t *testing.T, url, host, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url+path, nil)
	require.NoError(t, err)
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// instanceOf is the replica that answered a /version body.
func instanceOf(body string) string {
	var v version
	_ = json.Unmarshal([]byte(body), &v)
	return v.Instance
}

func routing(t *testing.T, g *gatewayProc) api.Routing {
	t.Helper()
	r, err := g.client().Routes(context.Background())
	require.NoError(t, err)
	return r
}

// routeState is a service's claim on a route as the gateway reports it:
// its state, and who holds it on a conflict.
func routeState(r api.Routing, host, path, service string) string {
	for _, rt := range r.Routes {
		if rt.Host == host && rt.Path == path && rt.Service == service {
			return strings.TrimSpace(rt.State + " " + rt.HeldBy)
		}
	}
	return "absent"
}

// TestServices: one gateway, two services on three agents, routed by Host
// and by path. A rollout of one under load on both fails no request and
// leaves the other untouched; rollouts of two services run at once; a new
// service's first route is served within 0.3 s of its agent announcing it;
// a conflicting claim is refused and reported, and gets the route once the
// first claimant leaves.
func TestServices(t *testing.T) {
	g := startGateway(t)
	startAgent(t, g, "pred-a", "127.0.0.2", 2, "--service", "predictor", "--route", "api.example.com")
	startAgent(t, g, "pred-b", "127.0.0.3", 2, "--service", "predictor", "--route", "api.example.com")
	tone := startAgent(t, g, "tone-a", "127.0.0.4", 2, "--service", "tone",
		"--route", "tone.example.com", "--route", "/tone", "--strip-prefix")
	g.waitBackends(t, 6, 30*time.Second)

	// Routed by Host (without case and port) and by path, the prefix
	// stripped; what no route takes is 404 with the request id.
	for range 10 {
		code, body := getAs(t, g.url, "tone.example.com", "/version")
		require.Equal(t, http.StatusOK, code, body)
		assert.True(t, strings.HasPrefix(instanceOf(body), "tone-a/"), "tone.example.com reaches only tone: %s", body)
		code, body = getAs(t, g.url, "API.Example.COM:8080", "/version")
		require.Equal(t, http.StatusOK, code, body)
		assert.True(t, strings.HasPrefix(instanceOf(body), "pred-"), "api.example.com reaches predictor: %s", body)
		code, body = getAs(t, g.url, "elsewhere.test", "/tone/version")
		require.Equal(t, http.StatusOK, code, body)
		assert.True(t, strings.HasPrefix(instanceOf(body), "tone-a/"), "/tone reaches tone, as /version: %s", body)
	}
	code, body := getAs(t, g.url, "elsewhere.test", "/version")
	assert.Equal(t, http.StatusNotFound, code)
	assert.Contains(t, body, "herd gateway: no route for this host and path")
	assert.Contains(t, body, "request id")

	// clusterctl shows the routes and each service's backends.
	out, code := g.clusterctl(t, "routes")
	require.Zero(t, code, out)
	assert.Regexp(t, `tone\.example\.com\s+/\s+tone\s+2\s+ok`, out)
	assert.Regexp(t, `\*\s+/tone \(stripped\)\s+tone\s+2\s+ok`, out)
	assert.Regexp(t, `api\.example\.com\s+/\s+predictor\s+4\s+ok`, out)
	assert.Contains(t, out, "requests no route matches are answered 404")
	out, code = g.clusterctl(t, "backends", "--service", "tone", "--json")
	require.Zero(t, code, out)
	var bs []api.Backend
	require.NoError(t, json.Unmarshal([]byte(out), &bs))
	require.Len(t, bs, 2)
	for _, b := range bs {
		assert.Equal(t, "tone", b.Service)
	}

	// A rollout of tone under load on both services.
	predBefore := backendsOf(t, g, "predictor")
	lp := startHostLoad(t, g.url, "api.example.com", 50)
	lt := startHostLoad(t, g.url, "tone.example.com", 50)
	out, code = g.clusterctl(t, "rollout", "predictor:1.1.0")
	assert.Equal(t, 2, code)
	assert.Contains(t, out, "several services (predictor, tone): name one (--service)")
	out, code = g.clusterctl(t, "rollout", "--service", "tone", "--min-healthy", "1s", "--detach", "--json", "predictor:1.1.0")
	require.Zero(t, code, out)
	var first api.Rollout
	require.NoError(t, json.Unmarshal([]byte(out), &first))
	assert.Equal(t, "tone", first.Service)
	out, code = g.clusterctl(t, "rollout", "--service", "tone", "predictor:1.0.0")
	assert.Equal(t, 2, code, "a second rollout of the same service is refused")
	assert.Contains(t, out, `service "tone" is being rolled out to predictor:1.1.0`)
	assert.Contains(t, out, "clusterctl rollout abort --service tone")
	waitRollout(t, g, "tone", first.ID)
	assert.Equal(t, predBefore, backendsOf(t, g, "predictor"), "predictor's backends untouched")
	for range 10 {
		_, body := getAs(t, g.url, "api.example.com", "/version")
		assert.Contains(t, body, `"version":"1.0.0"`)
		_, body = getAs(t, g.url, "tone.example.com", "/version")
		assert.Contains(t, body, `"version":"1.1.0"`)
	}

	// Two services' rollouts at once: tone back, predictor forward.
	out, code = g.clusterctl(t, "rollback", "--service", "tone", "--min-healthy", "1s", "--detach", "--json")
	require.Zero(t, code, out)
	var back api.Rollout
	require.NoError(t, json.Unmarshal([]byte(out), &back))
	out, code = g.clusterctl(t, "rollout", "--service", "predictor", "--min-healthy", "1s", "--detach", "--json", "predictor:1.1.0")
	require.Zero(t, code, "another service's rollout runs at the same time: %s", out)
	var pred api.Rollout
	require.NoError(t, json.Unmarshal([]byte(out), &pred))
	waitRollout(t, g, "tone", back.ID)
	waitRollout(t, g, "predictor", pred.ID)
	lp.finish()
	lt.finish()
	t.Logf("MEASURE rollouts under load on two services: predictor sent=%d failed=%d, tone sent=%d failed=%d",
		lp.sent.Load(), lp.failed.Load(), lt.sent.Load(), lt.failed.Load())
	assert.Zero(t, lp.failed.Load(), "predictor: %s", lp.failures())
	assert.Zero(t, lt.failed.Load(), "tone: %s", lt.failures())
	out, code = g.clusterctl(t, "rollout", "history", "--service", "tone", "--json")
	require.Zero(t, code, out)
	var history []api.Rollout
	require.NoError(t, json.Unmarshal([]byte(out), &history))
	require.Len(t, history, 2)
	assert.Equal(t, []string{"tone", "tone"}, []string{history[0].Service, history[1].Service})
	out, code = g.clusterctl(t, "rollout", "history")
	require.Zero(t, code, out)
	assert.Equal(t, 3, strings.Count(out, " succeeded "), "every service's history: %s", out)

	// A new service's first route is served within 0.3 s of its agent
	// announcing its healthy replicas.
	late := startAgent(t, g, "late-a", "127.0.0.5", 1, "--service", "late", "--route", "late.example.com", "--log-json")
	var served time.Time
	require.Eventually(t, func() bool {
		code, body := getAs(t, g.url, "late.example.com", "/version")
		served = time.Now()
		return code == http.StatusOK && strings.HasPrefix(instanceOf(body), "late-a/")
	}, 30*time.Second, 2*time.Millisecond)
	healthy := logTime(t, late.output(), "replicas healthy")
	took := served.Sub(healthy)
	t.Logf("MEASURE new service: replicas healthy (announced) to its first route served: %s", took.Round(time.Millisecond))
	assert.Less(t, took, 300*time.Millisecond)

	// A conflicting claim: refused, reported, logged once; the route stays
	// tone's.
	startAgent(t, g, "rogue-a", "127.0.0.6", 1, "--service", "rogue", "--route", "tone.example.com")
	require.Eventually(t, func() bool {
		return routeState(routing(t, g), "tone.example.com", "/", "rogue") == "conflict tone"
	}, 30*time.Second, 20*time.Millisecond)
	out, _ = g.clusterctl(t, "routes")
	assert.Regexp(t, `tone\.example\.com\s+/\s+rogue\s+1\s+conflict \(held by tone\)`, out)
	for range 10 {
		_, body := getAs(t, g.url, "tone.example.com", "/version")
		assert.True(t, strings.HasPrefix(instanceOf(body), "tone-a/"), "the route stays tone's: %s", body)
	}
	assert.Contains(t, metrics(t, g), "herd_gateway_route_conflicts 1")
	assert.Equal(t, 1, strings.Count(g.output(), "route refused: another service claimed it first"), "logged once")

	// The first claimant leaves: the newcomer gets the route.
	tone.stop(t, 30*time.Second)
	require.Eventually(t, func() bool {
		_, body := getAs(t, g.url, "tone.example.com", "/version")
		return strings.HasPrefix(instanceOf(body), "rogue-a/")
	}, 30*time.Second, 20*time.Millisecond)
	assert.Equal(t, "ok", routeState(routing(t, g), "tone.example.com", "/", "rogue"))
	assert.Contains(t, metrics(t, g), "herd_gateway_route_conflicts 0")
}

// backendsOf is a service's backends at the gateway, "addr state".
func backendsOf(t *testing.T, g *gatewayProc, service string) []string {
	t.Helper()
	var out []string
	for _, b := range g.backends(t) {
		if b.Service == service {
			out = append(out, b.Addr+" "+b.State)
		}
	}
	return out
}

// waitRollout waits for a service's rollout to succeed.
func waitRollout(t *testing.T, g *gatewayProc, service, id string) {
	t.Helper()
	var r api.Rollout
	require.Eventually(t, func() bool {
		var err error
		r, err = g.client().Rollout(context.Background(), service, id)
		return err == nil && r.Done()
	}, 60*time.Second, 50*time.Millisecond)
	require.True(t, r.Succeeded(), "rollout %s of %s: %s %s", id, service, r.State, r.Message)
}

func metrics(t *testing.T, g *gatewayProc) string {
	t.Helper()
	resp, err := http.Get("http://" + g.admin + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// logTime is the time of the first JSON log line whose message is msg.
func logTime(t *testing.T, output, msg string) time.Time {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(output))
	for sc.Scan() {
		var line struct {
			Time string `json:"@timestamp"`
			Msg  string `json:"@message"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == msg {
			at, err := time.Parse(time.RFC3339Nano, line.Time)
			require.NoError(t, err)
			return at
		}
	}
	t.Fatalf("no log line %q in:\n%s", msg, output)
	return time.Time{}
}
