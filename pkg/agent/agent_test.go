package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/internal/testutil"
	"github.com/herd-cluster/herd/pkg/gateway"
	"github.com/herd-cluster/herd/pkg/membership"
	"github.com/herd-cluster/herd/pkg/runtime"
	"github.com/herd-cluster/herd/pkg/runtime/process"
)

var imagesDir string

func TestMain(m *testing.M) {
	os.Exit(testutil.RunWithTempDir(m, "herd-agent-images-", &imagesDir))
}

func quietLogger(name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Warn})
}

// testGateway is an in-process gateway: real gossip, real proxy.
type testGateway struct {
	gw      *gateway.Gateway
	cluster *membership.Cluster
	gossip  string
	url     string
}

func startGateway(t *testing.T) *testGateway {
	t.Helper()
	gcfg := gateway.DefaultConfig()
	gcfg.Logger = quietLogger("gw")
	gw, err := gateway.New(gcfg)
	require.NoError(t, err)
	mc := membership.DefaultConfig()
	mc.NodeName, mc.BindAddr, mc.Profile = "gw", "127.0.0.1:0", membership.ProfileLocal
	mc.Tags = membership.Tags{Role: membership.RoleGateway, Gen: 1}
	mc.EventCh, mc.QueryCh, mc.Logger = gw.EventCh(), gw.QueryCh(), quietLogger("gw")
	cluster, err := membership.New(mc)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { gw.Run(ctx); close(done) }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = gw.Balancer().Serve(ln) }()
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = gw.Balancer().Shutdown(sctx)
		cancel()
		<-done
		_ = cluster.Shutdown()
	})
	return &testGateway{gw: gw, cluster: cluster, gossip: cluster.LocalNode().Addr.String(), url: "http://" + ln.Addr().String()}
}

// startSilentGateway joins a live gateway member to g's cluster that
// answers no query: it never acknowledges a withdrawal.
func startSilentGateway(t *testing.T, g *testGateway) *membership.Cluster {
	t.Helper()
	mc := memberConfig()
	mc.NodeName, mc.Tags = "silent-gw", membership.Tags{Role: membership.RoleGateway, Gen: 1}
	mc.QueryCh = make(chan *membership.Query) // nobody reads it: queries are dropped
	silent, err := membership.New(mc)
	require.NoError(t, err)
	t.Cleanup(func() { _ = silent.Shutdown() })
	_, err = silent.Join([]string{g.gossip})
	require.NoError(t, err)
	return silent
}

func (g *testGateway) waitBackends(t *testing.T, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return g.gw.Balancer().Len() == n }, 20*time.Second, 5*time.Millisecond,
		"gateway routes to %d backends", n)
}

type testAgent struct {
	*Agent
	cancel context.CancelFunc
	done   chan error
}

func agentConfig(t *testing.T, g *testGateway, replicas int) Config {
	cfg := DefaultConfig()
	cfg.Node = fmt.Sprintf("agent-%d", time.Now().UnixNano())
	cfg.Image = runtime.Image{Name: "predictor", Tag: "1.0.0"}
	cfg.Replicas = replicas
	cfg.BasePort = testutil.FreePortRange(t, replicas, "127.0.0.1")
	cfg.HostIP = netip.MustParseAddr("127.0.0.1")
	cfg.Join = []string{g.gossip}
	cfg.HealthInterval = 100 * time.Millisecond
	cfg.StartTimeout = 5 * time.Second
	cfg.StopGrace = 5 * time.Second
	cfg.Logger = quietLogger(cfg.Node)
	return cfg
}

func newDriver(t *testing.T, stateDir string) *process.Driver {
	t.Helper()
	d, err := process.New(process.Config{ImagesDir: imagesDir, StateDir: stateDir, Logger: quietLogger("rt")})
	require.NoError(t, err)
	return d
}

func memberConfig() *membership.Config {
	mc := membership.DefaultConfig()
	mc.BindAddr, mc.Profile, mc.Logger = "127.0.0.1:0", membership.ProfileLocal, quietLogger("m")
	return mc
}

func runAgent(t *testing.T, cfg Config, rt Runtime) *testAgent {
	t.Helper()
	a, err := New(cfg, rt, memberConfig())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	ta := &testAgent{Agent: a, cancel: cancel, done: make(chan error, 1)}
	go func() { ta.done <- a.Run(ctx) }()
	t.Cleanup(func() { ta.stop(t) })
	require.Eventually(t, func() bool {
		for _, r := range a.Replicas() {
			if r.State != stateHealthy {
				return false
			}
		}
		return true
	}, 20*time.Second, 5*time.Millisecond, "all replicas healthy")
	return ta
}

