package process

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/internal/testutil"
	"github.com/herd-cluster/herd/pkg/runtime"
)

var imagesDir string

func TestMain(m *testing.M) {
	os.Exit(testutil.RunWithTempDir(m, "herd-process-images-", &imagesDir))
}

func newDriver(t *testing.T, stateDir string) *Driver {
	t.Helper()
	d, err := New(Config{ImagesDir: imagesDir, StateDir: stateDir, Logger: hclog.NewNullLogger()})
	require.NoError(t, err)
	return d
}

func waitVersion(t *testing.T, addr netip.AddrPort) string {
	t.Helper()
	return testutil.WaitOK(t, addr.String(), "/version", 10*time.Second)
}

func pidGone(pid int) bool {
	return syscall.Kill(pid, 0) != nil
}

func TestStartListAdoptStop(t *testing.T) {
	testutil.BuildPredictorImages(t, imagesDir, "1.0.0")
	img, err := runtime.ParseImage("predictor:1.0.0")
	require.NoError(t, err)
	stateDir := t.TempDir()
	d := newDriver(t, stateDir)
	ctx := context.Background()
	port := testutil.FreePort(t, "127.0.0.1")
	spec := runtime.Spec{Service: "predictor", Node: "n1", Index: 2, Image: img, HostIP: netip.MustParseAddr("127.0.0.1"), Port: port}
	r, err := d.Start(ctx, spec)
	require.NoError(t, err)
	t.Cleanup(func() { _ = syscall.Kill(-r.PID, syscall.SIGKILL) })
	assert.Equal(t, fmt.Sprintf(`{"instance":"n1/2","version":"1.0.0"}`+"\n"), waitVersion(t, r.Addr()))

	// A second driver over the same state dir is an agent restarted after a
	// crash: it finds the replica running and can stop it.
	adopter := newDriver(t, stateDir)
	list, err := adopter.List(ctx)
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.True(t, list[0].Running)
	assert.Equal(t, r.PID, list[0].PID)
	assert.Equal(t, img, list[0].Image)
	assert.Equal(t, port, list[0].Port)

	require.NoError(t, adopter.Stop(ctx, list[0], 5*time.Second))
	require.Eventually(t, func() bool { return pidGone(r.PID) }, 5*time.Second, 10*time.Millisecond)
	list, err = d.List(ctx)
	require.NoError(t, err)
	assert.Empty(t, list)
	logs, err := os.ReadFile(filepath.Join(stateDir, "predictor-2.log"))
	require.NoError(t, err)
	assert.Contains(t, string(logs), "predictor stopped", "SIGTERM gave a graceful shutdown")
}

func TestExitedReplicaIsReportedNotRunning(t *testing.T) {
	testutil.BuildPredictorImages(t, imagesDir, "1.0.0")
	img, _ := runtime.ParseImage("predictor:1.0.0")
	d := newDriver(t, t.TempDir())
	r, err := d.Start(context.Background(), runtime.Spec{Service: "predictor", Node: "n", Index: 0, Image: img,
		HostIP: netip.MustParseAddr("127.0.0.1"), Port: testutil.FreePort(t, "127.0.0.1")})
	require.NoError(t, err)
	waitVersion(t, r.Addr())
	require.NoError(t, syscall.Kill(r.PID, syscall.SIGKILL))
	require.Eventually(t, func() bool {
		list, err := d.List(context.Background())
		return err == nil && len(list) == 1 && !list[0].Running
	}, 5*time.Second, 10*time.Millisecond)
}

func TestUnknownImageAndCorruptState(t *testing.T) {
	stateDir := t.TempDir()
	d := newDriver(t, stateDir)
	err := d.Resolve(context.Background(), runtime.Image{Name: "predictor", Tag: "9.9.9"})
	require.ErrorIs(t, err, runtime.ErrImageNotFound)
	assert.Contains(t, err.Error(), "predictor:9.9.9")

	require.NoError(t, os.WriteFile(filepath.Join(stateDir, "predictor-0.json"), []byte(`{"pid":`), 0o644))
	list, err := d.List(context.Background())
	require.NoError(t, err, "a corrupt file is reported in the log and skipped")
	assert.Empty(t, list)
	_, err = readState(filepath.Join(stateDir, "predictor-0.json"))
	assert.ErrorContains(t, err, "corrupt state file")
}

