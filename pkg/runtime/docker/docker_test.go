package docker

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/internal/testutil"
	"github.com/herd-cluster/herd/pkg/runtime"
)

var loopback = netip.MustParseAddr("127.0.0.1")

func newDriver(t *testing.T, node string) (*Driver, *client.Client) {
	t.Helper()
	return newDriverConfig(t, Config{Node: node})
}

// newDriverConfig is newDriver with cfg's settings.
func newDriverConfig(t *testing.T, cfg Config) (*Driver, *client.Client) {
	t.Helper()
	cli := testutil.RequireDocker(t)
	testutil.BuildDockerImages(t, cli, "1.0.0")
	cfg.Logger = hclog.NewNullLogger()
	d, err := New(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		// Whatever a failed test left behind.
		list, _ := d.List(context.Background())
		for _, r := range list {
			_ = d.Stop(context.Background(), r, 0)
		}
		d.Close()
	})
	return d, cli
}

func spec(node string, index int, port uint16) runtime.Spec {
	return runtime.Spec{Service: "predictor", Node: node, Index: index, HostIP: loopback, Port: port,
		Image: runtime.Image{Name: "predictor", Tag: "1.0.0"}}
}

func get(t *testing.T, addr netip.AddrPort, path string) string {
	t.Helper()
	return testutil.WaitOK(t, addr.String(), path, 20*time.Second)
}

func TestStartListAdoptStop(t *testing.T) {
	node := "drv-" + strconv.FormatInt(time.Now().UnixNano()%1e6, 10)
	d, cli := newDriver(t, node)
	ctx := context.Background()
	base := testutil.FreePortRange(t, 2, "127.0.0.1")

	var started []runtime.Replica
	for i := range 2 {
		r, err := d.Start(ctx, spec(node, i, base+uint16(i)))
		require.NoError(t, err)
		assert.True(t, r.Running)
		assert.NotZero(t, r.PID)
		assert.Equal(t, netip.AddrPortFrom(loopback, base+uint16(i)), r.Addr())
		started = append(started, r)
	}

	// Port publishing: the service answers on the host port, with the
	// instance name the driver gave it.
	body := get(t, started[1].Addr(), "/version")
	assert.Contains(t, body, `"version":"1.0.0"`)
	assert.Contains(t, body, node+"/1")

	// Labels say the container is Herd's, and its name is predictable.
	info, err := cli.ContainerInspect(ctx, started[0].ID)
	require.NoError(t, err)
	assert.Equal(t, "/"+ContainerName(spec(node, 0, base)), info.Name)
	assert.Equal(t, map[string]string{
		LabelManaged: "true", LabelService: "predictor", LabelNode: node, LabelIndex: "0",
		LabelImage: "predictor:1.0.0", LabelHostIP: "127.0.0.1", LabelPort: strconv.Itoa(int(base)),
	}, filterHerd(info.Config.Labels))
	require.NotNil(t, info.HostConfig.Init)
	assert.True(t, *info.HostConfig.Init, "an init process forwards SIGTERM to the service")

	// The agent checks the replicas: the engine runs no check of its own,
	// though the image has one.
	require.NotNil(t, info.Config.Healthcheck)
	assert.Equal(t, []string{"NONE"}, info.Config.Healthcheck.Test)
	assert.Nil(t, info.State.Health)

	// A second driver for the same node (a restarted agent) finds both by
	// their labels; one for another node finds none.
	again, err := New(ctx, Config{Node: node})
	require.NoError(t, err)
	defer again.Close()
	list, err := again.List(ctx)
	require.NoError(t, err)
	require.Len(t, list, 2)
	byIndex := map[int]runtime.Replica{}
	for _, r := range list {
		byIndex[r.Index] = r
	}
	for i, want := range started {
		got := byIndex[i]
		assert.Equal(t, want.ID, got.ID)
		assert.Equal(t, want.Addr(), got.Addr())
		assert.Equal(t, want.Image, got.Image)
		assert.Equal(t, "predictor", got.Service)
		assert.True(t, got.Running)
	}
	other, err := New(ctx, Config{Node: node + "-other"})
	require.NoError(t, err)
	defer other.Close()
	none, err := other.List(ctx)
	require.NoError(t, err)
	assert.Empty(t, none)

	// An exited container is listed as not running.
	require.NoError(t, cli.ContainerKill(ctx, started[1].ID, "KILL"))
	require.Eventually(t, func() bool {
		list, err := d.List(ctx)
		require.NoError(t, err)
		for _, r := range list {
			if r.ID == started[1].ID {
				return !r.Running
			}
		}
		return false
	}, 10*time.Second, 50*time.Millisecond)

	// Stop is graceful and removes the container; stopping it again is fine.
	began := time.Now()
	require.NoError(t, again.Stop(ctx, byIndex[0], 10*time.Second))
	assert.Less(t, time.Since(began), 8*time.Second, "the service exits on SIGTERM, well before the grace period")
	require.NoError(t, d.Stop(ctx, started[1], time.Second))
	require.NoError(t, d.Stop(ctx, started[1], time.Second))
	list, err = d.List(ctx)
	require.NoError(t, err)
	assert.Empty(t, list)
	_, err = cli.ContainerInspect(ctx, started[0].ID)
	assert.Error(t, err, "container removed")
}

