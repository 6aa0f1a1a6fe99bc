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
	"regexp"
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
	builds   = map[string]builtExe{} // by package and -X settings; under buildMu
	nextPort atomic.Int64
)

// builtExe is an executable GoBuild made, as it was then.
type builtExe struct {
	path string
	size int64
	mod  time.Time
}

// GoBuild builds pkg (relative to the repo root, like "./cmd/agent") into
// out with the given -ldflags -X settings. A package built with the same
// settings before in this test binary is copied from that build instead,
// if it is still there as it was built: one link per binary and variant,
// the compiling always from Go's build cache.
func GoBuild(t testing.TB, pkg, out string, xflags ...string) {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	key := pkg + " " + strings.Join(xflags, " ")
	if b, ok := builds[key]; ok && b.path != out && copyBuild(b, out) == nil {
		return
	}
	// Without a symbol table and DWARF, as the release: half the link time
	// (panics still name functions and lines).
	ld := "-s -w"
	for _, x := range xflags {
		ld += " -X " + x
	}
	args := []string{"build", "-o", out, "-ldflags", ld, pkg}
	cmd := exec.Command("go", args...)
	cmd.Dir = RepoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	if fi, err := os.Stat(out); err == nil {
		builds[key] = builtExe{path: out, size: fi.Size(), mod: fi.ModTime()}
	}
}

// copyBuild copies the executable b to out, unless b is gone or changed
// (a test's temporary directory removed, a file overwritten).
func copyBuild(b builtExe, out string) error {
	fi, err := os.Stat(b.path)
	if err != nil {
		return err
	}
	if fi.Size() != b.size || !fi.ModTime().Equal(b.mod) {
		return fmt.Errorf("%s changed since it was built", b.path)
	}
	data, err := os.ReadFile(b.path)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	// Through a new file: out may be an executable that runs.
	tmp := out + ".copy"
	if err := os.WriteFile(tmp, data, 0o755); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

// BuildPredictorImages lays out predictor versions as the process runtime
// expects: <dir>/predictor/<version>. A version ending in "-broken" builds
// one whose health check fails; one ending in a fault (see PredictorFaults:
// PredictorErr5, PredictorSlow50, PredictorCrash100) one whose health
// check passes and whose /predict answers give it away.
func BuildPredictorImages(t testing.TB, dir string, versions ...string) {
	t.Helper()
	BuildExampleImages(t, dir, "predictor", versions...)
}

// BuildExampleImages builds versions of the example ./examples/<name> as
// <dir>/<name>/<version>, as BuildPredictorImages does the predictor
// (predictor-grpc: the gRPC predictor, which has no faults).
func BuildExampleImages(t testing.TB, dir, name string, versions ...string) {
	t.Helper()
	for _, v := range versions {
		out := filepath.Join(dir, name, v)
		broken := "false"
		if strings.HasSuffix(v, "-broken") {
			broken = "true"
		}
		xflags := []string{"main.version=" + v, "main.broken=" + broken}
		if faults := PredictorFaults(v); faults != "" {
			if name != "predictor" {
				// -X of a variable the program lacks is silently ignored.
				t.Fatalf("%s:%s: only the predictor has faults", name, v)
			}
			xflags = append(xflags, "main.faults="+faults)
		}
		GoBuild(t, "./examples/"+name, out, xflags...)
	}
}

// The predictor's bad versions for canary rollouts (issue 21), for tests
// only: BuildPredictorImages and BuildDockerImages build them like any
// version; make build, make images and the release never do. Each passes
// its health checks; only its /predict answers (GET and POST) give it away.
const (
	// PredictorErr5 answers 5 % of /predict requests 500: every 20th.
	PredictorErr5 = "1.1.0-err5"
	// PredictorSlow50 holds every /predict request 50 ms longer.
	PredictorSlow50 = "1.1.0-slow50"
	// PredictorCrash100 exits with status 1 once its first 100 /predict
	// requests are answered; the requests after those are never answered.
	PredictorCrash100 = "1.1.0-crash100"
)

// PredictorFaultVersions are the bad versions above, for a harness that
// builds them all.
func PredictorFaultVersions() []string {
	return []string{PredictorErr5, PredictorSlow50, PredictorCrash100}
}

var faultSuffix = regexp.MustCompile(`-(err|slow|crash)([0-9]+)$`)

// PredictorFaults is the predictor's build-time faults (-X main.faults) a
// version's suffix asks for: -errN answers N % of /predict requests 500,
// -slowN holds each N ms longer, -crashN exits after answering N; "" for a
// version without such a suffix.
func PredictorFaults(version string) string {
	m := faultSuffix.FindStringSubmatch(version)
	if m == nil {
		return ""
	}
	switch m[1] {
	case "err":
		return "error-rate=" + m[2] + "%"
	case "slow":
		return "delay=" + m[2] + "ms"
	default:
		return "crash-after=" + m[2]
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
