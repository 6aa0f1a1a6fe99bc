package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/internal/testutil"
	"github.com/herd-cluster/herd/pkg/agent"
	"github.com/herd-cluster/herd/pkg/api"
	"github.com/herd-cluster/herd/pkg/runtime/docker"
)

// dockerCluster skips (or fails under CI=true) without an engine, and
// builds the predictor images in it.
func dockerCluster(t *testing.T, versions ...string) *client.Client {
	t.Helper()
	cli := testutil.RequireDocker(t)
	testutil.BuildDockerImages(t, cli, versions...)
	return cli
}

// uniqueNode gives each test's hosts names of their own in the shared engine.
func uniqueNode(name string) string {
	return fmt.Sprintf("%s-%d", name, time.Now().UnixNano()%1e6)
}

// containers lists node's Herd containers; running only unless all.
func containers(t *testing.T, node string, all bool) []container.Summary {
	t.Helper()
	list, err := listNode(testutil.RequireDocker(t), node, all)
	require.NoError(t, err)
	return list
}

func listNode(cli *client.Client, node string, all bool) ([]container.Summary, error) {
	return cli.ContainerList(context.Background(), container.ListOptions{All: all,
		Filters: filters.NewArgs(filters.Arg("label", docker.LabelNode+"="+node))})
}

func removeContainers(t *testing.T, node string) {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return
	}
	defer cli.Close()
	list, err := listNode(cli, node, true)
	if err != nil {
		return
	}
	for _, c := range list {
		_ = cli.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true})
	}
}

func containerIDs(list []container.Summary) []string {
	var ids []string
	for _, c := range list {
		ids = append(ids, c.ID)
	}
	slices.Sort(ids)
	return ids
}

// allHealthy waits until every replica of a is healthy and returns them.
func (a *agentProc) allHealthy(t *testing.T, n int, within time.Duration) []agent.ReplicaStatus {
	t.Helper()
	var rs []agent.ReplicaStatus
	require.Eventually(t, func() bool {
		rs = a.replicas(t)
		if len(rs) != n {
			return false
		}
		for _, r := range rs {
			if r.State != "healthy" {
				return false
			}
		}
		return true
	}, within, 50*time.Millisecond, "all %d replicas of %s healthy", n, a.node)
	return rs
}

