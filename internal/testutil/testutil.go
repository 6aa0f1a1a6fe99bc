// Package testutil builds Herd's binaries for tests and finds free loopback
// ports. It is for tests only.
package testutil

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// RepoRoot is the module's root directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the repository")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

var (
	buildMu  sync.Mutex
	nextPort atomic.Int64
)

// GoBuild builds pkg (relative to the repo root, like "./cmd/agent") into
// out with the given -ldflags -X settings.
func GoBuild(t testing.TB, pkg, out string, xflags ...string) {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	args := []string{"build", "-o", out}
	if len(xflags) > 0 {
		ld := ""
		for _, x := range xflags {
			ld += " -X " + x
		}
		args = append(args, "-ldflags", ld)
	}
	args = append(args, pkg)
	cmd := exec.Command("go", args...)
	cmd.Dir = RepoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
}

// BuildPredictorImages lays out predictor versions as the process runtime
// expects: <dir>/predictor/<version>. A version ending in "-broken" builds
// one whose health check fails.
func BuildPredictorImages(t testing.TB, dir string, versions ...string) {
	t.Helper()
	BuildExampleImages(t, dir, "predictor", versions...)
}

// BuildExampleImages builds versions of the example ./examples/<name> as
// <dir>/<name>/<version>, as BuildPredictorImages does the predictor
// (predictor-grpc: the gRPC predictor).
func BuildExampleImages(t testing.TB, dir, name string, versions ...string) {
	t.Helper()
	for _, v := range versions {
		out := filepath.Join(dir, name, v)
		broken := "false"
		if strings.HasSuffix(v, "-broken") {
			broken = "true"
		}
		GoBuild(t, "./examples/"+name, out, "main.version="+v, "main.broken="+broken)
	}
}

// FreePort returns a TCP port free on ip at the time of the call. It is
// drawn below the kernel's ephemeral range, like FreePortRange: a port the
// kernel handed out for a listen on :0 and took back is the next source port
// of some outgoing connection, and a gateway started on it a moment later
// finds it in use.
func FreePort(t testing.TB, ip string) uint16 {
	t.Helper()
	return FreePortRange(t, 1, ip)
}

// FreePortRange returns a base port such that base … base+n-1 are free on
// every ip, for both TCP and UDP (gossip needs both). The ports lie between
// 10000 and the start of the ephemeral range (net.ipv4.ip_local_port_range),
// where no outgoing connection takes them meanwhile.
func FreePortRange(t testing.TB, n int, ips ...string) uint16 {
	t.Helper()
	lo, hi := 10000, ephemeralLow()
	for try := 0; try < 200; try++ {
		// Successive calls walk forward so that two ranges handed out before
		// either is bound never overlap; the pid spreads test binaries apart.
		base := lo + int((int64(os.Getpid())*97+nextPort.Add(int64(n)+1)-int64(n)-1)%int64(hi-lo))
		if base+n <= hi && rangeFree(base, n, ips) {
			return uint16(base)
		}
	}
	t.Fatalf("no %d free consecutive ports", n)
	return 0
}

// ephemeralLow is the first port of the kernel's ephemeral range, 32768
// when it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	var low, high int
	if _, err := fmt.Sscan(string(b), &low, &high); err != nil || low <= 10000+1000 {
		return 32768
	}
	return low
}

func rangeFree(base, n int, ips []string) bool {
	for p := base; p < base+n; p++ {
		for _, ip := range ips {
			addr := net.JoinHostPort(ip, fmt.Sprint(p))
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return false
			}
			l.Close()
			u, err := net.ListenPacket("udp", addr)
			if err != nil {
				return false
			}
			u.Close()
		}
	}
	return true
}

// WaitOK polls GET http://addr+path until it answers 200 (within the given
// time) and returns the body.
func WaitOK(t testing.TB, addr, path string, within time.Duration) string {
	t.Helper()
	var body string
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == http.StatusOK
	}, within, 20*time.Millisecond, "%s answers %s", addr, path)
	return body
}

// RunWithTempDir is a TestMain body: it makes a temporary directory, stores
// its path in *dir, runs the tests and removes the directory.
func RunWithTempDir(m *testing.M, prefix string, dir *string) int {
	d, err := os.MkdirTemp("", prefix)
	if err != nil {
		panic(err)
	}
	*dir = d
	defer os.RemoveAll(d)
	return m.Run()
}

// Tail is the last n bytes of s, for logs in failure messages.
func Tail(s string, n int) string { return s[max(0, len(s)-n):] }

// PredictRequest is a POST /predict of text to base (a gateway's or a
// replica's URL), as load tests send it.
func PredictRequest(base, text string) *http.Request {
	req, err := http.NewRequest(http.MethodPost, base+"/predict", strings.NewReader(`{"text":"`+text+`"}`))
	if err != nil {
		panic(err) // a malformed base URL: the test's own mistake
	}
	req.Header.Set("Content-Type", "application/json")
	return req
}

// Failure sends req through client, reading the answer through, and says
// why it failed: the client's error, or a status other than 200 OK. It is
// "" when the request was served.
func Failure(client *http.Client, req *http.Request) string {
	resp, err := client.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return "read the answer: " + err.Error()
	}
	if resp.StatusCode != http.StatusOK {
		return resp.Status
	}
	return ""
}
