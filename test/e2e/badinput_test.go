package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/internal/testutil"
	"github.com/herd-cluster/herd/pkg/membership"
)

// runBinary runs a binary to completion and returns its exit code and the
// last line of its output.
func runBinary(t *testing.T, args ...string) (int, string) {
	t.Helper()
	return runBinaryEnv(t, nil, args...)
}

// runBinaryEnv is runBinary with env added to a minimal environment.
func runBinaryEnv(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	out, code := runToEnd(t, append([]string{"PATH=/usr/bin:/bin"}, env...), args...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return code, lines[len(lines)-1]
}

// runToEnd runs one of the built binaries with exactly env and returns its
// whole output and exit code.
func runToEnd(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, args[0]), args[1:]...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return string(out), code
}

func TestAgentBadInput(t *testing.T) {
	// Parallel, with TestAutoscale: see harness_test.go.
	t.Parallel()
	buildAll(t)
	busy, err := net.Listen("tcp", "127.0.0.5:0")
	require.NoError(t, err)
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port

	gossip := fmt.Sprintf("127.0.0.5:%d", testutil.FreePortRange(t, 1, "127.0.0.5"))
	base := []string{"agent", "join", "--node", "bad", "--bind", gossip, "--join", "127.0.0.1:1",
		"--admin", "127.0.0.5:0", "--runtime", "process", "--images-dir", filepath.Join(binDir, "images"),
		"--data-dir", t.TempDir()}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown runtime", []string{"--runtime", "lxc"}, `--runtime "lxc": want docker or process`},
		{"no replicas", []string{"--replicas", "0"}, "--replicas 0: must be between 1 and 1000"},
		{"too many replicas", []string{"--replicas", "1001"}, "--replicas 1001: must be between 1 and 1000"},
		{"ports beyond 65535", []string{"--base-port", "65530", "--replicas", "10"}, "needs ports up to 65539, beyond 65535"},
		{"image not in images dir", []string{"--image", "predictor:9.9.9"}, "predictor:9.9.9 has no executable at"},
		{"malformed image", []string{"--image", "predictor"}, "want name:tag"},
		{"port in use", []string{"--base-port", fmt.Sprint(busyPort), "--host-ip", "127.0.0.5"},
			fmt.Sprintf("port %d on 127.0.0.5: port already in use", busyPort)},
		{"bad gossip key", []string{"--encrypt", "c2hvcnQ="}, "gossip key is 5 bytes"},
		{"bad log level", []string{"--log-level", "loud"}, "--log-level"},
		{"route with a scheme", []string{"--route", "http://api.example.com/x"},
			`--route: route "http://api.example.com/x": no scheme: a route is a host and a path prefix`},
		{"route with a query", []string{"--route", "/predict?x=1"}, `route "/predict?x=1": no query or fragment`},
		{"route with a port", []string{"--route", "api.example.com:8080/x"}, `host "api.example.com:8080": want a name such as`},
		{"route with a bad path", []string{"--route", "/a b"}, `route "/a b": path "/a b": not a valid path prefix`},
		{"empty service", []string{"--service", ""}, `--service "": want lower-case letters`},
		{"too many routes", []string{"--route", strings.Repeat("/r,", 100) + "/r"}, "101 routes: at most 100 per service"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, last := runBinary(t, append(base, c.args...)...)
			assert.NotZero(t, code)
			assert.True(t, strings.HasPrefix(last, "agent: "), "one clear line, got %q", last)
			assert.Contains(t, last, c.want)
		})
	}

	// No join address at all (HERD_JOIN unset).
	code, last := runBinary(t, "agent", "join", "--node", "bad", "--runtime", "process",
		"--images-dir", filepath.Join(binDir, "images"), "--host-ip", "127.0.0.5")
	assert.NotZero(t, code)
	assert.Contains(t, last, "no join address: give --join or HERD_JOIN")
}

