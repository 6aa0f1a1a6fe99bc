package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type version struct {
	Version  string `json:"version"`
	Instance string `json:"instance"`
}

func getVersion(t *testing.T, url string) (version, error) {
	t.Helper()
	resp, err := http.Get(url + "/version")
	if err != nil {
		return version{}, err
	}
	defer resp.Body.Close()
	var v version
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return v, &httpError{resp.StatusCode, string(b)}
	}
	return v, json.NewDecoder(resp.Body).Decode(&v)
}

type httpError struct {
	code int
	body string
}

func (e *httpError) Error() string { return http.StatusText(e.code) + ": " + e.body }

// TestSkeleton: a gateway and three agents × 4 replicas; 12 replicas answer
// in round robin; SIGTERM of one agent drains it without a failed request;
// SIGKILL of another with its replicas (a host crash) is detected; nothing
// is left running.
func TestSkeleton(t *testing.T) {
	g := startGateway(t)

	// With no backend the gateway answers 503 at once.
	_, err := getVersion(t, g.url)
	var he *httpError
	require.ErrorAs(t, err, &he)
	assert.Equal(t, http.StatusServiceUnavailable, he.code)
	assert.Contains(t, he.body, "no backend available")

	began := time.Now()
	a1 := startAgent(t, g, "host-1", "127.0.0.2", 4)
	require.Eventually(t, func() bool {
		v, err := getVersion(t, g.url)
		return err == nil && strings.HasPrefix(v.Instance, "host-1/")
	}, 30*time.Second, 5*time.Millisecond)
	t.Logf("MEASURE agent start to first request served through the gateway: %s", time.Since(began).Round(time.Millisecond))

	a2 := startAgent(t, g, "host-2", "127.0.0.3", 4)
	a3 := startAgent(t, g, "host-3", "127.0.0.4", 4)
	g.waitBackends(t, 12, 30*time.Second)

	// Round robin: 48 sequential requests reach each of the 12 replicas 4 times.
	seen := map[string]int{}
	for range 48 {
		v, err := getVersion(t, g.url)
		require.NoError(t, err)
		assert.Equal(t, "1.0.0", v.Version)
		seen[v.Instance]++
	}
	require.Len(t, seen, 12, "12 distinct replicas answer: %v", seen)
	for inst, n := range seen {
		assert.Equal(t, 4, n, "replica %s", inst)
	}

	// clusterctl shows the same cluster.
	out, err := exec.Command(filepath.Join(binDir, "clusterctl"), "--addr", g.admin, "members").CombinedOutput()
	require.NoError(t, err, string(out))
	for _, want := range []string{"NAME", "gateway", "host-1", "host-2", "host-3", "predictor:1.0.0", "active"} {
		assert.Contains(t, string(out), want)
	}

	// SIGTERM host-1 under load: it drains from every gateway before its
	// replicas stop, so not one request fails.
	l := startLoad(t, g.url, 200, true)
	time.Sleep(300 * time.Millisecond)
	a1Pids := a1.replicaPIDs(t)
	sigterm := time.Now()
	a1.signal(15)
	took := g.waitBackends(t, 8, 2*time.Second)
	t.Logf("MEASURE SIGTERM to backends leaving the gateway: %s", took.Round(time.Millisecond))
	a1.stop(t, 30*time.Second)
	t.Logf("MEASURE SIGTERM to agent exit: %s", time.Since(sigterm).Round(time.Millisecond))
	time.Sleep(300 * time.Millisecond)
	l.finish()
	assert.Zero(t, l.failed.Load(), "requests failed while an agent drained:\n%s", l.failures())
	t.Logf("MEASURE load during SIGTERM: sent=%d failed=%d", l.sent.Load(), l.failed.Load())
	for _, pid := range a1Pids {
		assert.False(t, pidAlive(pid), "host-1's replica %d stopped with its agent", pid)
	}

	// SIGKILL host-2 with its replicas, under load: gone after failure
	// detection; meanwhile retries carry every request to host-3.
	crashLoad := startLoad(t, g.url, 100, true)
	time.Sleep(300 * time.Millisecond)
	a2Pids := a2.crash(t)
	took = g.waitBackends(t, 4, 30*time.Second)
	t.Logf("MEASURE SIGKILL (host crash) to backends leaving the gateway: %s (gossip profile %s)", took.Round(time.Millisecond), gossipProfile())
	crashLoad.finish()
	t.Logf("MEASURE load during the host crash: sent=%d failed=%d", crashLoad.sent.Load(), crashLoad.failed.Load())
	assert.Zero(t, crashLoad.failed.Load(), "requests failed during the host crash:\n%s", crashLoad.failures())
	for range 8 {
		v, err := getVersion(t, g.url)
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(v.Instance, "host-3/"), v.Instance)
	}

	// host-2 stays "failed" until reaped; force-leave removes it for good,
	// and refuses members that are alive or unknown.
	code, last := runBinary(t, "clusterctl", "--addr", g.admin, "force-leave", "host-3")
	assert.Equal(t, 2, code)
	assert.Equal(t, "clusterctl: cannot force-leave a live member: host-3 is alive; stop its agent instead (it leaves the cluster by itself)", last)
	code, last = runBinary(t, "clusterctl", "--addr", g.admin, "force-leave", "nobody")
	assert.Equal(t, 2, code)
	assert.Equal(t, `clusterctl: no such member: "nobody"`, last)
	code, last = runBinary(t, "clusterctl", "--addr", g.admin, "force-leave", "host-2")
	assert.Zero(t, code, last)
	assert.Equal(t, "host-2 removed from the cluster", last)
	members, err := g.client().Members(context.Background())
	require.NoError(t, err)
	for _, m := range members {
		assert.NotEqual(t, "host-2", m.Name, "force-left members are forgotten")
	}

	a3Pids := a3.replicaPIDs(t)
	a3.stop(t, 30*time.Second)
	g.stop(t, 30*time.Second)
	for _, p := range []*proc{a1.proc, a2.proc, a3.proc, g.proc} {
		assert.True(t, p.exited(), "%s exited", p.name)
	}
	for _, pid := range append(append(a1Pids, a2Pids...), a3Pids...) {
		assert.False(t, pidAlive(pid), "replica %d left running", pid)
	}
}

func (a *agentProc) replicaPIDs(t *testing.T) []int {
	var pids []int
	for _, r := range a.replicas(t) {
		require.NotZero(t, r.PID)
		pids = append(pids, r.PID)
	}
	return pids
}
