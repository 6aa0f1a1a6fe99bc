// Command gateway is Herd's HTTP load balancer: a gossip cluster member that
// routes to the backends the agents announce.
package main

import (
	"context"
	"net/http"
	"net/http/pprof"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/urfave/cli/v2"

	"github.com/herd-cluster/herd/internal/cliutil"
	"github.com/herd-cluster/herd/pkg/api"
	"github.com/herd-cluster/herd/pkg/balancer"
	"github.com/herd-cluster/herd/pkg/gateway"
	"github.com/herd-cluster/herd/pkg/membership"
	"github.com/herd-cluster/herd/pkg/rollout"
)

func main() {
	cliutil.Main(&cli.App{
		Name:  "gateway",
		Usage: "HTTP load balancer fed by cluster membership",
		Commands: []*cli.Command{{
			Name:  "run",
			Usage: "join the cluster and route traffic to its backends",
			Flags: append(append([]cli.Flag{
				&cli.StringFlag{Name: "listen", Value: ":80", EnvVars: []string{"HERD_LISTEN"},
					Usage: "client traffic address"},
				&cli.StringFlag{Name: "service", Value: "predictor", EnvVars: []string{"HERD_SERVICE"},
					Usage: "the service to route"},
				&cli.StringFlag{Name: "health-path", Value: "/healthz", EnvVars: []string{"HERD_HEALTH_PATH"},
					Usage: "active health check: the path asked on every backend"},
				&cli.DurationFlag{Name: "health-interval", Value: 2 * time.Second, EnvVars: []string{"HERD_HEALTH_INTERVAL"},
					Usage: "active health check interval per backend (0 turns checks off)"},
				&cli.DurationFlag{Name: "health-timeout", Value: time.Second, EnvVars: []string{"HERD_HEALTH_TIMEOUT"},
					Usage: "active health check timeout"},
				&cli.IntFlag{Name: "health-rise", Value: 2, EnvVars: []string{"HERD_HEALTH_RISE"},
					Usage: "passing checks in a row that bring a backend back"},
				&cli.IntFlag{Name: "health-fall", Value: 3, EnvVars: []string{"HERD_HEALTH_FALL"},
					Usage: "failing checks in a row that take a backend out"},
				&cli.StringFlag{Name: "balance", Value: string(balancer.RoundRobin), EnvVars: []string{"HERD_BALANCE"},
					Usage: "how each request's backend is chosen: round-robin, or least-request (the less busy of two at random)"},
				&cli.IntFlag{Name: "backend-max-conns", EnvVars: []string{"HERD_BACKEND_MAX_CONNS"},
					Usage: "requests in flight to one backend at most; more wait in the gateway for one with room (0: no cap)"},
				&cli.DurationFlag{Name: "queue-timeout", Value: 5 * time.Second, EnvVars: []string{"HERD_QUEUE_TIMEOUT"},
					Usage: "with --backend-max-conns, how long a request may wait for a backend with room before a 503"},
				&cli.BoolFlag{Name: "event-loop", Value: true, EnvVars: []string{"HERD_EVENT_LOOP"},
					Usage: "relay common requests on event-loop threads, the rest on a goroutine per connection (false: goroutines for all; off with --backend-max-conns)"},
				&cli.IntFlag{Name: "event-loop-threads", EnvVars: []string{"HERD_EVENT_LOOP_THREADS"},
					Usage: "event loops sharing the client connections (0: one per two CPUs, at least one)"},
				&cli.DurationFlag{Name: "slow-start", EnvVars: []string{"HERD_SLOW_START"},
					Usage: "ramp a new or recovered backend to its full share over this long (0: off)"},
				&cli.IntFlag{Name: "retries", Value: 2, EnvVars: []string{"HERD_RETRIES"},
					Usage: "other backends a failed request may be sent to (only when safe; see docs/http.md)"},
				&cli.DurationFlag{Name: "connect-timeout", Value: 2 * time.Second, EnvVars: []string{"HERD_CONNECT_TIMEOUT"},
					Usage: "connecting to a backend"},
				&cli.DurationFlag{Name: "response-header-timeout", Value: 60 * time.Second, EnvVars: []string{"HERD_RESPONSE_HEADER_TIMEOUT"},
					Usage: "waiting for a backend's response head once the request is sent"},
				&cli.DurationFlag{Name: "backend-idle-timeout", Value: 90 * time.Second, EnvVars: []string{"HERD_BACKEND_IDLE_TIMEOUT"},
					Usage: "closing an unused keep-alive connection to a backend; keep it below the backends' own"},
				&cli.DurationFlag{Name: "client-idle-timeout", Value: 60 * time.Second, EnvVars: []string{"HERD_CLIENT_IDLE_TIMEOUT"},
					Usage: "closing a client connection that sends no request"},
				&cli.StringFlag{Name: "access-log", Value: "off", EnvVars: []string{"HERD_ACCESS_LOG"},
					Usage: "one log line per request: off, on, or sampled (see --access-log-sample)"},
				&cli.Float64Flag{Name: "access-log-sample", Value: 0.01, EnvVars: []string{"HERD_ACCESS_LOG_SAMPLE"},
					Usage: "with --access-log sampled, the fraction of requests logged"},
				&cli.BoolFlag{Name: "enable-pprof", EnvVars: []string{"HERD_ENABLE_PPROF"},
					Usage: "serve Go's profiler at /debug/pprof/ on the admin address (behind the token)"},
				&cli.DurationFlag{Name: "shutdown-grace", Value: 30 * time.Second, EnvVars: []string{"HERD_SHUTDOWN_GRACE"},
					Usage: "on SIGTERM, how long in-flight requests may take to finish"},
			}, cliutil.GossipFlags("127.0.0.1:7070")...), cliutil.LogFlags()...),
			Description: cliutil.DaemonExitCodes,
			Before:      cliutil.LoadConfig,
			Action:      run,
		}},
	})
}