func TestGatewayBadInput(t *testing.T) {
	// Parallel, with TestAutoscale: see harness_test.go.
	t.Parallel()
	buildAll(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	code, last := runBinary(t, "gateway", "run", "--listen", busy.Addr().String(), "--bind", "127.0.0.1:0")
	assert.NotZero(t, code)
	assert.Equal(t, fmt.Sprintf("gateway: --listen: address %s already in use", busy.Addr()), last)

	code, last = runBinary(t, "gateway", "run", "--listen", "127.0.0.1:0", "--admin", "0.0.0.0:0", "--bind", "127.0.0.1:0")
	assert.NotZero(t, code)
	assert.Contains(t, last, "set --token")

	for flag, want := range map[string]string{
		"--health-rise=0":        "health rise 0 and fall 3: want at least 1",
		"--health-path=healthz":  `health path "healthz": want a path starting with /`,
		"--health-timeout=5s":    "health timeout 5s: want more than 0 and at most the interval 2s",
		"--retries=9":            "retries 9: want 0 to 7",
		"--access-log=sometimes": `access log "sometimes": want off, on or sampled`,
		"--balance=leastconn":    `balance "leastconn": want round-robin or least-request`,
		"--backend-max-conns=-1": "backend max conns -1: must not be negative",
		"--service=Tone":         `--service "Tone": want lower-case letters, digits, '.', '_' or '-', at most 63`,
		"--default-service=a b":  `--default-service "a b": want lower-case letters, digits, '.', '_' or '-', at most 63`,
		"--canary-pinning":       "--canary-pinning: the header is only honoured from --trusted-proxies; name them",
	} {
		code, last = runBinary(t, "gateway", "run", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--bind", "127.0.0.1:0",
			"--data-dir", t.TempDir(), flag)
		assert.Equal(t, 2, code, flag)
		assert.Equal(t, "gateway: "+want, last, flag)
	}
	code, last = runBinary(t, "gateway", "run", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--bind", "127.0.0.1:0",
		"--service", "tone", "--default-service", "predictor")
	assert.Equal(t, 2, code)
	assert.Equal(t, "gateway: --default-service: only with every service routed (no --service)", last)
}

// TestGatewayBalancingFlagsAndMetrics: the gateway started with every
// balancing flag set serves through a real agent, logs each request, and
// its /metrics shows the requests by backend.
func TestGatewayBalancingFlagsAndMetrics(t *testing.T) {
	g := startGateway(t, "--health-path", "/healthz", "--health-interval", "300ms", "--health-timeout", "200ms",
		"--health-rise", "1", "--health-fall", "2", "--balance", "least-request", "--slow-start", "1s", "--retries", "1",
		"--backend-max-conns", "4", "--queue-timeout", "2s", "--connect-timeout", "1s", "--response-header-timeout", "5s", "--client-idle-timeout", "10s", "--backend-idle-timeout", "4s",
		"--access-log", "on", "--log-json")
	startAgent(t, g, "flags-a", "127.0.0.2", 2)
	g.waitBackends(t, 2, 30*time.Second)
	time.Sleep(1100 * time.Millisecond) // past slow start
	// Least request picks at random between idle backends: 20 requests
	// reach both.
	for range 20 {
		_, err := getVersion(t, g.url)
		require.NoError(t, err)
	}
	resp, err := http.Get("http://" + g.admin + "/metrics")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	for _, b := range g.backends(t) {
		assert.Contains(t, string(body), fmt.Sprintf(`herd_gateway_requests_total{backend="%s",code="2xx",service="predictor"}`, b.Addr))
		assert.Equal(t, "up", b.State)
	}
	assert.Contains(t, string(body), `herd_gateway_membership_events_total{type="member-join"}`)
	assert.Contains(t, string(body), "herd_gateway_event_to_swap_seconds_count")
	assert.Contains(t, string(body), `herd_gateway_queued_requests{service="predictor"} 0`)
	require.Eventually(t, func() bool { return strings.Count(g.output(), `"@message":"request"`) >= 20 },
		5*time.Second, 20*time.Millisecond, "one access log line per request")
}

func TestClusterctlErrors(t *testing.T) {
	// Parallel, with TestAutoscale: see harness_test.go.
	t.Parallel()
	buildAll(t)
	code, last := runBinary(t, "clusterctl", "--addr", "127.0.0.1:1", "members")
	assert.Equal(t, 2, code, "unreachable: nothing was done")
	assert.Equal(t, "clusterctl: cannot reach http://127.0.0.1:1: dial tcp 127.0.0.1:1: connect: connection refused "+
		"(is a gateway's admin API there? set --addr or HERD_ADDR)", last)

	g := startGateway(t, "--token", "s3cret")
	code, last = runBinary(t, "clusterctl", "--addr", g.admin, "--token", "wrong", "backends")
	assert.Equal(t, 2, code)
	assert.Equal(t, "clusterctl: unauthorized: wrong or missing token (--token, HERD_TOKEN)", last)
	code, last = runBinary(t, "clusterctl", "--addr", g.admin, "--token", "s3cret", "backends")
	assert.Zero(t, code)
	assert.Contains(t, last, "ADDRESS")
}

// TestKeygen: `clusterctl keygen` prints a new 32-byte base64 key each time,
// one that the gateway accepts as --encrypt.
func TestKeygen(t *testing.T) {
	// Parallel, with TestAutoscale: see harness_test.go.
	t.Parallel()
	buildAll(t)
	out1, code := runToEnd(t, os.Environ(), "clusterctl", "keygen")
	require.Equal(t, 0, code, out1)
	out2, _ := runToEnd(t, os.Environ(), "clusterctl", "keygen")
	k1 := strings.TrimSpace(out1)
	key, err := membership.ParseKey(k1)
	require.NoError(t, err)
	assert.Len(t, key, 32)
	assert.NotEqual(t, k1, strings.TrimSpace(out2))
	g := startGateway(t, "--encrypt", k1)
	out, code := g.clusterctl(t, "members", "--json")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, `"gateway"`)

	// An agent with another key, or none, is refused, says why, and the
	// gateway logs the refusal; it never appears in members.
	for _, key := range []string{strings.TrimSpace(out2), ""} {
		args := []string{"agent", "join", "--node", "intruder", "--join", g.gossip,
			"--bind", fmt.Sprintf("127.0.0.6:%d", testutil.FreePortRange(t, 1, "127.0.0.6")), "--admin", "127.0.0.6:0",
			"--runtime", "process", "--images-dir", filepath.Join(binDir, "images"), "--data-dir", t.TempDir(),
			"--gossip-profile", "local"}
		if key != "" {
			args = append(args, "--encrypt", key)
		}
		code, last := runBinary(t, args...)
		assert.NotZero(t, code)
		assert.Contains(t, last, "the gossip key differs from the cluster's (check --encrypt / HERD_ENCRYPT)")
	}
	out, _ = g.clusterctl(t, "members", "--json")
	assert.NotContains(t, out, "intruder")
	assert.Contains(t, g.output(), "no installed keys could decrypt the message")
	assert.Contains(t, g.output(), "encryption is configured but remote state is not encrypted")
}

