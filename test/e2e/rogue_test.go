package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/internal/testutil"
	"github.com/herd-cluster/herd/pkg/api"
)

// TestRogueSerfMember: stock `serf agent`s (Debian's serf) join the cluster
// announcing malformed Herd tags — a port beyond 65535, an absurd replica
// count, a huge image name, a garbage generation. The gateway logs a warning
// naming each, shows its problem in `members`, routes nothing to it, and
// keeps serving the real agent under load.
func TestRogueSerfMember(t *testing.T) {
	// Parallel, with TestAutoscale: see harness_test.go.
	t.Parallel()
	serf := testutil.RequireTool(t, "serf")
	g := startGateway(t)
	startAgent(t, g, "honest", "127.0.0.2", 2)
	g.waitBackends(t, 2, 30*time.Second)
	l := startLoad(t, g.url, 100, true)

	rogues := map[string][]string{
		"rogue-port":  {"ports=99999"},
		"rogue-count": {"ports=8000", "n=100000000"},
		"rogue-huge":  {"ports=8000", "img=predictor:" + strings.Repeat("x", 300)},
		"rogue-gen":   {"ports=8000", "gen=minus-one"},
	}
	for name, bad := range rogues {
		tags := map[string]string{"role": "agent", "svc": "predictor", "img": "predictor:1.0.0", "ip": "127.0.0.9",
			"gen": "1", "state": "active"}
		for _, kv := range bad {
			k, v, _ := strings.Cut(kv, "=")
			tags[k] = v
		}
		args := []string{"agent", "-node", name, "-bind", fmt.Sprintf("127.0.0.9:%d", testutil.FreePortRange(t, 1, "127.0.0.9")),
			"-rpc-addr", fmt.Sprintf("127.0.0.9:%d", testutil.FreePort(t, "127.0.0.9")), "-join", g.gossip, "-log-level", "warn"}
		for k, v := range tags {
			args = append(args, "-tag", k+"="+v)
		}
		cmd := exec.Command(serf, args...)
		logPath := filepath.Join(t.TempDir(), name+".log")
		out, err := os.Create(logPath)
		require.NoError(t, err)
		cmd.Stdout, cmd.Stderr = out, out
		require.NoError(t, cmd.Start())
		out.Close()
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		})
	}

	// Every rogue is a member with a problem, and none has a backend.
	require.Eventually(t, func() bool {
		out, code := g.clusterctl(t, "members", "--json")
		if code != 0 {
			return false
		}
		var ms []api.Member
		if json.Unmarshal([]byte(out), &ms) != nil {
			return false
		}
		flagged := 0
		for _, m := range ms {
			if _, rogue := rogues[m.Name]; rogue && m.Problem != "" && m.Backends == 0 {
				flagged++
			}
		}
		return flagged == len(rogues)
	}, 30*time.Second, 100*time.Millisecond, "all rogue members listed with their problem")
	time.Sleep(500 * time.Millisecond)
	l.finish()

	bs := g.backends(t)
	require.Len(t, bs, 2, "nothing routed to a rogue member")
	for _, b := range bs {
		assert.Equal(t, "honest", b.Node)
	}
	for name := range rogues {
		assert.Contains(t, g.output(), name, "the gateway's log names %s", name)
	}
	assert.Contains(t, g.output(), "ignoring member with malformed tags")
	assert.False(t, g.exited(), "the gateway is still running")
	t.Logf("MEASURE rogue members: load sent=%d failed=%d", l.sent.Load(), l.failed.Load())
	require.Zero(t, l.failed.Load(), "failed requests:\n%s", l.failures())
}
