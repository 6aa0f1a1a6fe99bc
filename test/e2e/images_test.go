package e2e

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/internal/testutil"
)

// TestDockerImages: the gateway and agent images built by `make
// docker-images` (deploy/docker/*.Dockerfile) run a cluster as the Dockerfiles' comments
// say: host network, the agent with the engine's socket mounted, starting
// the replicas as the engine's containers. The agent container stopped, its
// replicas keep running (the next agent adopts them) and the gateway has
// drained them.
func TestDockerImages(t *testing.T) {
	cli := dockerCluster(t, "1.0.0")
	testutil.RequireTool(t, "docker")
	make := exec.Command("make", "-s", "docker-images", "DIST="+t.TempDir(), "VERSION=test", "RELEASE_PLATFORMS=linux/amd64")
	make.Dir = testutil.RepoRoot(t)
	out, err := make.CombinedOutput()
	require.NoError(t, err, "make docker-images: %s", out)
	socket, ok := strings.CutPrefix(cli.DaemonHost(), "unix://")
	require.True(t, ok, "the engine is on a unix socket: %s", cli.DaemonHost())

	g := &gatewayProc{
		url:    fmt.Sprintf("http://127.0.0.1:%d", testutil.FreePort(t, "127.0.0.1")),
		admin:  fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t, "127.0.0.1")),
		gossip: fmt.Sprintf("127.0.0.1:%d", testutil.FreePortRange(t, 1, "127.0.0.1")),
	}
	runContainer(t, cli, "herd-gateway-test", "herd/gateway:test", nil,
		"run", "--node", "gw-image", "--listen", strings.TrimPrefix(g.url, "http://"), "--admin", g.admin,
		"--bind", g.gossip, "--gossip-profile", gossipProfile())
	g.waitReady(t)

	node := uniqueNode("host-image")
	t.Cleanup(func() { removeContainers(t, node) })
	ip := "127.0.0.6"
	base := testutil.FreePortRange(t, 2, ip)
	agentID := runContainer(t, cli, "herd-agent-test", "herd/agent:test", []string{socket + ":/var/run/docker.sock"},
		"join", "--node", node, "--join", g.gossip, "--bind", fmt.Sprintf("%s:%d", ip, testutil.FreePortRange(t, 1, ip)),
		"--admin", fmt.Sprintf("%s:%d", ip, testutil.FreePort(t, ip)), "--host-ip", ip, "--replicas", "2",
		"--base-port", strconv.Itoa(int(base)), "--health-interval", "200ms", "--gossip-profile", gossipProfile())
	g.waitBackends(t, 2, 60*time.Second)
	v, err := getVersion(t, g.url)
	require.NoError(t, err)
	assert.Equal(t, "1.0.0", v.Version)
	replicas := containers(t, node, false)
	assert.Len(t, replicas, 2, "the agent in its container started the replicas through the mounted socket")

	timeout := 30
	require.NoError(t, cli.ContainerStop(context.Background(), agentID, container.StopOptions{Timeout: &timeout}))
	g.waitBackends(t, 0, 10*time.Second)
	assert.Equal(t, containerIDs(replicas), containerIDs(containers(t, node, false)),
		"the replicas outlive the agent's container, for the next one to adopt")
}

// runContainer starts image on the host's network with args and binds, and
// removes it (and its volumes) when the test ends, showing its log if the
// test failed.
func runContainer(t *testing.T, cli *client.Client, name, image string, binds []string, args ...string) string {
	t.Helper()
	ctx := context.Background()
	name = fmt.Sprintf("%s-%d", name, time.Now().UnixNano()%1e6)
	created, err := cli.ContainerCreate(ctx, &container.Config{Image: image, Cmd: args},
		&container.HostConfig{NetworkMode: "host", Binds: binds}, nil, nil, name)
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			if logs, err := cli.ContainerLogs(ctx, created.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true}); err == nil {
				b, _ := io.ReadAll(logs)
				logs.Close()
				t.Logf("--- log of container %s ---\n%s", name, testutil.Tail(string(b), 4000))
			}
		}
		_ = cli.ContainerRemove(ctx, created.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
	})
	require.NoError(t, cli.ContainerStart(ctx, created.ID, container.StartOptions{}))
	return created.ID
}
