package gateway

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/membership"
)

// TestConvergenceAtScale runs a gateway and 200 agent members (real Serf,
// one process, loopback; HERD_SCALE_MEMBERS changes the number) and reports
// the p50/p99 of how long a join and a failure take to reach the gateway's
// backend set. It asserts that every one does; `make bench` prints it.
func TestConvergenceAtScale(t *testing.T) {
	n := 200
	if raceEnabled {
		n = 50 // the race detector makes 200 gossiping members too slow for 2 cores
	}
	if v := os.Getenv("HERD_SCALE_MEMBERS"); v != "" {
		var err error
		n, err = strconv.Atoi(v)
		require.NoError(t, err)
	}
	cfg := DefaultConfig()
	cfg.Logger = quiet()
	cfg.Balancer.HealthInterval = 0 // nothing listens on the announced ports
	g, err := New(cfg)
	require.NoError(t, err)
	gw := member(t, "gw", membership.Tags{Role: membership.RoleGateway, Gen: 1}, g.EventCh(), g.QueryCh())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	// A watcher notes when each node's backend appears in and leaves the
	// gateway's set, to the millisecond.
	var mu sync.Mutex
	seen, gone := map[string]time.Time{}, map[string]time.Time{}
	stop := make(chan struct{})
	var watch sync.WaitGroup
	watch.Go(func() {
		present := map[string]bool{}
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			now := time.Now()
			cur := map[string]bool{}
			for _, b := range g.Balancer().Backends() {
				cur[b.Node] = true
			}
			mu.Lock()
			for node := range cur {
				if _, ok := seen[node]; !ok {
					seen[node] = now
				}
			}
			for node := range present {
				if !cur[node] {
					if _, ok := gone[node]; !ok {
						gone[node] = now
					}
				}
			}
			mu.Unlock()
			present = cur
		}
	})
	defer func() { close(stop); watch.Wait() }()

	joinAt := map[string]time.Time{}
	agents := map[string]*membership.Cluster{}
	addr := gw.LocalNode().Addr.String()
	for i := range n {
		name := fmt.Sprintf("agent-%03d", i)
		a := lanMember(t, name, agentTags(1, membership.StateActive, uint16(20000+i)))
		agents[name] = a
		joinAt[name] = time.Now()
		_, err := a.Join([]string{addr})
		require.NoError(t, err)
		time.Sleep(5 * time.Millisecond) // joins arrive over a second, as a fleet starting up would
	}
	require.Eventually(t, func() bool { return g.Balancer().Len() == n }, 60*time.Second, 10*time.Millisecond,
		"all %d members' backends reach the gateway", n)

	// Ten members crash (no leave): failure detection takes them out.
	failAt := map[string]time.Time{}
	for i := range 10 {
		name := fmt.Sprintf("agent-%03d", i*n/10)
		mu.Lock()
		delete(gone, name) // count only the disappearance after the crash
		mu.Unlock()
		failAt[name] = time.Now()
		require.NoError(t, agents[name].Shutdown())
	}
	require.Eventually(t, func() bool { return g.Balancer().Len() == n-10 }, 60*time.Second, 10*time.Millisecond,
		"the failed members' backends leave the gateway")

	mu.Lock()
	defer mu.Unlock()
	var joins, fails []time.Duration
	for name, at := range joinAt {
		joins = append(joins, seen[name].Sub(at))
	}
	for name, at := range failAt {
		fails = append(fails, gone[name].Sub(at))
	}
	flaps := 0
	for name := range gone {
		if _, failed := failAt[name]; !failed {
			flaps++
		}
	}
	t.Logf("MEASURE %d members, lan gossip profile (%d live members briefly declared failed on this 2-core machine):", n, flaps)
	t.Logf("MEASURE %d members: join → in the gateway's set p50 %s p99 %s max %s; crash → out p50 %s p99 %s max %s",
		n, pct(joins, 50), pct(joins, 99), pct(joins, 100), pct(fails, 50), pct(fails, 99), pct(fails, 100))
}

// lanMember is an agent member with the production (lan) gossip timings.
func lanMember(t *testing.T, name string, tags membership.Tags) *membership.Cluster {
	t.Helper()
	cfg := membership.DefaultConfig()
	cfg.NodeName, cfg.BindAddr, cfg.Tags, cfg.Logger = name, "127.0.0.1:0", tags, quiet()
	c, err := membership.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Shutdown() })
	return c
}

func pct(ds []time.Duration, p int) time.Duration {
	slices.Sort(ds)
	i := min(len(ds)-1, (len(ds)*p+99)/100-1)
	return ds[max(i, 0)].Round(100 * time.Microsecond)
}