func run(c *cli.Context) error {
	logger, err := cliutil.Logger(c, "gateway")
	if err != nil {
		return err
	}
	mcfg, err := cliutil.MembershipConfig(c, logger)
	if err != nil {
		return err
	}
	gcfg := gateway.DefaultConfig()
	gcfg.Service = c.String("service")
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
	bc.BackendMaxConns, bc.QueueTimeout = c.Int("backend-max-conns"), c.Duration("queue-timeout")
	bc.EventLoop, bc.EventLoopThreads = c.Bool("event-loop"), c.Int("event-loop-threads")
	if bc.Balance, err = balancer.ParseAlgorithm(c.String("balance")); err != nil {
		return cli.Exit(err.Error(), 2)
	}
	gw, err := gateway.New(gcfg)
	if err != nil {
		return cli.Exit(err.Error(), 2)
	}

	traffic, err := cliutil.Listen("--listen", c.String("listen"))
	if err != nil {
		return err
	}
	defer traffic.Close()
	admin, err := cliutil.ListenAdmin(c)
	if err != nil {
		return err
	}
	defer admin.Close()

	mcfg.Tags = membership.Tags{Role: membership.RoleGateway, Gen: uint64(time.Now().UnixMilli())}
	mcfg.EventCh, mcfg.QueryCh = gw.EventCh(), gw.QueryCh()
	cluster, err := membership.New(mcfg)
	if err != nil {
		return err
	}
	defer cluster.Shutdown()
	if joins := c.StringSlice("join"); len(joins) > 0 {
		if _, err := cluster.Join(joins); err != nil {
			return err
		}
	}

	ctx, stop := cliutil.SignalContext()
	defer stop()
	gwCtx, stopGateway := context.WithCancel(context.Background())
	defer stopGateway()
	gwDone := make(chan struct{})
	go func() { gw.Run(gwCtx); close(gwDone) }()

	srv := api.NewServer(c.String("token"), logger)
	srv.HandleJSON("/v1/members", func(*http.Request) (any, error) { return api.MembersOf(cluster.Members()), nil })
	srv.HandleJSON("/v1/backends", func(*http.Request) (any, error) { return gw.Balancer().Backends(), nil })
	dataDir, err := cliutil.DataDir(c)
	if err != nil {
		return err
	}
	coord, err := rollout.New(rollout.Config{
		Members: cluster, Service: gcfg.Service, StatePath: filepath.Join(dataDir, "rollouts.json"), Logger: logger,
		MembersChanged: gw.Changed,
	})
	if err != nil {
		return err
	}
	defer coord.Close()
	srv.HandleRollouts(coord)
	srv.HandleKeys(cluster)
	srv.HandleForceLeave(cluster.ForceLeave)
	srv.HandleDashboard(api.Dashboard{Node: c.String("node"), Version: cliutil.Version})
	srv.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if c.Bool("enable-pprof") {
		srv.Handle("/debug/pprof/", http.HandlerFunc(pprof.Index))
		srv.Handle("/debug/pprof/profile", http.HandlerFunc(pprof.Profile))
		srv.Handle("/debug/pprof/trace", http.HandlerFunc(pprof.Trace))
	}
	go func() {
		if err := cliutil.Serve(ctx, admin, srv, 5*time.Second, logger); err != nil {
			logger.Error("admin API", "error", err)
		}
	}()
	logger.Info("gateway ready", "listen", traffic.Addr(), "admin", admin.Addr(), "gossip", cluster.LocalNode().Addr,
		"service", gcfg.Service)

	serveErr := cliutil.ServeUntil(ctx, traffic, gw.Balancer(), c.Duration("shutdown-grace"))
	// In-flight requests have finished: leave, then stop following events.
	if err := cluster.Leave(); err != nil {
		logger.Warn("leave", "error", err)
	}
	stopGateway()
	<-gwDone
	logger.Info("gateway stopped")
	return serveErr
}