// TestArms: a canary's replicas beside the agent's own, with the same
// index: their containers are named and labelled apart, List says their
// arm, and stopping one leaves the others.
func TestArms(t *testing.T) {
	node := "arms-" + strconv.FormatInt(time.Now().UnixNano()%1e6, 10)
	d, cli := newDriver(t, node)
	ctx := context.Background()
	base := testutil.FreePortRange(t, 3, "127.0.0.1")
	byArm := map[runtime.Arm]runtime.Replica{}
	for i, arm := range []runtime.Arm{runtime.ArmStable, runtime.ArmCanary, runtime.ArmBaseline} {
		s := spec(node, 0, base+uint16(i))
		s.Arm = arm
		r, err := d.Start(ctx, s)
		require.NoError(t, err)
		assert.Equal(t, arm, r.Arm)
		byArm[arm] = r
		info, err := cli.ContainerInspect(ctx, r.ID)
		require.NoError(t, err)
		assert.Equal(t, "/"+ContainerName(s), info.Name)
		label, ok := info.Config.Labels[LabelArm]
		assert.Equal(t, string(arm), label)
		assert.Equal(t, arm != runtime.ArmStable, ok, "only a canary's replicas carry %s", LabelArm)
	}
	assert.Equal(t, "herd-predictor-"+node+"-canary0", ContainerName(runtime.Spec{Service: "predictor", Node: node, Arm: runtime.ArmCanary}))
	assert.Contains(t, get(t, byArm[runtime.ArmCanary].Addr(), "/version"), node+"/canary0")
	assert.Contains(t, get(t, byArm[runtime.ArmBaseline].Addr(), "/version"), node+"/baseline0")

	list, err := d.List(ctx)
	require.NoError(t, err)
	require.Len(t, list, 3)
	for _, r := range list {
		assert.Equal(t, byArm[r.Arm].ID, r.ID, "arm %q", r.Arm)
	}
	require.NoError(t, d.Stop(ctx, byArm[runtime.ArmCanary], time.Second))
	list, err = d.List(ctx)
	require.NoError(t, err)
	require.Len(t, list, 2)
	for _, r := range list {
		assert.NotEqual(t, runtime.ArmCanary, r.Arm)
		assert.True(t, r.Running)
	}
}

// TestImageHealthcheck: with ImageHealthcheck the engine runs the image's
// health check (the binary checks itself), and reports the container
// healthy.
func TestImageHealthcheck(t *testing.T) {
	node := "drv-hc-" + strconv.FormatInt(time.Now().UnixNano()%1e6, 10)
	d, cli := newDriverConfig(t, Config{Node: node, ImageHealthcheck: true})
	ctx := context.Background()
	r, err := d.Start(ctx, spec(node, 0, testutil.FreePort(t, "127.0.0.1")))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := cli.ContainerInspect(ctx, r.ID)
		return err == nil && info.State.Health != nil && info.State.Health.Status == container.Healthy
	}, 30*time.Second, 200*time.Millisecond, "docker reports the container healthy")
	require.NoError(t, d.Stop(ctx, r, time.Second))
}