// TestDockerCluster: a gateway and two agents × 3 containers. Traffic
// reaches all 6. Under a constant GET load: SIGKILL one agent and start it
// again (it adopts its 3 containers: no duplicate, no restart), then docker
// kill one container (replaced; the gateway retries around it). The load
// sees zero failed requests.
func TestDockerCluster(t *testing.T) {
	cli := dockerCluster(t, "1.0.0")
	ctx := context.Background()
	g := startGateway(t)
	n1, n2 := uniqueNode("dock-1"), uniqueNode("dock-2")
	a1 := startDockerAgent(t, g, n1, "127.0.0.2", 3)
	a2 := startDockerAgent(t, g, n2, "127.0.0.3", 3)
	g.waitBackends(t, 6, 60*time.Second)

	// Round robin reaches all six containers.
	seen := map[string]bool{}
	for range 12 {
		v, err := getVersion(t, g.url)
		require.NoError(t, err)
		seen[v.Instance] = true
	}
	assert.Len(t, seen, 6, "instances seen: %v", seen)
	for _, n := range []string{n1, n2} {
		list := containers(t, n, false)
		require.Len(t, list, 3)
		for _, c := range list {
			assert.Equal(t, "true", c.Labels[docker.LabelManaged])
			assert.Equal(t, "predictor", c.Labels[docker.LabelService])
			assert.Equal(t, "predictor:1.0.0", c.Labels[docker.LabelImage])
			assert.Contains(t, []string{"0", "1", "2"}, c.Labels[docker.LabelIndex])
		}
	}

	l := startLoad(t, g.url, 200, true)

	// Agent crash and restart: its containers keep serving and are adopted.
	before := containerIDs(containers(t, n1, true))
	a1.signal(syscall.SIGKILL)
	<-a1.done
	time.Sleep(500 * time.Millisecond)
	restarted := time.Now()
	a1.restart(t)
	a1.allHealthy(t, 3, 30*time.Second)
	g.waitBackends(t, 6, 30*time.Second)
	t.Logf("MEASURE agent restart to its 3 adopted containers announced: %s", time.Since(restarted).Round(time.Millisecond))
	assert.Equal(t, before, containerIDs(containers(t, n1, true)), "same 3 containers: adopted, not restarted, no duplicates")
	for _, r := range a1.replicas(t) {
		assert.Zero(t, r.Restarts)
	}

	// One container dies: replaced, and no client sees it.
	victim := a2.replicas(t)[1]
	killed := time.Now()
	require.NoError(t, cli.ContainerKill(ctx, victim.ID, "KILL"))
	require.Eventually(t, func() bool {
		r := a2.replicas(t)[1]
		return r.ID != victim.ID && r.State == "healthy"
	}, 60*time.Second, 50*time.Millisecond, "killed container replaced")
	g.waitBackends(t, 6, 10*time.Second)
	t.Logf("MEASURE docker kill to replacement healthy: %s", time.Since(killed).Round(time.Millisecond))
	assert.Len(t, containers(t, n2, true), 3, "the dead container was removed, not left beside its replacement")
	time.Sleep(time.Second) // traffic on the new container too

	// SIGTERM with the Docker runtime drains and leaves; the containers stay
	// for the next agent (an agent upgrade does not restart the service),
	// which adopts them.
	before2 := containerIDs(containers(t, n2, true))
	a2.stop(t, 30*time.Second)
	g.waitBackends(t, 3, 5*time.Second)
	assert.Len(t, containers(t, n2, false), 3)
	restarted = time.Now()
	a2.restart(t)
	a2.allHealthy(t, 3, 30*time.Second)
	g.waitBackends(t, 6, 30*time.Second)
	t.Logf("MEASURE agent SIGTERM + start again: its 3 running containers adopted and announced %s after the start", time.Since(restarted).Round(time.Millisecond))
	assert.Equal(t, before2, containerIDs(containers(t, n2, true)), "adopted, not restarted")
	time.Sleep(500 * time.Millisecond)

	l.finish()
	t.Logf("MEASURE load during agent crash+restart, container kill, agent SIGTERM+restart: sent=%d failed=%d", l.sent.Load(), l.failed.Load())
	require.Greater(t, l.sent.Load(), int64(500))
	require.Zero(t, l.failed.Load(), "failed requests:\n%s", l.failures())
}