func (ta *testAgent) stop(t *testing.T) {
	ta.cancel()
	select {
	case err := <-ta.done:
		assert.NoError(t, err)
		ta.done <- nil
	case <-time.After(30 * time.Second):
		t.Error("agent did not stop")
	}
	_ = ta.Close()
}

func TestAgentReplacesDeadReplicaWithoutFailedRequests(t *testing.T) {
	testutil.BuildPredictorImages(t, imagesDir, "1.0.0")
	g := startGateway(t)
	cfg := agentConfig(t, g, 3)
	a := runAgent(t, cfg, newDriver(t, t.TempDir()))
	g.waitBackends(t, 3)

	var sent, failed atomic.Int64
	stop := make(chan struct{})
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			sent.Add(1)
			resp, err := http.Get(g.url + "/version")
			if err != nil || resp.StatusCode != 200 {
				failed.Add(1)
			}
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}()

	victim := a.Replicas()[1]
	require.NotZero(t, victim.PID)
	require.NoError(t, syscall.Kill(victim.PID, syscall.SIGKILL))
	require.Eventually(t, func() bool {
		r := a.Replicas()[1]
		return r.State == stateHealthy && r.PID != victim.PID && r.Restarts == 1
	}, 15*time.Second, 10*time.Millisecond, "replica 1 replaced")
	g.waitBackends(t, 3)
	time.Sleep(200 * time.Millisecond)
	close(stop)
	<-loadDone
	assert.Zero(t, failed.Load(), "of %d requests", sent.Load())
	assert.Greater(t, sent.Load(), int64(20))
}

func TestAgentStartErrorsLeaveNothingRunning(t *testing.T) {
	testutil.BuildPredictorImages(t, imagesDir, "1.0.0", "1.2.0-broken")
	g := startGateway(t)

	t.Run("port in use", func(t *testing.T) {
		cfg := agentConfig(t, g, 3)
		taken := cfg.BasePort + 1
		l, err := netListen(fmt.Sprintf("127.0.0.1:%d", taken))
		require.NoError(t, err)
		defer l.Close()
		stateDir := t.TempDir()
		err = runToError(t, cfg, newDriver(t, stateDir))
		require.ErrorIs(t, err, runtime.ErrPortInUse)
		assert.Contains(t, err.Error(), fmt.Sprintf("port %d", taken))
		assertNoReplicas(t, stateDir)
	})
	t.Run("unknown image", func(t *testing.T) {
		cfg := agentConfig(t, g, 2)
		cfg.Image.Tag = "7.7.7"
		stateDir := t.TempDir()
		err := runToError(t, cfg, newDriver(t, stateDir))
		require.ErrorIs(t, err, runtime.ErrImageNotFound)
		assert.Contains(t, err.Error(), "predictor:7.7.7")
		assertNoReplicas(t, stateDir)
	})
	t.Run("never healthy", func(t *testing.T) {
		cfg := agentConfig(t, g, 2)
		cfg.Image.Tag = "1.2.0-broken"
		cfg.StartTimeout = 500 * time.Millisecond
		stateDir := t.TempDir()
		err := runToError(t, cfg, newDriver(t, stateDir))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "did not pass its health check within 500ms")
		assertNoReplicas(t, stateDir)
	})
	assert.Zero(t, g.gw.Balancer().Len(), "nothing was announced")
}

func netListen(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }

func runToError(t *testing.T, cfg Config, rt Runtime) error {
	t.Helper()
	a, err := New(cfg, rt, memberConfig())
	require.NoError(t, err)
	defer a.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return a.Run(ctx)
}

func assertNoReplicas(t *testing.T, stateDir string) {
	t.Helper()
	list, err := newDriver(t, stateDir).List(context.Background())
	require.NoError(t, err)
	assert.Empty(t, list, "no replica left behind")
	matches, _ := filepath.Glob(filepath.Join(stateDir, "*.json"))
	assert.Empty(t, matches)
}