func TestStartReplacesStaleContainerOfSameName(t *testing.T) {
	node := "stale-" + strconv.FormatInt(time.Now().UnixNano()%1e6, 10)
	d, cli := newDriver(t, node)
	ctx := context.Background()
	port := testutil.FreePort(t, "127.0.0.1")
	first, err := d.Start(ctx, spec(node, 0, port))
	require.NoError(t, err)
	require.NoError(t, cli.ContainerKill(ctx, first.ID, "KILL"))
	second, err := d.Start(ctx, spec(node, 0, port))
	require.NoError(t, err)
	assert.NotEqual(t, first.ID, second.ID)
	get(t, second.Addr(), "/healthz")
	list, err := d.List(ctx)
	require.NoError(t, err)
	assert.Len(t, list, 1, "no duplicate")
}

func TestPortInUseIsNamedAndLeavesNothing(t *testing.T) {
	node := "port-" + strconv.FormatInt(time.Now().UnixNano()%1e6, 10)
	d, _ := newDriver(t, node)
	ctx := context.Background()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	taken := uint16(l.Addr().(*net.TCPAddr).Port)
	free := testutil.FreePort(t, "127.0.0.1")

	ok, err := d.Start(ctx, spec(node, 0, free))
	require.NoError(t, err)
	_, err = d.Start(ctx, spec(node, 1, taken))
	require.ErrorIs(t, err, runtime.ErrPortInUse)
	assert.Contains(t, err.Error(), strconv.Itoa(int(taken)))

	list, err := d.List(ctx)
	require.NoError(t, err)
	require.Len(t, list, 1, "the failed container is removed")
	assert.Equal(t, ok.ID, list[0].ID)
	get(t, ok.Addr(), "/healthz") // the other replica still runs
}

func TestResolveMissingImage(t *testing.T) {
	d, _ := newDriver(t, "resolve")
	ctx := context.Background()
	require.NoError(t, d.Resolve(ctx, runtime.Image{Name: "predictor", Tag: "1.0.0"}))
	err := d.Resolve(ctx, runtime.Image{Name: "predictor", Tag: "9.9.9"})
	require.ErrorIs(t, err, runtime.ErrImageNotFound)
	assert.Contains(t, err.Error(), "predictor:9.9.9")
	_, err = d.Start(ctx, runtime.Spec{Service: "predictor", Node: "resolve", HostIP: loopback, Port: 1,
		Image: runtime.Image{Name: "predictor", Tag: "9.9.9"}})
	require.ErrorIs(t, err, runtime.ErrImageNotFound)

	// A digest matches only an image the engine pulled from a registry: a
	// locally built one has no digest, even under its own image ID.
	info, err := d.cli.ImageInspect(ctx, "predictor:1.0.0")
	require.NoError(t, err)
	for _, s := range []string{"predictor@" + info.ID, "predictor:1.0.0@" + info.ID} {
		img, err := runtime.ParseImage(s)
		require.NoError(t, err)
		err = d.Resolve(ctx, img)
		require.ErrorIs(t, err, runtime.ErrImageNotFound, s)
		assert.Contains(t, err.Error(), s)
	}
}

// TestEngineRef: the engine is asked for name@digest when there is a
// digest, the tag beside it being only for people.
func TestEngineRef(t *testing.T) {
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for in, want := range map[string]string{
		"predictor:1.0.0":                    "predictor:1.0.0",
		"registry:5000/team/predictor:1.1.0": "registry:5000/team/predictor:1.1.0",
		"predictor@" + digest:                "predictor@" + digest,
		"predictor:1.1.0@" + digest:          "predictor@" + digest,
		"registry:5000/p:1@" + digest:        "registry:5000/p@" + digest,
	} {
		img, err := runtime.ParseImage(in)
		require.NoError(t, err)
		assert.Equal(t, want, engineRef(img), in)
	}
}

func TestEngineUnreachable(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix:///nonexistent/herd/docker.sock")
	_, err := New(context.Background(), Config{Node: "x"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "unix:///nonexistent/herd/docker.sock")
	assert.NotContains(t, err.Error(), "\n")
}

func filterHerd(l map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range l {
		if strings.HasPrefix(k, "io.herd.") {
			out[k] = v
		}
	}
	return out
}