// TestDockerAgentStartup measures `agent join --replicas 12` on the Docker
// runtime until all 12 are routed, then 12 more on the same host added
// live with `clusterctl scale --node`, with the bridge network (published
// ports) and with the host's network.
func TestDockerAgentStartup(t *testing.T) {
	dockerCluster(t, "1.0.0")
	g := startGateway(t)
	for i, network := range []string{"bridge", "host"} {
		ip := fmt.Sprintf("127.0.0.%d", 4+i)
		node := uniqueNode("dock-12-" + network)
		began := time.Now()
		a := startDockerAgent(t, g, node, ip, 12, "--base-port", strconv.Itoa(int(testutil.FreePortRange(t, 24, ip))),
			"--max-replicas", "24", "--docker-network", network)
		g.waitBackends(t, 12, 2*time.Minute)
		t.Logf("MEASURE agent join --replicas 12 (docker, %s network) to 12 backends at the gateway: %s", network,
			time.Since(began).Round(time.Millisecond))
		assert.Len(t, containers(t, node, false), 12)

		// 12 more on the same host, live: started together, each routed
		// once healthy.
		began = time.Now()
		out, code := g.clusterctl(t, "scale", "--node", node, "24")
		require.Equal(t, 0, code, out)
		asked := time.Since(began)
		g.waitBackends(t, 24, 2*time.Minute)
		t.Logf("MEASURE scale (docker, %s network) 12 → 24 replicas on one host: the agent asked in %s, all 24 routed %s after the command began",
			network, asked.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
		assert.Len(t, containers(t, node, false), 24)
		a.stop(t, 30*time.Second)
		g.waitBackends(t, 0, 30*time.Second)
	}
}

// TestDockerBadInput: an image missing from the engine and an unreachable
// engine are one clear line and a non-zero exit, starting nothing.
func TestDockerBadInput(t *testing.T) {
	// Parallel, with TestAutoscale: see harness_test.go.
	t.Parallel()
	dockerCluster(t, "1.0.0")
	buildAll(t)
	node := uniqueNode("dock-bad")
	t.Cleanup(func() { removeContainers(t, node) })
	dockerHost := "DOCKER_HOST=" + os.Getenv("DOCKER_HOST")
	base := []string{"agent", "join", "--node", node, "--join", "127.0.0.1:1", "--bind", "127.0.0.5:" + strconv.Itoa(int(testutil.FreePort(t, "127.0.0.5"))),
		"--admin", "127.0.0.5:0", "--runtime", "docker", "--host-ip", "127.0.0.5", "--data-dir", t.TempDir()}

	code, out := runBinaryEnv(t, []string{dockerHost}, append(base, "--image", "predictor:9.9.9")...)
	assert.NotZero(t, code)
	assert.Contains(t, out, "predictor:9.9.9")
	assert.Contains(t, out, "image not found")
	assert.Empty(t, containers(t, node, true))

	code, out = runBinaryEnv(t, []string{"DOCKER_HOST=unix:///nonexistent/docker.sock"}, base...)
	assert.NotZero(t, code)
	assert.Contains(t, out, "unix:///nonexistent/docker.sock")
	assert.Contains(t, out, "not reachable")
}

// TestDockerEngineDown: the engine stops for 10 s under a constant load
// (with --live-restore, as production hosts should run it). The agent logs
// it, keeps its membership, replaces nothing, and carries on when the engine
// is back: the same containers serve, zero failed requests.
//
// With host networking the containers serve throughout. With bridge
// networking (published ports) the engine's userland proxy, which carries
// loopback traffic to published ports, stops with the engine, so those
// backends are unreachable meanwhile: the gateway routes around them to a
// second host, and they come back when the engine does.
func TestDockerEngineDown(t *testing.T) {
	for _, network := range []string{"host", "bridge"} {
		t.Run(network, func(t *testing.T) { testEngineDown(t, network) })
	}
}

func testEngineDown(t *testing.T, network string) {
	d := testutil.StartDockerd(t)
	cli := d.Client(t)
	testutil.BuildDockerImages(t, cli, "1.0.0")
	g := startGateway(t)
	node := uniqueNode("dock-down")
	a := startAgentOnEngine(t, g, d, node, "127.0.0.6", 2, "--docker-network", network)
	want := 2
	if network == "bridge" {
		startAgent(t, g, uniqueNode("proc"), "127.0.0.7", 2)
		want = 4
	}
	g.waitBackends(t, want, 60*time.Second)
	before := a.allHealthy(t, 2, 10*time.Second)

	l := startLoad(t, g.url, 100, true)
	time.Sleep(300 * time.Millisecond)
	d.Stop(t)
	time.Sleep(10 * time.Second)
	members, err := g.client().Members(context.Background())
	require.NoError(t, err)
	assert.True(t, slices.ContainsFunc(members, func(m api.Member) bool { return m.Name == node && m.Status == "alive" }),
		"membership kept while the engine is down: %+v", members)
	if network == "host" {
		assert.Len(t, g.backends(t), 2, "host-network containers keep serving")
	}
	d.Start(t)
	after := a.allHealthy(t, 2, 30*time.Second)
	g.waitBackends(t, want, 10*time.Second)
	time.Sleep(time.Second)
	l.finish()

	for i := range before {
		assert.Equal(t, before[i].ID, after[i].ID, "containers untouched")
		assert.Zero(t, after[i].Restarts)
	}
	assert.False(t, a.exited(), "agent survives the engine's absence")
	log, err := os.ReadFile(a.log)
	require.NoError(t, err)
	assert.Contains(t, string(log), "cannot list replicas")
	t.Logf("MEASURE %s network, load while the engine was down 10 s: sent=%d failed=%d", network, l.sent.Load(), l.failed.Load())
	require.Zero(t, l.failed.Load(), "failed requests:\n%s", l.failures())
}