func TestAgentAdoptsRunningReplicas(t *testing.T) {
	testutil.BuildPredictorImages(t, imagesDir, "1.0.0")
	g := startGateway(t)
	cfg := agentConfig(t, g, 2)
	stateDir := t.TempDir()
	// Replicas a previous run of this agent left serving.
	d := newDriver(t, stateDir)
	var pids []int
	for i := range 2 {
		r, err := d.Start(context.Background(), runtime.Spec{Service: cfg.Service, Node: cfg.Node, Index: i,
			Image: cfg.Image, HostIP: cfg.HostIP, Port: cfg.BasePort + uint16(i)})
		require.NoError(t, err)
		pids = append(pids, r.PID)
	}
	a := runAgent(t, cfg, newDriver(t, stateDir))
	g.waitBackends(t, 2)
	for i, r := range a.Replicas() {
		assert.Equal(t, pids[i], r.PID, "replica %d adopted, not restarted", i)
		assert.Equal(t, stateHealthy, r.State)
	}
}

func TestConfigValidate(t *testing.T) {
	base := func() Config {
		c := DefaultConfig()
		c.Node, c.Image, c.HostIP, c.Join = "n", runtime.Image{Name: "p", Tag: "1"}, netip.MustParseAddr("10.0.0.1"), []string{"x"}
		return c
	}
	ok := base()
	require.NoError(t, ok.Validate())
	cases := []struct {
		mutate func(*Config)
		field  string
		msg    string
	}{
		{func(c *Config) { c.Replicas = 0 }, "Replicas", "replica count 0: must be between 1 and 1000"},
		{func(c *Config) { c.Replicas = 1001 }, "Replicas", "replica count 1001: must be between 1 and 1000"},
		{func(c *Config) { c.Replicas, c.MaxReplicas = 21, 20 }, "Replicas", "replica count 21: must be between 1 and 20"},
		{func(c *Config) { c.MaxReplicas = 0 }, "MaxReplicas", "maximum replica count 0: must be between 1 and 1000"},
		{func(c *Config) { c.MaxReplicas = 1001 }, "MaxReplicas", "maximum replica count 1001: must be between 1 and 1000"},
		{func(c *Config) { c.BasePort, c.Replicas = 65530, 10 }, "BasePort",
			"base port 65530: with 10 replicas needs ports up to 65539, beyond 65535"},
		{func(c *Config) { c.BasePort = 0 }, "BasePort", "base port 0: must be between 1 and 65535"},
		{func(c *Config) { c.Join = nil }, "Join", "no join address"},
		{func(c *Config) { c.HostIP = netip.Addr{} }, "HostIP", "no host address for the replicas"},
		{func(c *Config) { c.HostIP = netip.MustParseAddr("0.0.0.0") }, "HostIP",
			"host address 0.0.0.0: not an address replicas can be reached at"},
		{func(c *Config) { c.Image = runtime.Image{} }, "Image", "no image"},
		{func(c *Config) { c.Node = "" }, "Node", "no node name"},
		{func(c *Config) { c.Protocol = "h3" }, "Protocol", "protocol h3: want http, h2c or grpc"},
	}
	for _, tc := range cases {
		c := base()
		tc.mutate(&c)
		err := c.Validate()
		var ce *ConfigError
		require.ErrorAs(t, err, &ce, tc.msg)
		assert.Equal(t, tc.field, ce.Field, tc.msg)
		assert.EqualError(t, err, tc.msg)
		assert.NotContains(t, err.Error(), "--", "a library names no flag")
	}
}

func TestDeployRefusesImagesBeyondTheTagBudget(t *testing.T) {
	cfg := agentConfig(t, &testGateway{gossip: "127.0.0.1:1"}, 1)
	a, err := New(cfg, newDriver(t, t.TempDir()), memberConfig())
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close() })
	long := "registry.example.com:5000/" + strings.Repeat("a", 250) + ":" + strings.Repeat("t", 128)
	_, err = runtime.ParseImage(long)
	require.NoError(t, err, "a valid reference")
	err = a.deploy(context.Background(), membership.DeployRequest{Rollout: "r1", Image: long, CheckOnly: true})
	assert.ErrorContains(t, err, "more than the 512 gossip allows")
}

func TestBackoff(t *testing.T) {
	a := &Agent{cfg: Config{RestartBackoff: time.Second, MaxRestartBackoff: 10 * time.Second}}
	var got []time.Duration
	for n := 1; n <= 7; n++ {
		got = append(got, a.backoff(n))
	}
	assert.Equal(t, []time.Duration{0, 1 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second,
		10 * time.Second, 10 * time.Second}, got)
}

