package testutil

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/stretchr/testify/require"
)

// RequireDocker returns a client for the engine named by DOCKER_HOST (make
// test starts one; see scripts/test-dockerd.sh). Without an engine the test
// is skipped with the reason, except when CI=true, where it fails: CI must
// run the Docker tests.
func RequireDocker(t testing.TB) *client.Client {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err = cli.Ping(ctx); err == nil {
			t.Cleanup(func() { cli.Close() })
			return cli
		}
		host := cli.DaemonHost()
		cli.Close()
		err = &engineError{host: host, err: err}
	}
	Unavailable(t, "no Docker engine (%v); `make test` starts one and sets DOCKER_HOST", err)
	return nil
}

type engineError struct {
	host string
	err  error
}

func (e *engineError) Error() string { return "engine at " + e.host + ": " + e.err.Error() }

var (
	imagesMu    sync.Mutex
	imagesBuilt = map[string]bool{}
)

// BuildDockerImages builds predictor:<version> images from
// examples/predictor/Dockerfile and a static binary, through the engine's
// API, once per engine and version; the binary is the one
// BuildPredictorImages built for the process runtime when there is one
// (GoBuild). A version ending in "-broken" fails its health check; the bad
// versions of canary rollouts (PredictorErr5, PredictorSlow50,
// PredictorCrash100) pass it and give themselves away in /predict answers.
func BuildDockerImages(t testing.TB, cli *client.Client, versions ...string) {
	t.Helper()
	imagesMu.Lock()
	defer imagesMu.Unlock()
	dockerfile, err := os.ReadFile(filepath.Join(RepoRoot(t), "examples", "predictor", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range versions {
		key := cli.DaemonHost() + " " + v
		if imagesBuilt[key] {
			continue
		}
		dir := t.TempDir()
		BuildPredictorImages(t, dir, v)
		bin, err := os.ReadFile(filepath.Join(dir, "predictor", v))
		if err != nil {
			t.Fatal(err)
		}
		BuildImage(t, cli, "predictor:"+v, dockerfile, map[string][]byte{"predictor": bin})
		imagesBuilt[key] = true
	}
}

// BuildImage builds tag from dockerfile and the executables in files (name
// → content) through the engine's API, with the classic builder (nothing is
// pulled for FROM scratch).
func BuildImage(t testing.TB, cli *client.Client, tag string, dockerfile []byte, files map[string][]byte) {
	t.Helper()
	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	add := func(name string, mode int64, data []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(data))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	add("Dockerfile", 0o644, dockerfile)
	for name, data := range files {
		add(name, 0o755, data)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, err := cli.ImageBuild(ctx, &ctxTar, build.ImageBuildOptions{
		Tags: []string{tag}, Remove: true, ForceRemove: true, Version: build.BuilderV1,
	})
	if err != nil {
		t.Fatalf("build %s: %v", tag, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if msg := buildError(out); msg != "" {
		t.Fatalf("build %s: %s", tag, msg)
	}
}

// buildError finds the error in a build's JSON message stream.
func buildError(stream []byte) string {
	dec := json.NewDecoder(bytes.NewReader(stream))
	for {
		var m struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&m); err != nil {
			return ""
		}
		if m.Error != "" {
			return strings.TrimSpace(m.Error)
		}
	}
}

// Dockerd is a private Docker engine a test starts, stops and restarts
// itself (to inject engine failures without disturbing other tests). It has
// its own bridge, so its containers' addresses never collide with those of
// the shared test engine.
type Dockerd struct {
	Dir    string // data-root, exec-root, socket and log live here
	Host   string // DOCKER_HOST value: unix://<Dir>/d.sock
	bridge string
	cmd    *exec.Cmd
	done   chan struct{}
}

var bridgeSeq atomic.Int32

// StartDockerd starts a private engine with --live-restore (containers
// survive its stop) and registers its stop, its bridge's removal and its
// mounts' cleanup. It skips or fails like RequireDocker when the engine
// cannot run here.
func StartDockerd(t testing.TB) *Dockerd {
	t.Helper()
	RequireTool(t, "dockerd")
	dir, err := os.MkdirTemp("", "hd")
	require.NoError(t, err)
	n := bridgeSeq.Add(1)
	d := &Dockerd{Dir: dir, Host: "unix://" + dir + "/d.sock", bridge: fmt.Sprintf("herdt%d%d", os.Getpid()%10000, n)}
	cidr := fmt.Sprintf("10.%d.%d.1/24", 200+int(n)%50, os.Getpid()%250)
	for _, args := range [][]string{
		{"link", "add", d.bridge, "type", "bridge"},
		{"addr", "add", cidr, "dev", d.bridge},
		{"link", "set", d.bridge, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	t.Cleanup(func() {
		d.removeAll(t)
		d.Stop(t)
		_ = exec.Command("ip", "link", "del", d.bridge).Run()
		unmountUnder(dir)
		_ = os.RemoveAll(dir)
	})
	d.Start(t)
	return d
}

// Start starts the engine (again) and waits until it answers.
func (d *Dockerd) Start(t testing.TB) {
	t.Helper()
	logFile, err := os.OpenFile(filepath.Join(d.Dir, "dockerd.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	require.NoError(t, err)
	defer logFile.Close()
	d.cmd = exec.Command("dockerd", "--storage-driver=vfs", "--iptables=false", "--ip-forward=false",
		"--ip-masq=false", "--ip6tables=false", "--live-restore", "--bridge="+d.bridge,
		"-H", d.Host, "--data-root", filepath.Join(d.Dir, "data"), "--exec-root", filepath.Join(d.Dir, "x"),
		"--pidfile", filepath.Join(d.Dir, "d.pid"))
	d.cmd.Stdout, d.cmd.Stderr = logFile, logFile
	require.NoError(t, d.cmd.Start())
	d.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(d.cmd, d.done)
	cli, err := client.NewClientWithOpts(client.WithHost(d.Host), client.WithAPIVersionNegotiation())
	require.NoError(t, err)
	defer cli.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Ping(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(d.Dir, "dockerd.log"))
			t.Fatalf("private dockerd did not answer at %s: %v\n%s", d.Host, err, Tail(string(b), 2000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop sends SIGTERM and waits for the engine to exit (live-restore keeps
// its containers running). Idempotent.
func (d *Dockerd) Stop(t testing.TB) {
	t.Helper()
	if d.cmd == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
		t.Errorf("private dockerd did not stop within 30 s of SIGTERM; killed")
	}
	d.cmd = nil
}

// removeAll removes every container (live-restore would keep them running
// after the engine stops). The engine is started first if it is down.
func (d *Dockerd) removeAll(t testing.TB) {
	t.Helper()
	if d.cmd == nil {
		d.Start(t)
	}
	cli := d.Client(t)
	ctx := context.Background()
	list, err := cli.ContainerList(ctx, container.ListOptions{All: true})
	if err != nil {
		t.Errorf("list containers of the private engine: %v", err)
		return
	}
	for _, c := range list {
		if err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil {
			t.Errorf("remove container %s: %v", c.ID, err)
		}
	}
}

// Client is a client of this engine.
func (d *Dockerd) Client(t testing.TB) *client.Client {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.WithHost(d.Host), client.WithAPIVersionNegotiation())
	require.NoError(t, err)
	t.Cleanup(func() { cli.Close() })
	return cli
}

// unmountUnder lazily unmounts whatever a daemon left mounted under dir.
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return
	}
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
			mounts = append(mounts, f[1])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(mounts)))
	for _, m := range mounts {
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
}
