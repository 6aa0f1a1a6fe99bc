package gateway

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/balancer"
	"github.com/herd-cluster/herd/pkg/membership"
)

// answering starts a real backend on loopback that answers body, and
// returns its port.
func answering(t *testing.T, body string) uint16 {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }))
	t.Cleanup(srv.Close)
	return netip.MustParseAddrPort(srv.Listener.Addr().String()).Port()
}

// serveGateway serves g's balancer on loopback and returns its URL.
func serveGateway(t *testing.T, g *Gateway) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- g.Balancer().Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		assert.NoError(t, g.Balancer().Shutdown(ctx))
		<-done
	})
	return "http://" + ln.Addr().String()
}

// answers sends n GETs one after another and counts the bodies.
func answers(t *testing.T, url string, n int) map[string]int {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	got := map[string]int{}
	for range n {
		resp, err := c.Get(url)
		require.NoError(t, err)
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		got[string(b)]++
	}
	return got
}

// weight is herd_gateway_canary_weight of the predictor's arm.
func weight(t *testing.T, reg *prometheus.Registry, arm string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "herd_gateway_canary_weight" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["service"] == "predictor" && labels["arm"] == arm {
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no weight for the %s arm", arm)
	return 0
}

func armsOf(g *Gateway) map[balancer.Arm]int {
	out := map[balancer.Arm]int{}
	for _, st := range g.Balancer().Backends() {
		out[st.Arm]++
	}
	return out
}

// TestCanaryTagSplitsTheService: an agent (real Serf on loopback) that
// announces a canary gets its canary and baseline replicas routed as the
// service's canary and baseline arms, with the weight the tag says (the
// baseline as much while it fits, none without baseline replicas); each
// change is in effect once the agent's sync query is acknowledged; the tag
// removed, or the agent gone, takes the arms and the split away. With
// every service routed, and with one.
func TestCanaryTagSplitsTheService(t *testing.T) {
	for _, only := range []string{"", "predictor"} {
		t.Run("service="+only, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			cfg := DefaultConfig()
			cfg.Service, cfg.Logger, cfg.Registerer = only, quiet(), reg
			cfg.Balancer.HealthInterval = 0
			g := routed(t, cfg)
			gw := member(t, "gw", membership.Tags{Role: membership.RoleGateway, Gen: 1}, g.EventCh(), g.QueryCh())
			url := serveGateway(t, g)

			stable, can, base := answering(t, "stable"), answering(t, "canary"), answering(t, "baseline")
			tags := func(gen uint64, c *membership.Canary) membership.Tags {
				tg := agentTags(gen, membership.StateActive, stable)
				tg.Canary = c
				return tg
			}
			canary := func(weight int, baseline ...uint16) *membership.Canary {
				return &membership.Canary{Weight: weight, Image: "predictor:1.1.0", Ports: []uint16{can}, Baseline: baseline, Count: 1}
			}
			agent := member(t, "agent", tags(1, canary(25, base)), nil, nil)
			_, err := agent.Join([]string{gw.LocalNode().Addr.String()})
			require.NoError(t, err)
			require.Eventually(t, func() bool { return g.Balancer().Len() == 3 }, 5*time.Second, 5*time.Millisecond,
				"the agent's stable, canary and baseline backends reach the gateway")
			svc := g.Balancer().Service("predictor")
			assert.Equal(t, balancer.Split{Canary: 25, Baseline: 25, CanaryVersion: "predictor:1.1.0",
				BaselineVersion: "predictor:1.0.0", StableVersion: "predictor:1.0.0"}, svc.Split())
			assert.Equal(t, map[balancer.Arm]int{balancer.ArmStable: 1, balancer.ArmCanary: 1, balancer.ArmBaseline: 1}, armsOf(g))
			assert.Equal(t, map[string]int{"stable": 50, "canary": 25, "baseline": 25}, answers(t, url, 100))
			counts := svc.ArmCounts()
			assert.Equal(t, []uint64{50, 25, 25}, []uint64{counts[0].Requests, counts[1].Requests, counts[2].Requests})
			assert.Equal(t, 25.0, weight(t, reg, "canary"))
			assert.Equal(t, 50.0, weight(t, reg, "stable"))

			// More than a third: the baseline gets half of what is left, the
			// stable replicas keep as much.
			require.NoError(t, agent.SetTags(tags(2, canary(60, base))))
			require.NoError(t, agent.SyncGateways(context.Background(), 5*time.Second))
			assert.Equal(t, 20, svc.Split().Baseline)
			assert.Equal(t, map[string]int{"canary": 60, "baseline": 20, "stable": 20}, answers(t, url, 100))

			// No baseline replicas: the stable arm is the comparison.
			require.NoError(t, agent.SetTags(tags(3, canary(10))))
			require.NoError(t, agent.SyncGateways(context.Background(), 5*time.Second))
			assert.Equal(t, map[balancer.Arm]int{balancer.ArmStable: 1, balancer.ArmCanary: 1}, armsOf(g))
			assert.Equal(t, map[string]int{"stable": 90, "canary": 10}, answers(t, url, 100))

			// The canary ends: its tag goes, and with it the arms and the split.
			require.NoError(t, agent.SetTags(tags(4, nil)))
			require.NoError(t, agent.SyncGateways(context.Background(), 5*time.Second))
			assert.Equal(t, balancer.Split{}, svc.Split())
			assert.Equal(t, 0.0, weight(t, reg, "canary"))
			assert.Equal(t, 100.0, weight(t, reg, "stable"))
			assert.Equal(t, map[balancer.Arm]int{balancer.ArmStable: 1}, armsOf(g))
			assert.Equal(t, map[string]int{"stable": 20}, answers(t, url, 20))

			// A new canary, then the agent leaves: nothing of it stays.
			require.NoError(t, agent.SetTags(tags(5, canary(50, base))))
			require.NoError(t, agent.SyncGateways(context.Background(), 5*time.Second))
			assert.Equal(t, 50, svc.Split().Canary)
			require.NoError(t, agent.Leave())
			require.Eventually(t, func() bool { return g.Balancer().Len() == 0 }, 5*time.Second, 5*time.Millisecond)
			assert.Equal(t, balancer.Split{}, svc.Split(), "the canary's agent left")
		})
	}
}