// TestKeyRotation: a cluster started with one gossip key moves to a new one
// with clusterctl keys install / use / remove while it serves, and a
// restarted agent, started with the old key, still gets in (its keyring
// was saved).
func TestKeyRotation(t *testing.T) {
	// Parallel, with TestAutoscale: see harness_test.go.
	t.Parallel()
	buildAll(t)
	oldKey, _ := runToEnd(t, os.Environ(), "clusterctl", "keygen")
	newKey, _ := runToEnd(t, os.Environ(), "clusterctl", "keygen")
	oldKey, newKey = strings.TrimSpace(oldKey), strings.TrimSpace(newKey)
	g := startGateway(t, "--encrypt", oldKey)
	a := startAgent(t, g, "keyed", "127.0.0.2", 2, "--encrypt", oldKey)
	g.waitBackends(t, 2, 30*time.Second)
	l := startLoad(t, g.url, 100, true)

	for _, step := range [][]string{{"install", newKey}, {"use", newKey}, {"remove", oldKey}} {
		out, code := g.clusterctl(t, "keys", step[0], step[1])
		require.Equal(t, 0, code, out)
		assert.Contains(t, out, step[0]+": done on 2 of 2 members")
	}
	out, code := g.clusterctl(t, "keys", "list", "--json")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, newKey)
	assert.NotContains(t, out, oldKey)
	out, code = g.clusterctl(t, "keys", "use", "not-a-key")
	assert.Equal(t, 2, code, "a bad key: nothing done: %s", out)
	assert.Contains(t, out, "not valid base64")
	l.finish()
	t.Logf("MEASURE key rotation under load: sent=%d failed=%d", l.sent.Load(), l.failed.Load())
	require.Zero(t, l.failed.Load(), "failed requests:\n%s", l.failures())

	a.stop(t, 30*time.Second)
	g.waitBackends(t, 0, 10*time.Second)
	a.restart(t) // still --encrypt oldKey; the saved keyring has the new one
	g.waitBackends(t, 2, 30*time.Second)
}
