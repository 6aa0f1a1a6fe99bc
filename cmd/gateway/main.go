// Command gateway is Herd's HTTP load balancer: a gossip cluster member that
// routes to the backends the agents announce.
package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/urfave/cli/v2"

	"github.com/herd-cluster/herd/internal/cliutil"
	"github.com/herd-cluster/herd/internal/daemon"
	"github.com/herd-cluster/herd/internal/gatewayd"
	"github.com/herd-cluster/herd/pkg/admin"
	"github.com/herd-cluster/herd/pkg/balancer"
	"github.com/herd-cluster/herd/pkg/gateway"
	"github.com/herd-cluster/herd/pkg/membership"
)

func main() {
	g := gateway.DefaultConfig()
	d := g.Balancer
	cliutil.Main(&cli.App{
		Name:  "gateway",
		Usage: "HTTP load balancer fed by cluster membership",
		Commands: []*cli.Command{{
			Name:  "run",
			Usage: "join the cluster and route traffic to its backends",
			Flags: append(append(append([]cli.Flag{
				&cli.StringFlag{Name: "listen", Value: ":80", EnvVars: []string{"HERD_LISTEN"},
					Usage: "client traffic address"},
				&cli.StringFlag{Name: "service", Value: g.Service, EnvVars: []string{"HERD_SERVICE"},
					Usage: "route only this service, every request to it (default: every service the agents announce, by their routes)"},
				&cli.StringFlag{Name: "default-service", EnvVars: []string{"HERD_DEFAULT_SERVICE"},
					Usage: "routing every service: the one that takes requests no route matches (default: the only service announced, if just one; else 404)"},
				&cli.StringFlag{Name: "health-path", Value: d.HealthPath, EnvVars: []string{"HERD_HEALTH_PATH"},
					Usage: "active health check: the path asked on every backend"},
				&cli.DurationFlag{Name: "health-interval", Value: d.HealthInterval, EnvVars: []string{"HERD_HEALTH_INTERVAL"},
					Usage: "active health check interval per backend (0 turns checks off)"},
				&cli.DurationFlag{Name: "health-timeout", Value: d.HealthTimeout, EnvVars: []string{"HERD_HEALTH_TIMEOUT"},
					Usage: "active health check timeout"},
				&cli.IntFlag{Name: "health-rise", Value: d.Rise, EnvVars: []string{"HERD_HEALTH_RISE"},
					Usage: "passing checks in a row that bring a backend back"},
				&cli.IntFlag{Name: "health-fall", Value: d.Fall, EnvVars: []string{"HERD_HEALTH_FALL"},
					Usage: "failing checks in a row that take a backend out"},
				&cli.StringFlag{Name: "balance", Value: string(d.Balance), EnvVars: []string{"HERD_BALANCE"},
					Usage: "how each request's backend is chosen: round-robin, or least-request (the less busy of two at random)"},
				&cli.IntFlag{Name: "backend-max-conns", Value: d.BackendMaxConns, EnvVars: []string{"HERD_BACKEND_MAX_CONNS"},
					Usage: "requests in flight to one backend at most; more wait in the gateway for one with room (0: no cap)"},
				&cli.DurationFlag{Name: "queue-timeout", Value: d.QueueTimeout, EnvVars: []string{"HERD_QUEUE_TIMEOUT"},
					Usage: "with --backend-max-conns, how long a request may wait for a backend with room before a 503"},
				&cli.BoolFlag{Name: "event-loop", Value: d.EventLoop, EnvVars: []string{"HERD_EVENT_LOOP"},
					Usage: "relay common requests on event-loop threads, the rest on a goroutine per connection (false: goroutines for all; off with --backend-max-conns)"},
				&cli.IntFlag{Name: "event-loop-threads", Value: d.EventLoopThreads, EnvVars: []string{"HERD_EVENT_LOOP_THREADS"},
					Usage: "event loops sharing the client connections (0: one per two CPUs, at least one)"},
				&cli.DurationFlag{Name: "slow-start", Value: d.SlowStart, EnvVars: []string{"HERD_SLOW_START"},
					Usage: "ramp a new or recovered backend to its full share over this long (0: off)"},
				&cli.IntFlag{Name: "retries", Value: d.Retries, EnvVars: []string{"HERD_RETRIES"},
					Usage: "other backends a failed request may be sent to (only when safe; see docs/http.md)"},
				&cli.DurationFlag{Name: "connect-timeout", Value: d.DialTimeout, EnvVars: []string{"HERD_CONNECT_TIMEOUT"},
					Usage: "connecting to a backend"},
				&cli.DurationFlag{Name: "response-header-timeout", Value: d.ResponseHeaderTimeout, EnvVars: []string{"HERD_RESPONSE_HEADER_TIMEOUT"},
					Usage: "waiting for a backend's response head once the request is sent"},
				&cli.DurationFlag{Name: "backend-idle-timeout", Value: d.IdleConnTimeout, EnvVars: []string{"HERD_BACKEND_IDLE_TIMEOUT"},
					Usage: "closing an unused keep-alive connection to a backend; keep it below the backends' own"},
				&cli.DurationFlag{Name: "client-idle-timeout", Value: d.ClientIdleTimeout, EnvVars: []string{"HERD_CLIENT_IDLE_TIMEOUT"},
					Usage: "closing a keep-alive client connection that sends no next request"},
				&cli.DurationFlag{Name: "client-header-timeout", Value: d.ClientHeaderTimeout, EnvVars: []string{"HERD_CLIENT_HEADER_TIMEOUT"},
					Usage: "how long a client may take to send a request head, from its first byte (408 after)"},
				&cli.StringSliceFlag{Name: "trusted-proxies", EnvVars: []string{"HERD_TRUSTED_PROXIES"},
					Usage: "CIDRs of proxies in front of the gateway whose X-Forwarded-For is kept (others' is replaced); repeatable or comma-separated"},
				&cli.BoolFlag{Name: "canary-pinning", EnvVars: []string{"HERD_CANARY_PINNING"},
					Usage: "during a canary, honour X-Herd-Canary: always|never from --trusted-proxies (testers pinned to an arm; not counted in the judgement)"},
				&cli.StringFlag{Name: "access-log", Value: d.AccessLog, EnvVars: []string{"HERD_ACCESS_LOG"},
					Usage: "one log line per request: off, on, or sampled (see --access-log-sample)"},
				&cli.Float64Flag{Name: "access-log-sample", Value: d.AccessLogSample, EnvVars: []string{"HERD_ACCESS_LOG_SAMPLE"},
					Usage: "with --access-log sampled, the fraction of requests logged"},
				&cli.BoolFlag{Name: "enable-pprof", EnvVars: []string{"HERD_ENABLE_PPROF"},
					Usage: "serve Go's profiler at /debug/pprof/ on the admin address (behind the token)"},
				&cli.DurationFlag{Name: "shutdown-grace", Value: 30 * time.Second, EnvVars: []string{"HERD_SHUTDOWN_GRACE"},
					Usage: "on SIGTERM or an upgrade, how long in-flight requests may take to finish"},
				&cli.DurationFlag{Name: "start-timeout", Value: 10 * time.Second, EnvVars: []string{"HERD_START_TIMEOUT"},
					Usage: "at start, how long to wait for the gossip port (a stopping gateway may still hold it) and for the cluster's state"},
				&cli.DurationFlag{Name: "upgrade-timeout", Value: time.Minute, EnvVars: []string{"HERD_UPGRADE_TIMEOUT"},
					Usage: "on SIGHUP, how long the new binary has to be ready before the upgrade is given up (this process keeps serving)"},
				&cli.StringFlag{Name: "pid-file", EnvVars: []string{"HERD_PID_FILE"},
					Usage: "write the serving process's pid here (the new one's after a SIGHUP upgrade)"},
			}, tlsFlags(d)...), daemon.GossipFlags("127.0.0.1:7070")...), daemon.LogFlags()...),
			Description: daemon.ExitCodes,
			Before:      daemon.LoadConfig,
			Action:      func(c *cli.Context) error { return daemon.GossipFlagError(run(c)) },
		}},
	})
}