// A live gateway that never acknowledges a replica's withdrawal (here one
// that reads no queries) stops the replacement: the replica is kept serving
// on its old image, and the agent announces the deploy's failure, naming the
// gateway, instead of stopping a replica that gateway may still route to. A
// new deploy request clears it.
func TestUnacknowledgedWithdrawalKeepsTheReplica(t *testing.T) {
	testutil.BuildPredictorImages(t, imagesDir, "1.0.0", "1.1.0")
	g := startGateway(t)
	silent := startSilentGateway(t, g)

	cfg := agentConfig(t, g, 2)
	cfg.SyncTimeout = 1500 * time.Millisecond
	ta := runAgent(t, cfg, newDriver(t, t.TempDir()))
	g.waitBackends(t, 2)
	require.Eventually(t, func() bool {
		n, ok := silent.Member(cfg.Node)
		return ok && n.Status == membership.StatusAlive
	}, 10*time.Second, 10*time.Millisecond, "the silent gateway knows the agent")

	deploy := func(image string) {
		t.Helper()
		errs := silent.Deploy(context.Background(), []string{cfg.Node}, membership.DeployRequest{Rollout: "t", Image: image}, 5*time.Second)
		require.NoError(t, errs[cfg.Node])
	}
	tagsOf := func() membership.Tags {
		n, ok := silent.Member(cfg.Node)
		require.True(t, ok)
		return n.Tags
	}
	deploy("predictor:1.1.0")
	require.Eventually(t, func() bool { return tagsOf().Fail != "" }, 10*time.Second, 20*time.Millisecond, "the failure is announced")
	assert.Contains(t, tagsOf().Fail, "gateway silent-gw did not acknowledge the withdrawal of replica")
	require.Eventually(t, func() bool {
		for _, r := range ta.Replicas() {
			if r.Image != "predictor:1.0.0" || r.State != stateHealthy {
				return false
			}
		}
		return true
	}, 5*time.Second, 10*time.Millisecond, "every replica kept on its image, healthy: %+v", ta.Replicas())
	g.waitBackends(t, 2) // the kept replica is announced again
	assert.Equal(t, []uint16{cfg.BasePort, cfg.BasePort + 1}, tagsOf().Ports)

	deploy("predictor:1.0.0") // the revert
	require.Eventually(t, func() bool { return tagsOf().Fail == "" }, 10*time.Second, 20*time.Millisecond, "cleared by the next request")
}

// failingStop is a runtime whose next n stops fail, the replica left as it
// was (an engine that errs for a moment).
type failingStop struct {
	Runtime
	n, failed atomic.Int32
}

func (f *failingStop) Stop(ctx context.Context, r runtime.Replica, grace time.Duration) error {
	if f.n.Add(-1) >= 0 {
		f.failed.Add(1)
		return fmt.Errorf("stop replica %d: engine busy", r.Index)
	}
	return f.Runtime.Stop(ctx, r, grace)
}

// TestFailedStopKeepsTheReplica: a replacement whose stop of the old
// replica fails keeps the old one in its slot, so the next attempt stops
// it before starting its successor on the port, and the rollout completes
// with nothing left running beside it.
func TestFailedStopKeepsTheReplica(t *testing.T) {
	testutil.BuildPredictorImages(t, imagesDir, "1.0.0", "1.1.0")
	g := startGateway(t)
	cfg := agentConfig(t, g, 1)
	cfg.RestartBackoff = 100 * time.Millisecond
	rt := &failingStop{Runtime: newDriver(t, t.TempDir())}
	ta := runAgent(t, cfg, rt)
	g.waitBackends(t, 1)
	old := ta.Replicas()[0]

	rt.n.Store(1)
	require.NoError(t, sendDeploy(t, g.cluster, cfg.Node, membership.DeployRequest{Rollout: "t", Image: "predictor:1.1.0"}))
	require.Eventually(t, func() bool { return ta.cluster.Tags().Converged("predictor:1.1.0") }, 20*time.Second,
		20*time.Millisecond, "converged to 1.1.0: %+v", ta.Replicas())
	assert.False(t, alive(old.PID), "the old replica (pid %d) stopped", old.PID)
	assert.Equal(t, int32(1), rt.failed.Load(), "the failing stop was tried")
	g.waitBackends(t, 1)
}
