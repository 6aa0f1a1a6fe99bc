// Command bench compares Herd's gateway with HAProxy on this machine, as
// `make bench` runs it: the same predictor replicas (started by a real agent,
// announced to the gateway through real gossip) behind both, driven
// alternately by wrk for several rounds.
//
//	go run ./test/bench -bin bin [-rounds 3] [-duration 10s] [-conns 64] [-threads 2]
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/herd-cluster/herd/pkg/api"
)

type options struct {
	bin, path        string
	rounds           int
	duration         time.Duration
	conns, threads   int
	replicas, agents int
	scale            bool
	stream           bool
	gomaxprocs       int
	fixedLoad        float64
	leastRequest     bool
	maxConns         int
	idleConns        int
	idleOnly         bool
	routes           bool
	routesOnly       bool
	tls, tlsOnly     bool
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin", "directory with gateway, agent and images/ (make build)")
	flag.StringVar(&o.path, "path", "/version", "request path")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds; each runs wrk against HAProxy and the gateway in turn")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "wrk duration per run")
	flag.IntVar(&o.conns, "conns", 64, "wrk connections")
	flag.IntVar(&o.threads, "threads", 2, "wrk threads")
	flag.BoolVar(&o.scale, "scale", true, "also measure 12 replicas on 3 agents")
	flag.BoolVar(&o.stream, "stream", true, "also stream a 1 MiB request body and 10 MiB responses")
	flag.IntVar(&o.gomaxprocs, "gomaxprocs", 0, "GOMAXPROCS of the gateway (0: Go's default, the number of cores)")
	flag.Float64Var(&o.fixedLoad, "fixed-load", 0.7, "also compare latencies with both proxies at this share of HAProxy's wrk rate (0: skip)")
	flag.BoolVar(&o.leastRequest, "least-request", true, "also compare the gateway's least-request with HAProxy's leastconn (4 replicas)")
	flag.IntVar(&o.maxConns, "max-conns", 0, "also compare the gateway's --backend-max-conns N with HAProxy's server maxconn N (4 replicas; 0: skip)")
	flag.BoolVar(&o.idleOnly, "idle-only", false, "run only the idle-connection memory comparison")
	flag.BoolVar(&o.routesOnly, "routes-only", false, "run only the routing comparison")
	flag.BoolVar(&o.routes, "routes", true, "also compare routing 50 services by 200 routes with HAProxy's use_backend ACLs")
	flag.BoolVar(&o.tls, "tls", true, "also compare TLS termination: keep-alive HTTPS, a handshake per request, HTTP/2 with h2load")
	flag.BoolVar(&o.tlsOnly, "tls-only", false, "run only the TLS comparison")
	flag.IntVar(&o.idleConns, "idle-conns", 10000, "also compare the memory per idle keep-alive connection with this many connections (0: skip)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// procs are the processes the bench started, stopped in reverse on exit.
type procs struct {
	list []*exec.Cmd
	env  map[string][]string // extra environment by process name
}

func (p *procs) start(logDir, name string, args ...string) (*exec.Cmd, error) {
	logf, err := os.Create(filepath.Join(logDir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), p.env[name]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p.list = append(p.list, cmd)
	return cmd, nil
}

func (p *procs) stopAll() {
	for i := len(p.list) - 1; i >= 0; i-- {
		cmd := p.list[i]
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
}

func freePort(ip string) (int, error) {
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type cluster struct {
	o        options
	script   string // wrk's Lua script, if the requests are not all c.o.path
	dir      string
	procs    procs
	gwURL    string
	gwPid    int
	admin    string
	gossip   string
	backends []string
	haBind   string // another bind line for HAProxy's frontend (tls.go)
}

// pair is what one comparison drives: HAProxy with a balance algorithm
// and options on each server line, and a gateway.
type pair struct {
	haBalance, haServer, gwURL string
	gwPid                      int
	// haRouting, if set, replaces HAProxy's default backend: its frontend
	// rules and backends (routes.go).
	haRouting string
}

// target is one proxy a comparison drives.
type target struct {
	name, url string
	pid       int
}

func run(o options) (err error) {
	for _, tool := range []string{"wrk", "haproxy", "h2load"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not installed (make bench installs it: apt-get install -y wrk haproxy nghttp2-client)", tool)
		}
	}
	dir, err := os.MkdirTemp("", "herd-bench-")
	if err != nil {
		return err
	}
	defer func() {
		if err == nil {
			os.RemoveAll(dir)
		}
	}()
	c := &cluster{o: o, dir: dir}
	if o.gomaxprocs > 0 {
		c.procs.env = map[string][]string{"gateway": {"GOMAXPROCS=" + strconv.Itoa(o.gomaxprocs)}}
	}
	defer func() { c.procs.stopAll() }()
	if _, _, err := c.startGateway("gateway"); err != nil {
		return err
	}
	procs := "default"
	if o.gomaxprocs > 0 {
		procs = strconv.Itoa(o.gomaxprocs)
	}
	fmt.Printf("# Herd gateway vs HAProxy %s — wrk -t%d -c%d -d%s %s, %d rounds, gateway GOMAXPROCS %s, %d cores\n",
		haproxyVersion(), o.threads, o.conns, o.duration, o.path, o.rounds, procs, numCPU())
	if err := c.addAgent(0, 4); err != nil {
		return err
	}
	if o.idleConns > 0 {
		if err := c.idle(o.idleConns); err != nil {
			return err
		}
	}
	if o.idleOnly {
		return nil
	}
	if o.routesOnly {
		return c.routing()
	}
	if o.tlsOnly {
		return c.tlsCompare()
	}
	if err := c.compare("4 replicas on 1 agent", pair{haBalance: "roundrobin", gwURL: c.gwURL, gwPid: c.gwPid}, c.o.fixedLoad); err != nil {
		return err
	}
	if o.leastRequest {
		if err := c.compareSecond("4 replicas on 1 agent, gateway --balance least-request vs HAProxy balance leastconn",
			"gateway-least-request", pair{haBalance: "leastconn"}, "--balance", "least-request"); err != nil {
			return err
		}
	}
	if o.maxConns > 0 {
		n := strconv.Itoa(o.maxConns)
		if err := c.compareSecond("4 replicas on 1 agent, gateway --backend-max-conns "+n+" vs HAProxy server maxconn "+n,
			"gateway-max-conns", pair{haBalance: "roundrobin", haServer: " maxconn " + n}, "--backend-max-conns", n); err != nil {
			return err
		}
	}
	if o.stream {
		if err := c.streams(); err != nil {
			return err
		}
	}
	if o.tls {
		if err := c.tlsCompare(); err != nil {
			return err
		}
	}
	if o.scale {
		for i := 1; i < 3; i++ {
			if err := c.addAgent(i, 4); err != nil {
				return err
			}
		}
		if err := c.compare("12 replicas on 3 agents", pair{haBalance: "roundrobin", gwURL: c.gwURL, gwPid: c.gwPid}, c.o.fixedLoad); err != nil {
			return err
		}
	}
	if o.routes {
		return c.routing()
	}
	return nil
}

// startGateway starts a gateway with extra flags. The first one founds
// the cluster; later ones join it and learn the same backends through
// gossip, and are waited for until they route to all of them.
func (c *cluster) startGateway(name string, flags ...string) (string, *exec.Cmd, error) {
	listen, err := freePort("127.0.0.1")
	if err != nil {
		return "", nil, err
	}
	admin, _ := freePort("127.0.0.1")
	gossip, _ := freePort("127.0.0.1")
	url := fmt.Sprintf("http://127.0.0.1:%d", listen)
	first := c.gwURL == ""
	if first {
		c.gwURL = url
		c.admin = fmt.Sprintf("127.0.0.1:%d", admin)
		c.gossip = fmt.Sprintf("127.0.0.1:%d", gossip)
	} else {
		flags = append(flags, "--join", c.gossip)
	}
	args := append([]string{filepath.Join(c.o.bin, "gateway"), "run", "--node", "bench-" + name,
		"--listen", fmt.Sprintf("127.0.0.1:%d", listen), "--admin", fmt.Sprintf("127.0.0.1:%d", admin),
		"--bind", fmt.Sprintf("127.0.0.1:%d", gossip), "--data-dir", filepath.Join(c.dir, name),
		"--gossip-profile", "local", "--log-level", "warn"}, flags...)
	if c.o.gomaxprocs > 0 {
		c.procs.env[name] = c.procs.env["gateway"]
	}
	cmd, err := c.procs.start(c.dir, name, args...)
	if err != nil {
		return url, nil, err
	}
	if first {
		c.gwPid = cmd.Process.Pid
		return url, cmd, nil
	}
	return url, cmd, c.waitRouted(fmt.Sprintf("127.0.0.1:%d", admin))
}

// compareSecond starts a second gateway with flags, compares it with
// HAProxy as p says, and stops it.
func (c *cluster) compareSecond(title, name string, p pair, flags ...string) error {
	url, cmd, err := c.startGateway(name, flags...)
	if err != nil {
		return err
	}
	defer c.stop(cmd)
	p.gwURL, p.gwPid = url, cmd.Process.Pid
	return c.compare(title, p, 0)
}

// stop stops one process the bench started.
func (c *cluster) stop(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	c.procs.list = slices.DeleteFunc(c.procs.list, func(p *exec.Cmd) bool { return p == cmd })
}

// addAgent starts agent i (on 127.0.0.(2+i)) with n replicas and waits
// until the gateway routes to them.
func (c *cluster) addAgent(i, n int) error {
	ip := fmt.Sprintf("127.0.0.%d", 2+i)
	base := 18000 + 100*i
	if err := c.startAgent("host-"+strconv.Itoa(i), ip, base, n); err != nil {
		return err
	}
	for k := range n {
		c.backends = append(c.backends, fmt.Sprintf("%s:%d", ip, base+k))
	}
	return c.waitRouted(c.admin)
}

// waitRouted waits until the gateway with this admin address routes to
// every backend started so far.
func (c *cluster) waitRouted(admin string) error {
	client := api.NewClient(admin, "")
	deadline := time.Now().Add(60 * time.Second)
	for {
		bs, err := client.Backends(context.Background())
		if err == nil && len(bs) == len(c.backends) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the gateway at %s did not route to %d backends within 60 s (logs in %s)", admin, len(c.backends), c.dir)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startHAProxy starts HAProxy in front of the current backends: one thread,
// the balance algorithm and server options given, keep-alive to clients
// and to backends.
func (c *cluster) startHAProxy(balance, server string) (string, *exec.Cmd, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "  default_backend be\nbackend be\n  balance %s\n", balance)
	for i, addr := range c.backends {
		fmt.Fprintf(&b, "  server s%d %s%s\n", i, addr, server)
	}
	return c.startHAProxyWith(b.String())
}

// startHAProxyWith starts HAProxy with routing: the end of its frontend
// section and its backends.
func (c *cluster) startHAProxyWith(routing string) (string, *exec.Cmd, error) {
	port, err := freePort("127.0.0.1")
	if err != nil {
		return "", nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, `global
  nbthread 1
  maxconn 10100
  # the idle-connection comparison holds 10,000 client connections; this
  # machine allows 20,000 descriptors, a little under HAProxy's 2×maxconn
  no strict-limits
defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 2s
  timeout client 60s
  timeout server 60s
frontend fe
  bind 127.0.0.1:%d
%s  option forwardfor
`, port, c.haBind)
	b.WriteString(routing)
	cfg := filepath.Join(c.dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
		return "", nil, err
	}
	cmd, err := c.procs.start(c.dir, "haproxy", "haproxy", "-db", "-f", cfg)
	if err != nil {
		return "", nil, err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	return url, cmd, waitHTTP(url + c.o.path)
}

// waitHTTP waits until url answers 200; an https one is not verified (the
// bench's certificate is its own).
func waitHTTP(url string) error {
	deadline := time.Now().Add(10 * time.Second)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer client.CloseIdleConnections()
	for {
		resp, err := client.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %w", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type result struct {
	rps      float64
	p50, p99 time.Duration
	errors   int
	cost     cost
}

var (
	rpsRe    = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	pctRe    = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)`)
	errorsRe = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)|Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

func (c *cluster) wrk(url string, extra ...string) (result, error) {
	args := append([]string{"-t" + strconv.Itoa(c.o.threads), "-c" + strconv.Itoa(c.o.conns), "-d" + c.o.duration.String(), "--latency"}, extra...)
	if c.script != "" {
		args = append(args, "-s", c.script)
	}
	out, err := exec.Command("wrk", append(args, url+c.o.path)...).CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("wrk: %v: %s", err, out)
	}
	return parseWrk(string(out))
}

func parseWrk(out string) (result, error) {
	var r result
	m := rpsRe.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no Requests/sec in wrk output:\n%s", out)
	}
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	for _, m := range pctRe.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[m[3]]
		d := time.Duration(math.Round(v*float64(unit)/1e3)) * time.Microsecond // wrk prints 2 decimals
		if m[1] == "50" {
			r.p50 = d
		} else {
			r.p99 = d
		}
	}
	for _, m := range errorsRe.FindAllStringSubmatch(out, -1) {
		for _, s := range m[1:] {
			n, _ := strconv.Atoi(s)
			r.errors += n
		}
	}
	return r, nil
}

// compare runs wrk against HAProxy and the gateway of p alternately and
// prints the medians; then, unless fixedLoad is 0, their latencies at one
// fixed load.
func (c *cluster) compare(title string, p pair, fixedLoad float64) error {
	var haURL string
	var ha *exec.Cmd
	var err error
	if p.haRouting != "" {
		haURL, ha, err = c.startHAProxyWith(p.haRouting)
	} else {
		haURL, ha, err = c.startHAProxy(p.haBalance, p.haServer)
	}
	if err != nil {
		return err
	}
	defer c.stop(ha)
	if err := waitHTTP(p.gwURL + c.o.path); err != nil {
		return err
	}
	targets := []target{{"haproxy", haURL, ha.Process.Pid}, {"gateway", p.gwURL, p.gwPid}}
	// A short warm-up each, not counted.
	for _, t := range targets {
		warm := *c
		warm.o.duration = 2 * time.Second
		if _, err := warm.wrk(t.url); err != nil {
			return err
		}
	}
	results, err := c.rounds(targets, func(url string) (result, error) { return c.wrk(url) })
	if err != nil {
		return err
	}
	ha0, gw := median(results["haproxy"]), median(results["gateway"])
	// The machine's speed drifts between rounds; the ratio within each round
	// (the two runs back to back) is the steadier comparison.
	var ratios, p99s []float64
	for i := range results["gateway"] {
		ratios = append(ratios, results["gateway"][i].rps/results["haproxy"][i].rps)
		p99s = append(p99s, float64(results["gateway"][i].p99)/float64(results["haproxy"][i].p99))
	}
	slices.Sort(ratios)
	slices.Sort(p99s)
	fmt.Printf("\n## %s (median of %d rounds)\n\n", title, c.o.rounds)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "proxy\treq/s\tp50\tp99\terrors\t")
	for _, x := range []struct {
		name string
		r    result
	}{{"haproxy", ha0}, {"gateway", gw}} {
		fmt.Fprintf(w, "%s\t%.0f\t%s\t%s\t%d\t\n", x.name, x.r.rps, x.r.p50, x.r.p99, x.r.errors)
	}
	w.Flush()
	rate, p99 := gw.rps/ha0.rps, float64(gw.p99)/float64(ha0.p99)
	// Three decimals: 1.096 must not print as a met 1.10.
	fmt.Printf("\ngateway/haproxy: req/s %.3f× (per round %.2f×–%.2f×, median %.2f×), p99 %.3f× (per round %.2f×–%.2f×, median %.2f×)"+
		" (target: req/s ≥ 1.10× %s, p99 ≤ 1.00× %s)\n\n",
		rate, ratios[0], ratios[len(ratios)-1], ratios[len(ratios)/2],
		p99, p99s[0], p99s[len(p99s)-1], p99s[len(p99s)/2], verdict(rate >= 1.10), verdict(p99 <= 1.00))
	printCost(ha0, gw)
	if fixedLoad > 0 {
		return c.compareFixedLoad(title, targets, int(fixedLoad*ha0.rps))
	}
	return nil
}

// printCost prints the medians of what the scheduler counted: where the
// CPU went per request, and how long each proxy's threads waited for a CPU
// whenever they became runnable (the machine is shared by wrk, the proxy
// and the backends).
func printCost(ha, gw result) {
	fmt.Printf("CPU per request (schedstat, median): haproxy %.1f µs with the backends %.1f µs behind it; gateway %.1f µs, backends %.1f µs\n",
		ha.cost.proxyCPU, ha.cost.backendCPU, gw.cost.proxyCPU, gw.cost.backendCPU)
	fmt.Printf("wait for a CPU each time the proxy's threads became runnable: haproxy %.0f µs, gateway %.0f µs\n\n",
		ha.cost.proxyWaitPerSlice, gw.cost.proxyWaitPerSlice)
}

// compareFixedLoad drives both proxies at the same rate (open loop, see
// openLoop) alternately and prints the median latencies.
func (c *cluster) compareFixedLoad(title string, targets []target, rate int) error {
	fmt.Printf("## %s, same load for both: %d req/s (%.0f%% of HAProxy's rate above), open loop, %d connections\n\n",
		title, rate, 100*c.o.fixedLoad, c.o.conns)
	results, err := c.rounds(targets, func(url string) (result, error) {
		return openLoop(url+c.o.path, rate, c.o.conns, c.o.duration)
	})
	if err != nil {
		return err
	}
	ha, gw := median(results["haproxy"]), median(results["gateway"])
	fmt.Printf("\nmedian of %d rounds: haproxy p50 %s p99 %s; gateway p50 %s p99 %s; gateway/haproxy p99 %.2f×\n\n",
		c.o.rounds, ha.p50, ha.p99, gw.p50, gw.p99, float64(gw.p99)/float64(ha.p99))
	printCost(ha, gw)
	return nil
}

// rounds runs measure on each target in turn, c.o.rounds times, printing
// each result, and returns them by target name. Each result carries what
// the scheduler counted for the proxy and the backends during the run.
func (c *cluster) rounds(targets []target, measure func(url string) (result, error)) (map[string][]result, error) {
	results := map[string][]result{}
	for round := range c.o.rounds {
		order := slices.Clone(targets)
		if round%2 == 1 { // each goes first every other round: the machine drifts
			slices.Reverse(order)
		}
		for _, t := range order {
			backends, err := pidsOf(filepath.Join(c.o.bin, "images"))
			if err != nil {
				return nil, err
			}
			before, err := readUsages(t.pid, backends)
			if err != nil {
				return nil, err
			}
			r, err := measure(t.url)
			if err != nil {
				return nil, err
			}
			after, err := readUsages(t.pid, backends)
			if err != nil {
				return nil, err
			}
			r.cost = costOf(before, after, r.rps*c.o.duration.Seconds())
			fmt.Printf("  round %d %-8s %9.0f req/s  p50 %-9s p99 %-9s errors %d\n", round+1, t.name, r.rps, r.p50, r.p99, r.errors)
			results[t.name] = append(results[t.name], r)
		}
	}
	return results, nil
}

func median(rs []result) result {
	pick := func(f func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	errs := 0
	for _, r := range rs {
		errs += r.errors
	}
	return result{
		rps:    pick(func(r result) float64 { return r.rps }),
		p50:    time.Duration(pick(func(r result) float64 { return float64(r.p50) })),
		p99:    time.Duration(pick(func(r result) float64 { return float64(r.p99) })),
		errors: errs,
		cost: cost{
			proxyCPU:          pick(func(r result) float64 { return r.cost.proxyCPU }),
			backendCPU:        pick(func(r result) float64 { return r.cost.backendCPU }),
			proxyWaitPerSlice: pick(func(r result) float64 { return r.cost.proxyWaitPerSlice }),
		},
	}
}

func haproxyVersion() string {
	out, err := exec.Command("haproxy", "-v").Output()
	if err != nil {
		return "(unknown version)"
	}
	f := strings.Fields(string(out))
	if len(f) >= 3 {
		return f[2]
	}
	return strings.TrimSpace(string(out))
}

func numCPU() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "processor\t:")
}

// streams sends 10 MiB responses and 1 MiB request bodies through the
// gateway from 16 clients at once and reports the throughput and the
// gateway's peak resident memory: flat when bodies stream, hundreds of MiB
// if they were buffered whole.
func (c *cluster) streams() error {
	gw := c.gwPid
	before, err := peakRSS(gw)
	if err != nil {
		return err
	}
	const clients, each = 16, 16
	fmt.Printf("## Streaming through the gateway (%d clients × %d requests)\n\n", clients, each)
	cases := []struct {
		name string
		size int64
		do   func(*http.Client) (int64, error)
	}{
		{"GET 10 MiB response", 10 << 20, func(hc *http.Client) (int64, error) {
			resp, err := hc.Get(c.gwURL + "/bytes?n=" + strconv.Itoa(10<<20))
			if err != nil {
				return 0, err
			}
			defer resp.Body.Close()
			return io.Copy(io.Discard, resp.Body)
		}},
		{"POST 1 MiB body", 1 << 20, func(hc *http.Client) (int64, error) {
			resp, err := hc.Post(c.gwURL+"/discard", "application/octet-stream", io.LimitReader(zeros{}, 1<<20))
			if err != nil {
				return 0, err
			}
			defer resp.Body.Close()
			_, _ = io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != http.StatusOK {
				return 0, errors.New(resp.Status)
			}
			return 1 << 20, nil
		}},
	}
	for _, cs := range cases {
		began := time.Now()
		errc := make(chan error, clients)
		for range clients {
			go func() {
				hc := &http.Client{Transport: &http.Transport{}}
				defer hc.CloseIdleConnections()
				for range each {
					n, err := cs.do(hc)
					if err == nil && n != cs.size {
						err = fmt.Errorf("%d bytes, want %d", n, cs.size)
					}
					if err != nil {
						errc <- fmt.Errorf("%s: %w", cs.name, err)
						return
					}
				}
				errc <- nil
			}()
		}
		for range clients {
			if err := <-errc; err != nil {
				return err
			}
		}
		took := time.Since(began)
		peak, err := peakRSS(gw)
		if err != nil {
			return err
		}
		total := float64(cs.size*clients*each) / (1 << 20)
		fmt.Printf("%-20s %6.0f MiB in %6s = %6.0f MiB/s; gateway peak RSS %d MiB (before: %d MiB)\n",
			cs.name, total, took.Round(time.Millisecond), total/took.Seconds(), peak>>20, before>>20)
	}
	fmt.Println()
	return nil
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// peakRSS is a process's peak resident set size (VmHWM) in bytes.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmHWM in /proc status")
}

// verdict says whether a target was met.
func verdict(met bool) string {
	if met {
		return "met"
	}
	return "MISSED"
}
