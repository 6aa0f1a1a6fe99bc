package e2e

import (
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/api"
)

// TestChaosRolloutGatewayLosesGossip: three gateways route a service under
// POST and GET load; during a rollout, one gateway's gossip packets are all
// dropped for 10 s (it misses tag changes and sync queries alike). Every
// replica a live gateway routes to is withdrawn from it before it stops:
// the agents ask that gateway again (a sync query carries the tags it
// missed) until it answers, Serf declares it failed, or the drain deadline
// passes, when the batch fails and reverts, naming it. Either way not one
// request fails, on any gateway. HERD_CHAOS_REPEAT runs it that many times
// (make chaos: 10).
func TestChaosRolloutGatewayLosesGossip(t *testing.T) {
	// Parallel, with TestAutoscale: see harness_test.go.
	t.Parallel()
	repeat := 1
	if n, err := strconv.Atoi(os.Getenv("HERD_CHAOS_REPEAT")); err == nil && n > 0 {
		repeat = n
	}
	gws := []*gatewayProc{newGatewayOn(t, "gw-1", "127.0.0.1")}
	gws[0].proc = startProc(t, "gw-1", gws[0].args...)
	gws[0].waitReady(t)
	for i, ip := range []string{"127.0.0.4", "127.0.0.5"} {
		g := newGatewayOn(t, "gw-"+strconv.Itoa(i+2), ip, "--join", gws[0].gossip)
		g.proc = startProc(t, "gw-"+strconv.Itoa(i+2), g.args...)
		g.waitReady(t)
		gws = append(gws, g)
	}
	agents := []*agentProc{startAgent(t, gws[0], "ack-a", "127.0.0.2", 2), startAgent(t, gws[0], "ack-b", "127.0.0.3", 2)}
	for _, g := range gws {
		g.waitBackends(t, 4, 30*time.Second)
	}
	cut := gws[2]
	_, port, _ := strings.Cut(cut.gossip, ":")
	current, other := "predictor:1.0.0", "predictor:1.1.0"
	outcomes := map[string]int{}
	for run := range repeat {
		var loads []*load
		for _, g := range gws {
			loads = append(loads, startMixedLoad(t, g.url, 60))
		}
		time.Sleep(time.Second)
		target := other
		out, code := gws[0].clusterctl(t, "rollout", "--detach", "--json", "--min-healthy", "1s", "--deadline", "40s", target)
		require.Equal(t, 0, code, out)
		var r api.Rollout
		require.NoError(t, json.Unmarshal([]byte(out), &r))
		time.Sleep(500 * time.Millisecond)
		heal := dropGossip(t, port)
		time.Sleep(10 * time.Second)
		heal()
		var final api.Rollout
		require.Eventually(t, func() bool {
			out, code := gws[0].clusterctl(t, "rollout", "status", "--json", r.ID)
			return code != 2 && json.Unmarshal([]byte(out), &final) == nil && final.State != api.RolloutRunning
		}, 90*time.Second, 200*time.Millisecond, "the rollout ends")
		for _, g := range gws {
			g.waitBackends(t, 4, 60*time.Second)
		}
		time.Sleep(time.Second)
		failed := 0
		for i, l := range loads {
			l.finish()
			failed += int(l.failed.Load())
			assert.Zero(t, l.failed.Load(), "run %d, gateway gw-%d: failures:\n%s", run+1, i+1, l.failures())
		}
		switch {
		case final.State == api.RolloutSucceeded:
			outcomes["succeeded"]++
		case strings.Contains(final.Message, "gw-3") && final.Reverted:
			outcomes["failed and reverted, naming gw-3"]++
		default:
			t.Errorf("run %d: rollout %s: %s (want it to succeed, or to fail and revert naming gw-3)", run+1, final.State, final.Message)
		}
		if final.State == api.RolloutSucceeded { // the next run rolls back to the other image
			current, other = other, current
		}
		t.Logf("MEASURE run %d: rollout to %s %s (%s); requests through 3 gateways: %d failed", run+1, target,
			final.State, final.Message, failed)
	}
	excluded := 0
	for _, a := range agents {
		excluded += strings.Count(a.output(), "not waiting for a gateway's acknowledgement")
	}
	t.Logf("MEASURE %d rollouts with one of three gateways cut from gossip for 10 s: %v; the cut gateway caught up "+
		"from sync queries %d times; agents stopped waiting for it as Serf declared it failed %d times",
		repeat, outcomes, strings.Count(cut.output(), "applying a node's tags from its sync query"), excluded)
}
