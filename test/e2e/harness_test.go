// Package e2e runs Herd's real binaries as processes on loopback: a gateway
// on 127.0.0.1 and agents on 127.0.0.2, .3, … as distinct hosts.
//
// Most tests run one after another: they measure, or put load on the 2
// cores a CI machine has. TestAutoscale holds two minutes of steady load at
// a low rate, mostly waiting; it is parallel, and so are the tests that are
// short and light (bad input, completion, config files, key rotation, a rogue
// member, a coordinator restart, a gateway losing gossip), which Go runs
// together once the others are done: they are over within TestAutoscale's
// first minute, before its steady window begins. Every test has its own
// gossip cluster, ports (testutil.FreePort) and directories, and none of the
// parallel ones changes the environment.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/internal/testutil"
	"github.com/herd-cluster/herd/pkg/agent"
	"github.com/herd-cluster/herd/pkg/api"
)

// binDir holds the binaries built once for the whole package.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(testutil.RunWithTempDir(m, "herd-e2e-bin-", &binDir))
}

var buildOnce sync.Once

func buildAll(t *testing.T) {
	t.Helper()
	buildOnce.Do(func() {
		for _, cmd := range []string{"gateway", "agent", "clusterctl"} {
			testutil.GoBuild(t, "./cmd/"+cmd, filepath.Join(binDir, cmd))
		}
		// The bad versions of canary rollouts too (testutil.PredictorErr5, …):
		// one link each, the compiling shared through Go's build cache.
		versions := append([]string{"1.0.0", "1.1.0", "1.1.0-broken"}, testutil.PredictorFaultVersions()...)
		testutil.BuildPredictorImages(t, filepath.Join(binDir, "images"), versions...)
	})
}

// proc is a process the test started. Stop and Kill are idempotent; Cleanup
// kills whatever is left.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	return startProcEnv(t, name, nil, args...)
}

// startProcEnv is startProc with env added to the test's environment.
func startProcEnv(t *testing.T, name string, env []string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	logFile, err := os.Create(logPath)
	require.NoError(t, err)
	bin := args[0]
	if !filepath.IsAbs(bin) {
		bin = filepath.Join(binDir, bin)
	}
	cmd := exec.Command(bin, args[1:]...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), env...)
	require.NoError(t, cmd.Start())
	logFile.Close()
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		// SIGTERM first: an agent on the process runtime stops its replicas.
		p.signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			p.signal(syscall.SIGKILL)
			<-p.done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("--- log of %s ---\n%s", name, testutil.Tail(string(b), 4000))
		}
	})
	return p
}

// output is everything the process has logged so far.
func (p *proc) output() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

func (p *proc) signal(sig syscall.Signal) {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(sig)
	}
}

// stop sends SIGTERM and waits for the exit.
func (p *proc) stop(t *testing.T, within time.Duration) {
	t.Helper()
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(within):
		t.Fatalf("%s did not exit within %s of SIGTERM", p.name, within)
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// gatewayProc is a running gateway.
type gatewayProc struct {
	*proc
	url, admin, gossip string
	token              string // --token, if the test gave one
	args               []string
}

// restart starts the gateway again with the same flags and data dir.
func (g *gatewayProc) restart(t *testing.T) {
	t.Helper()
	g.proc = startProc(t, "gateway", g.args...)
	g.waitReady(t)
}

func startGateway(t *testing.T, extra ...string) *gatewayProc {
	t.Helper()
	g := newGateway(t, extra...)
	g.proc = startProc(t, "gateway", g.args...)
	g.waitReady(t)
	return g
}

// newGateway is a gateway's addresses and flags, not started yet.
func newGateway(t *testing.T, extra ...string) *gatewayProc {
	t.Helper()
	return newGatewayOn(t, "gateway", "127.0.0.1", extra...)
}

// newGatewayOn is newGateway for a gateway called node on its own
// loopback address ip.
func newGatewayOn(t *testing.T, node, ip string, extra ...string) *gatewayProc {
	t.Helper()
	buildAll(t)
	g := &gatewayProc{
		url:    fmt.Sprintf("http://%s:%d", ip, testutil.FreePort(t, ip)),
		admin:  fmt.Sprintf("%s:%d", ip, testutil.FreePort(t, ip)),
		gossip: fmt.Sprintf("%s:%d", ip, testutil.FreePortRange(t, 1, ip)),
	}
	args := append([]string{"gateway", "run", "--node", node, "--listen", g.url[len("http://"):],
		"--admin", g.admin, "--bind", g.gossip, "--gossip-profile", gossipProfile(), "--data-dir", t.TempDir()}, extra...)
	g.args = args
	for i, a := range extra {
		if a == "--token" && i+1 < len(extra) {
			g.token = extra[i+1]
		}
	}
	return g
}

func (g *gatewayProc) waitReady(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + g.admin + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	}, 10*time.Second, 20*time.Millisecond, "gateway admin API answers")
}

