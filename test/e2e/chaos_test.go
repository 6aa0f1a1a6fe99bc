package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/internal/testutil"
)

// Fault injection under load; `make chaos` runs these with the other fault
// cases (host crash, replica death, agent restart, engine down, coordinator
// killed, rogue member) that live beside the features they test.

// dropOnLoopback adds iptables rules that drop matching loopback packets,
// in a chain of the test's own named after prefix, and returns the
// function that heals (also run when the test ends).
func dropOnLoopback(t *testing.T, prefix string, rules ...[]string) (heal func()) {
	t.Helper()
	ipt := testutil.RequireTool(t, "iptables")
	run := func(args ...string) error {
		out, err := exec.Command(ipt, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("iptables %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	chain := fmt.Sprintf("%s-%d", prefix, os.Getpid())
	if err := run("-N", chain); err != nil {
		testutil.Unavailable(t, "cannot add iptables rules here (root needed): %v", err)
	}
	for _, rule := range rules {
		require.NoError(t, run(append(append([]string{"-A", chain}, rule...), "-j", "DROP")...))
	}
	require.NoError(t, run("-I", "INPUT", "-i", "lo", "-j", chain))
	healed := false
	heal = func() {
		if healed {
			return
		}
		healed = true
		_ = run("-D", "INPUT", "-i", "lo", "-j", chain)
		_ = run("-F", chain)
		_ = run("-X", chain)
	}
	t.Cleanup(heal)
	return heal
}

// partition cuts ip off from every other loopback address.
func partition(t *testing.T, ip string) (heal func()) {
	t.Helper()
	return dropOnLoopback(t, "HERD-TEST", []string{"-s", ip}, []string{"-d", ip})
}

// dropGossip drops every packet to or from a gossip port on loopback (UDP
// and TCP).
func dropGossip(t *testing.T, port string) (heal func()) {
	t.Helper()
	var rules [][]string
	for _, proto := range []string{"udp", "tcp"} {
		rules = append(rules, []string{"-p", proto, "--dport", port}, []string{"-p", proto, "--sport", port})
	}
	return dropOnLoopback(t, "HERD-GOSSIP", rules...)
}

// TestChaosPartition: one host is cut off from the gateway and the other
// host (its gossip and its backend traffic dropped), then the cut heals.
// Its backends leave the gateway's set and come back, with no manual step.
func TestChaosPartition(t *testing.T) {
	g := startGateway(t, "--health-interval", "500ms", "--health-timeout", "400ms", "--health-fall", "2")
	startAgent(t, g, "part-a", "127.0.0.2", 2)
	startAgent(t, g, "part-b", "127.0.0.3", 2)
	g.waitBackends(t, 4, 30*time.Second)
	l := startLoad(t, g.url, 100, true)
	time.Sleep(500 * time.Millisecond)

	cut := time.Now()
	heal := partition(t, "127.0.0.3")
	require.Eventually(t, func() bool {
		for _, b := range g.backends(t) {
			if b.Node == "part-b" {
				return false
			}
		}
		return true
	}, 60*time.Second, 20*time.Millisecond, "the cut-off host's backends leave the gateway's set")
	left := time.Since(cut)

	healedAt := time.Now()
	heal()
	g.waitBackends(t, 4, 90*time.Second)
	back := time.Since(healedAt)
	time.Sleep(500 * time.Millisecond)
	l.finish()
	t.Logf("MEASURE partition of one host: backends out of the set after %s; after healing, back in %s; load sent=%d failed=%d",
		left.Round(time.Millisecond), back.Round(time.Millisecond), l.sent.Load(), l.failed.Load())
	if l.failed.Load() > 0 {
		t.Logf("failures (requests in flight to the host when it was cut off, until the client's 10 s timeout):\n%s", l.failures())
	}
}

// TestChaosGatewayRestart: the gateway is killed and started again; from
// its gossip snapshot it has the full backend set again at once.
func TestChaosGatewayRestart(t *testing.T) {
	g := startGateway(t)
	startAgent(t, g, "gr-a", "127.0.0.2", 3)
	startAgent(t, g, "gr-b", "127.0.0.3", 3)
	g.waitBackends(t, 6, 30*time.Second)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		g.signal(sig)
		<-g.done
		began := time.Now()
		g.restart(t)
		took := g.waitBackends(t, 6, 10*time.Second)
		t.Logf("MEASURE gateway restart after %s: full backend set (6) %s after start (%s after it answered)",
			sig, time.Since(began).Round(time.Millisecond), took.Round(time.Millisecond))
		_, err := getVersion(t, g.url)
		assert.NoError(t, err)
	}
}