// TestImageReferences: a registry host is one more directory level; a
// digest is refused, naming the runtime; no Image, even one built by hand,
// resolves to a file outside the images dir.
func TestImageReferences(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "images")
	d, err := New(Config{ImagesDir: dir, StateDir: t.TempDir(), Logger: hclog.NewNullLogger()})
	require.NoError(t, err)
	exe := func(rel string) string {
		path := filepath.Join(root, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte("#!/bin/sh\n"), 0o755))
		return path
	}

	want := exe("images/registry:5000/team/predictor/1.1.0")
	img, err := runtime.ParseImage("registry:5000/team/predictor:1.1.0")
	require.NoError(t, err)
	got, err := d.Executable(img)
	require.NoError(t, err)
	assert.Equal(t, want, got)

	exe("images/predictor/1.1.0")
	const digest = "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, s := range []string{"predictor" + digest, "predictor:1.1.0" + digest} {
		img, err := runtime.ParseImage(s)
		require.NoError(t, err)
		err = d.Resolve(context.Background(), img)
		require.ErrorIs(t, err, runtime.ErrImageUnsupported, s)
		assert.ErrorContains(t, err, "process runtime: image "+s+": ")
	}

	exe("outside/x")
	exe("x")
	for _, img := range []runtime.Image{{Name: "../outside", Tag: "x"}, {Name: "a", Tag: "../../x"},
		{Name: "/abs", Tag: "x"}, {Tag: "x"}, {Name: "a/../..", Tag: "x"}} {
		_, err := d.Executable(img)
		require.ErrorIs(t, err, runtime.ErrImageUnsupported, "%+v", img)
	}
}

// TestArms: a canary's replicas beside the agent's own, with the same
// index: their files are apart, their instance names and List say their
// arm, and stopping one leaves the others.
func TestArms(t *testing.T) {
	testutil.BuildPredictorImages(t, imagesDir, "1.0.0")
	img, err := runtime.ParseImage("predictor:1.0.0")
	require.NoError(t, err)
	stateDir := t.TempDir()
	d := newDriver(t, stateDir)
	ctx := context.Background()
	base := testutil.FreePortRange(t, 3, "127.0.0.1")
	byArm := map[runtime.Arm]runtime.Replica{}
	for i, arm := range []runtime.Arm{runtime.ArmStable, runtime.ArmCanary, runtime.ArmBaseline} {
		r, err := d.Start(ctx, runtime.Spec{Service: "predictor", Node: "n1", Arm: arm, Index: 0, Image: img,
			HostIP: netip.MustParseAddr("127.0.0.1"), Port: base + uint16(i)})
		require.NoError(t, err)
		t.Cleanup(func() { _ = syscall.Kill(-r.PID, syscall.SIGKILL) })
		assert.Equal(t, arm, r.Arm)
		byArm[arm] = r
	}
	assert.Equal(t, `{"instance":"n1/0","version":"1.0.0"}`+"\n", waitVersion(t, byArm[runtime.ArmStable].Addr()))
	assert.Equal(t, `{"instance":"n1/canary0","version":"1.0.0"}`+"\n", waitVersion(t, byArm[runtime.ArmCanary].Addr()))
	assert.Equal(t, `{"instance":"n1/baseline0","version":"1.0.0"}`+"\n", waitVersion(t, byArm[runtime.ArmBaseline].Addr()))
	for _, name := range []string{"predictor-0", "predictor-canary0", "predictor-baseline0"} {
		assert.FileExists(t, filepath.Join(stateDir, name+".json"))
		assert.FileExists(t, filepath.Join(stateDir, name+".log"))
	}

	list, err := newDriver(t, stateDir).List(ctx)
	require.NoError(t, err)
	require.Len(t, list, 3)
	for _, r := range list {
		assert.Equal(t, byArm[r.Arm].PID, r.PID, "arm %q", r.Arm)
		assert.True(t, r.Running)
	}

	require.NoError(t, d.Stop(ctx, byArm[runtime.ArmCanary], 5*time.Second))
	assert.True(t, pidGone(byArm[runtime.ArmCanary].PID))
	list, err = d.List(ctx)
	require.NoError(t, err)
	require.Len(t, list, 2)
	for _, r := range list {
		assert.NotEqual(t, runtime.ArmCanary, r.Arm)
		assert.False(t, pidGone(r.PID))
	}

	_, err = d.Start(ctx, runtime.Spec{Service: "predictor", Node: "n1", Arm: "blue", Image: img,
		HostIP: netip.MustParseAddr("127.0.0.1"), Port: base})
	assert.ErrorContains(t, err, `unknown arm "blue"`)
}