func (g *gatewayProc) client() *api.Client { return api.NewClient(g.admin, g.token) }

func (g *gatewayProc) backends(t *testing.T) []api.Backend {
	t.Helper()
	bs, err := g.client().Backends(context.Background())
	require.NoError(t, err)
	return bs
}

// waitBackends waits until the gateway routes to exactly n backends and
// returns how long that took.
func (g *gatewayProc) waitBackends(t *testing.T, n int, within time.Duration) time.Duration {
	t.Helper()
	began := time.Now()
	var last int
	for time.Since(began) < within {
		bs, err := g.client().Backends(context.Background())
		if err == nil {
			if last = len(bs); last == n {
				return time.Since(began)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("gateway has %d backends, want %d, after %s", last, n, within)
	return 0
}

// agentProc is a running agent on its own loopback "host".
type agentProc struct {
	*proc
	node, ip, admin string
	basePort        uint16
	dataDir         string
	args            []string
	env             []string
}

// startAgent starts an agent on the process runtime.
func startAgent(t *testing.T, g *gatewayProc, node, ip string, replicas int, extra ...string) *agentProc {
	t.Helper()
	return startAgentOn(t, g, node, ip, replicas, nil,
		append([]string{"--runtime", "process", "--images-dir", filepath.Join(binDir, "images")}, extra...)...)
}

// startDockerAgent starts an agent on the Docker runtime (the engine at
// DOCKER_HOST). Its containers are removed when the test ends.
func startDockerAgent(t *testing.T, g *gatewayProc, node, ip string, replicas int, extra ...string) *agentProc {
	t.Helper()
	t.Cleanup(func() { removeContainers(t, node) })
	return startAgentOn(t, g, node, ip, replicas, nil, append([]string{"--runtime", "docker"}, extra...)...)
}

// startAgentOnEngine starts a Docker-runtime agent using the private engine d.
func startAgentOnEngine(t *testing.T, g *gatewayProc, d *testutil.Dockerd, node, ip string, replicas int, extra ...string) *agentProc {
	t.Helper()
	return startAgentOn(t, g, node, ip, replicas, []string{"DOCKER_HOST=" + d.Host}, append([]string{"--runtime", "docker"}, extra...)...)
}

func startAgentOn(t *testing.T, g *gatewayProc, node, ip string, replicas int, env []string, extra ...string) *agentProc {
	t.Helper()
	a := &agentProc{
		node: node, ip: ip, env: env,
		admin:    fmt.Sprintf("%s:%d", ip, testutil.FreePort(t, ip)),
		basePort: testutil.FreePortRange(t, replicas, ip),
		dataDir:  t.TempDir(),
	}
	gossip := fmt.Sprintf("%s:%d", ip, testutil.FreePortRange(t, 1, ip))
	a.args = append([]string{"agent", "join", "--node", node, "--join", g.gossip, "--bind", gossip,
		"--admin", a.admin, "--replicas", strconv.Itoa(replicas), "--base-port", strconv.Itoa(int(a.basePort)),
		"--data-dir", a.dataDir, "--gossip-profile", gossipProfile(), "--health-interval", "200ms"}, extra...)
	a.proc = startProcEnv(t, node, a.env, a.args...)
	return a
}

// restart starts the agent again with the same flags.
func (a *agentProc) restart(t *testing.T) {
	t.Helper()
	a.proc = startProcEnv(t, a.node, a.env, a.args...)
}

func (a *agentProc) replicas(t *testing.T) []agent.ReplicaStatus {
	t.Helper()
	var out []agent.ReplicaStatus
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + a.admin + "/v1/replicas")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(&out) == nil
	}, 10*time.Second, 20*time.Millisecond, "agent %s admin API answers", a.node)
	return out
}

// crash kills the agent and its replicas with SIGKILL, as a host crash would.
func (a *agentProc) crash(t *testing.T) []int {
	t.Helper()
	var pids []int
	for _, r := range a.replicas(t) {
		pids = append(pids, r.PID)
	}
	a.signal(syscall.SIGKILL)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	<-a.done
	return pids
}

func pidAlive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !containsState(stat, 'Z')
}

func containsState(stat []byte, state byte) bool {
	for i := len(stat) - 1; i > 0; i-- {
		if stat[i] == ')' {
			return i+2 < len(stat) && stat[i+2] == state
		}
	}
	return false
}

// load is a constant-rate (open-loop) load through the gateway: one
// request every interval whatever the latency, each counted. GET /version,
// or, mixed, every other one a POST /predict with a body.
type load struct {
	sent, failed atomic.Int64
	errs         sync.Map // first few failure descriptions
	stop         chan struct{}
	done         sync.WaitGroup
	mixed        bool
	host         string // the requests' Host, if set

	mu   sync.Mutex
	took []sample // every request's outcome, when it ended
}

// sample is one request of a load: when it ended, how long it took, and
// its error ("" for a 2xx).
type sample struct {
	at, start time.Time
	took      time.Duration
	err       string
}