func run(c *cli.Context) error {
	logger, err := daemon.Logger(c, "gateway")
	if err != nil {
		return err
	}
	mcfg, err := daemon.MembershipConfig(c, logger)
	if err != nil {
		return err
	}
	gcfg := gateway.DefaultConfig()
	gcfg.Service, gcfg.DefaultService = c.String("service"), c.String("default-service")
	for flag, name := range map[string]string{"--service": gcfg.Service, "--default-service": gcfg.DefaultService} {
		if name != "" && !membership.ValidServiceName(name) {
			return cli.Exit(fmt.Sprintf("%s %q: want lower-case letters, digits, '.', '_' or '-', at most 63", flag, name), 2)
		}
	}
	if gcfg.Service != "" && gcfg.DefaultService != "" {
		return cli.Exit("--default-service: only with every service routed (no --service)", 2)
	}
	gcfg.Logger = logger
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	gcfg.Registerer = reg
	bc := &gcfg.Balancer
	bc.AccessLog, bc.AccessLogSample = c.String("access-log"), c.Float64("access-log-sample")
	bc.HealthPath, bc.HealthInterval, bc.HealthTimeout = c.String("health-path"), c.Duration("health-interval"), c.Duration("health-timeout")
	bc.Rise, bc.Fall, bc.SlowStart, bc.Retries = c.Int("health-rise"), c.Int("health-fall"), c.Duration("slow-start"), c.Int("retries")
	bc.DialTimeout, bc.ResponseHeaderTimeout = c.Duration("connect-timeout"), c.Duration("response-header-timeout")
	bc.ClientIdleTimeout, bc.IdleConnTimeout = c.Duration("client-idle-timeout"), c.Duration("backend-idle-timeout")
	bc.ClientHeaderTimeout = c.Duration("client-header-timeout")
	if bc.TrustedProxies, err = parsePrefixes(c.StringSlice("trusted-proxies")); err != nil {
		return cli.Exit("--trusted-proxies: "+err.Error(), 2)
	}
	if bc.CanaryPinning = c.Bool("canary-pinning"); bc.CanaryPinning && len(bc.TrustedProxies) == 0 {
		return cli.Exit("--canary-pinning: the header is only honoured from --trusted-proxies; name them", 2)
	}
	bc.BackendMaxConns, bc.QueueTimeout = c.Int("backend-max-conns"), c.Duration("queue-timeout")
	bc.EventLoop, bc.EventLoopThreads = c.Bool("event-loop"), c.Int("event-loop-threads")
	if bc.Balance, err = balancer.ParseAlgorithm(c.String("balance")); err != nil {
		return cli.Exit(err.Error(), 2)
	}
	var pcfg gatewayd.Config
	if err := applyTLS(c, bc, &pcfg); err != nil {
		return err
	}
	if err := gcfg.Balancer.Validate(); err != nil {
		return cli.Exit(err.Error(), 2)
	}
	dataDir, err := daemon.DataDir(c)
	if err != nil {
		return err
	}
	gcfg.ViewPath = filepath.Join(dataDir, "view.json")
	mcfg.Tags = membership.Tags{Role: membership.RoleGateway, Gen: uint64(time.Now().UnixMilli())}
	pcfg.Certs.Registerer, pcfg.Certs.Logger = reg, logger
	pcfg.Gateway, pcfg.Membership, pcfg.Listen, pcfg.ListenName, pcfg.Join = gcfg, mcfg, c.String("listen"), "--listen", c.StringSlice("join")
	pcfg.ListenAdmin = func(listen func(network, addr string) (net.Listener, error)) (net.Listener, error) {
		return daemon.ListenAdminWith(c, listen)
	}
	pcfg.Admin = func(p *gatewayd.Parts) http.Handler {
		srv := admin.NewServer(c.String("token"), logger)
		srv.HandleMembers(p.Cluster.Members)
		srv.HandleBackends(func() []balancer.BackendStatus { return p.Gateway.Balancer().Backends() })
		srv.HandleRoutes(p.Gateway.Routing)
		srv.HandleRollouts(p.Rollouts)
		srv.HandleScale(p.Scaler)
		srv.HandleAutoscale(p.Autoscaler, p.Cluster.LocalNode().Name)
		srv.HandleKeys(p.Cluster)
		srv.HandleForceLeave(p.Cluster.ForceLeave)
		if p.Certs != nil {
			srv.HandleCerts(p.Certs.Certs)
		}
		srv.HandleDashboard(admin.Dashboard{Node: c.String("node"), Version: cliutil.Version})
		srv.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		if c.Bool("enable-pprof") {
			srv.Handle("/debug/pprof/", http.HandlerFunc(pprof.Index))
			srv.Handle("/debug/pprof/profile", http.HandlerFunc(pprof.Profile))
			srv.Handle("/debug/pprof/trace", http.HandlerFunc(pprof.Trace))
		}
		return srv
	}
	pcfg.DataDir, pcfg.ShutdownGrace = dataDir, c.Duration("shutdown-grace")
	pcfg.StartTimeout, pcfg.UpgradeTimeout = c.Duration("start-timeout"), c.Duration("upgrade-timeout")
	pcfg.PIDFile, pcfg.Logger = c.String("pid-file"), logger
	return gatewayd.Run(pcfg)
}

// parsePrefixes reads CIDRs ("10.0.0.0/8"), or single addresses as /32 or
// /128.
func parsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range list {
		for _, v := range strings.Split(item, ",") {
			if v = strings.TrimSpace(v); v == "" {
				continue
			}
			if p, err := netip.ParsePrefix(v); err == nil {
				out = append(out, p.Masked())
				continue
			}
			a, err := netip.ParseAddr(v)
			if err != nil {
				return nil, fmt.Errorf("%q is not a CIDR or an address", v)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
		}
	}
	return out, nil
}