func startLoad(t *testing.T, url string, rate int, keepAlive bool) *load {
	t.Helper()
	return startLoadOf(t, url, rate, keepAlive, false)
}

// startMixedLoad is startLoad with every other request a POST /predict.
func startMixedLoad(t *testing.T, url string, rate int) *load {
	t.Helper()
	return startLoadOf(t, url, rate, true, true)
}

// startHostLoad is startLoad (keep-alive) of requests for host.
func startHostLoad(t *testing.T, url, host string, rate int) *load {
	t.Helper()
	return startLoadFor(t, url, host, rate, true, false)
}

func startLoadOf(t *testing.T, url string, rate int, keepAlive, mixed bool) *load {
	t.Helper()
	return startLoadFor(t, url, "", rate, keepAlive, mixed)
}

func startLoadFor(t *testing.T, url, host string, rate int, keepAlive, mixed bool) *load {
	t.Helper()
	l := &load{stop: make(chan struct{}), mixed: mixed, host: host}
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: 64},
	}
	interval := time.Second / time.Duration(rate)
	deadline := time.Now().Add(5 * time.Minute) // bounded even if the test forgets to stop it
	l.done.Go(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		var inflight sync.WaitGroup
		defer inflight.Wait()
		for time.Now().Before(deadline) {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			inflight.Go(func() { l.one(client, url) })
		}
	})
	t.Cleanup(l.finish)
	return l
}

func (l *load) one(client *http.Client, url string) {
	n := l.sent.Add(1)
	start := time.Now()
	var req *http.Request
	if l.mixed && n%2 == 0 {
		req = testutil.PredictRequest(url, "I love this, it is wonderful")
	} else {
		req, _ = http.NewRequest(http.MethodGet, url+"/version", nil)
		req.Host = l.host
	}
	why := testutil.Failure(client, req)
	if why != "" {
		l.fail(n, why)
	}
	l.mu.Lock()
	l.took = append(l.took, sample{at: time.Now(), start: start, took: time.Since(start), err: why})
	l.mu.Unlock()
}

func (l *load) fail(n int64, why string) {
	if l.failed.Add(1) <= 5 {
		l.errs.Store(n, why)
	}
}

// samples are the load's requests so far.
func (l *load) samples() []sample {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.took)
}

// p99 is the 99th percentile of the latency of the requests started in
// [from, to).
func (l *load) p99(from, to time.Time) time.Duration {
	var d []time.Duration
	for _, s := range l.samples() {
		if !s.start.Before(from) && s.start.Before(to) {
			d = append(d, s.took)
		}
	}
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[len(d)*99/100]
}

var finishOnce sync.Map

// finish stops the load and waits for its requests. Idempotent.
func (l *load) finish() {
	if _, loaded := finishOnce.LoadOrStore(l, true); !loaded {
		close(l.stop)
	}
	l.done.Wait()
}

func (l *load) failures() string {
	s := ""
	l.errs.Range(func(k, v any) bool { s += fmt.Sprintf("request %v: %v\n", k, v); return true })
	return s
}

// gossipProfile is the gossip timing profile of every process the tests
// start: "local" unless HERD_E2E_GOSSIP_PROFILE says otherwise (to measure
// failure detection with the production "lan" timings).
func gossipProfile() string {
	if p := os.Getenv("HERD_E2E_GOSSIP_PROFILE"); p != "" {
		return p
	}
	return "local"
}

// probe is a closed-loop GET load: workers that each send the next request
// as soon as the last one answered, recording when each one completed. Its
// rate over a window is the gateway's throughput then.
type probe struct {
	load
	mu    sync.Mutex
	times []time.Time
}

func startProbe(t *testing.T, url string, workers int) *probe {
	t.Helper()
	p := &probe{load: load{stop: make(chan struct{})}}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	deadline := time.Now().Add(5 * time.Minute)
	for range workers {
		p.done.Go(func() {
			for time.Now().Before(deadline) {
				select {
				case <-p.stop:
					return
				default:
				}
				failed := p.failed.Load()
				p.one(client, url)
				if p.failed.Load() == failed {
					p.mu.Lock()
					p.times = append(p.times, time.Now())
					p.mu.Unlock()
				}
			}
		})
	}
	t.Cleanup(p.finish)
	return p
}

// rate is the requests per second completed in [from, to).
func (p *probe) rate(from, to time.Time) float64 {
	if !to.After(from) {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, at := range p.times {
		if !at.Before(from) && at.Before(to) {
			n++
		}
	}
	return float64(n) / to.Sub(from).Seconds()
}

// lowest is the lowest rate over the windows of width w in [from, to).
func (p *probe) lowest(from, to time.Time, w time.Duration) float64 {
	low := -1.0
	for at := from; !at.Add(w).After(to); at = at.Add(w) {
		if r := p.rate(at, at.Add(w)); low < 0 || r < low {
			low = r
		}
	}
	return max(low, 0)
}
