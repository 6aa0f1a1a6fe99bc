// Command agent runs on every host: it starts the service's replicas, joins
// the cluster once they are healthy, announces them, and supervises them.
package main

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/urfave/cli/v2"

	"github.com/herd-cluster/herd/internal/cliutil"
	"github.com/herd-cluster/herd/internal/daemon"
	"github.com/herd-cluster/herd/pkg/admin"
	"github.com/herd-cluster/herd/pkg/agent"
	"github.com/herd-cluster/herd/pkg/membership"
	"github.com/herd-cluster/herd/pkg/route"
	"github.com/herd-cluster/herd/pkg/runtime"
	"github.com/herd-cluster/herd/pkg/runtime/docker"
	"github.com/herd-cluster/herd/pkg/runtime/process"
)

func main() {
	d := agent.DefaultConfig()
	cliutil.Main(&cli.App{
		Name:  "agent",
		Usage: "run a service's replicas on this host and announce them to the cluster",
		Commands: []*cli.Command{{
			Name:  "join",
			Usage: "start the replicas, join the cluster once they are healthy, supervise them",
			Flags: append(append([]cli.Flag{
				&cli.IntFlag{Name: "replicas", Value: d.Replicas, EnvVars: []string{"HERD_REPLICAS"},
					Usage: fmt.Sprintf("how many replicas to run at first start (1-%d); `clusterctl scale` changes the count, "+
						"which the agent keeps across restarts until this flag changes", agent.MaxReplicas)},
				&cli.IntFlag{Name: "max-replicas", Value: d.MaxReplicas, EnvVars: []string{"HERD_MAX_REPLICAS"},
					Usage: fmt.Sprintf("the most replicas a scale may run on this host: ports base-port to "+
						"base-port+max-replicas-1 (1-%d)", agent.MaxReplicas)},
				&cli.StringFlag{Name: "image", Value: "predictor:1.0.0", EnvVars: []string{"HERD_IMAGE"},
					Usage: "what the replicas run, name:tag"},
				&cli.StringFlag{Name: "service", Value: d.Service, EnvVars: []string{"HERD_SERVICE"},
					Usage: "the service the replicas serve"},
				&cli.StringSliceFlag{Name: "route", EnvVars: []string{"HERD_ROUTE"},
					Usage: "requests the service takes at the gateways: [host][/path-prefix] (api.example.com/predict, *.example.com, /predict); repeatable, at most 100"},
				&cli.BoolFlag{Name: "strip-prefix", EnvVars: []string{"HERD_STRIP_PREFIX"},
					Usage: "remove the matched route's path prefix from the path the replicas get"},
				&cli.StringFlag{Name: "protocol", Value: string(membership.ProtoHTTP), EnvVars: []string{"HERD_PROTOCOL"},
					Usage: "how the replicas are spoken to: http (HTTP/1.1), h2c (HTTP/2 in clear) or grpc " +
						"(h2c, health checked with grpc.health.v1 instead of --health-path)"},
				&cli.IntFlag{Name: "base-port", Value: int(d.BasePort), EnvVars: []string{"HERD_BASE_PORT"},
					Usage: "replica i listens on base-port+i"},
				&cli.StringFlag{Name: "host-ip", EnvVars: []string{"HERD_HOST_IP"},
					Usage: "address the replicas are reachable at (default: the advertise address)"},
				&cli.StringFlag{Name: "runtime", Value: "docker", EnvVars: []string{"HERD_RUNTIME"},
					Usage: "docker or process"},
				&cli.StringFlag{Name: "docker-network", Value: "bridge", EnvVars: []string{"HERD_DOCKER_NETWORK"},
					Usage: "docker runtime: bridge (publish container port 8080 on host-ip:port) or host " +
						"(the service listens on host-ip:port in the host's network)"},
				&cli.BoolFlag{Name: "docker-image-healthcheck", EnvVars: []string{"HERD_DOCKER_IMAGE_HEALTHCHECK"},
					Usage: "docker runtime: keep the image's HEALTHCHECK running in the engine too (the agent checks " +
						"replicas itself; the engine's checks cost a process per container and interval)"},
				&cli.StringFlag{Name: "images-dir", EnvVars: []string{"HERD_IMAGES_DIR"},
					Usage: "process runtime: name:tag runs <images-dir>/<name>/<tag>"},
				&cli.StringFlag{Name: "health-path", Value: d.HealthPath, EnvVars: []string{"HERD_HEALTH_PATH"},
					Usage: "replicas' HTTP health endpoint"},
				&cli.DurationFlag{Name: "health-interval", Value: d.HealthInterval, EnvVars: []string{"HERD_HEALTH_INTERVAL"},
					Usage: "how often each replica is checked"},
				&cli.DurationFlag{Name: "start-timeout", Value: d.StartTimeout, EnvVars: []string{"HERD_START_TIMEOUT"},
					Usage: "how long a new replica has to pass its first health check"},
				&cli.BoolFlag{Name: "keep-replicas", EnvVars: []string{"HERD_KEEP_REPLICAS"},
					Usage: "on SIGTERM, drain and leave but leave the replicas running for the next agent to adopt " +
						"(default: true with --runtime docker, false with --runtime process)"},
				&cli.DurationFlag{Name: "sync-timeout", Value: d.SyncTimeout, EnvVars: []string{"HERD_SYNC_TIMEOUT"},
					Usage: "how long a replica's withdrawal waits for every live gateway's acknowledgement before the replacement fails (the replica is kept)"},
				&cli.DurationFlag{Name: "stop-grace", Value: d.StopGrace, EnvVars: []string{"HERD_STOP_GRACE"},
					Usage: "time between SIGTERM and SIGKILL for a replica to finish its requests"},
			}, daemon.GossipFlags("127.0.0.1:7071")...), daemon.LogFlags()...),
			Description: daemon.ExitCodes,
			Before:      daemon.LoadConfig,
			Action:      withFlagErrors(join),
		}},
	})
}

func join(c *cli.Context) error {
	logger, err := daemon.Logger(c, "agent")
	if err != nil {
		return err
	}
	mcfg, err := daemon.MembershipConfig(c, logger)
	if err != nil {
		return err
	}
	cfg := agent.DefaultConfig()
	cfg.Logger = logger
	cfg.Node = c.String("node")
	cfg.Service = c.String("service")
	if cfg.Routes, err = route.ParseAll(c.StringSlice("route")); err != nil {
		return cli.Exit("--route: "+err.Error(), 2)
	}
	cfg.StripPrefix = c.Bool("strip-prefix")
	cfg.Protocol = membership.Protocol(c.String("protocol"))
	cfg.Replicas = c.Int("replicas")
	cfg.MaxReplicas = c.Int("max-replicas")
	cfg.Join = c.StringSlice("join")
	cfg.HealthPath = c.String("health-path")
	cfg.HealthInterval = c.Duration("health-interval")
	cfg.StartTimeout = c.Duration("start-timeout")
	cfg.StopGrace = c.Duration("stop-grace")
	cfg.SyncTimeout = c.Duration("sync-timeout")
	cfg.KeepReplicas = c.String("runtime") == "docker"
	if c.IsSet("keep-replicas") {
		cfg.KeepReplicas = c.Bool("keep-replicas")
	}
	if bp := c.Int("base-port"); bp < 1 || bp > 65535 {
		return fmt.Errorf("--base-port %d: must be between 1 and 65535", bp)
	}
	cfg.BasePort = uint16(c.Int("base-port"))
	if cfg.Image, err = runtime.ParseImage(c.String("image")); err != nil {
		return fmt.Errorf("--image: %w", err)
	}
	if cfg.HostIP, err = hostIP(c, mcfg.AdvertiseIP); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.DataDir, err = daemon.DataDir(c); err != nil {
		return err
	}
	rt, err := newRuntime(c, cfg.Node, cfg.DataDir, logger)
	if err != nil {
		return err
	}
	adminLn, err := daemon.ListenAdmin(c)
	if err != nil {
		return err
	}
	defer adminLn.Close()

	a, err := agent.New(cfg, rt, mcfg)
	if err != nil {
		return err
	}
	defer a.Close()
	srv := admin.NewServer(c.String("token"), logger)
	srv.HandleMembers(func() []membership.Node { return a.Cluster().Members() })
	srv.HandleReplicas(a.Replicas)
	adminCtx, stopAdmin := context.WithCancel(context.Background())
	defer stopAdmin()
	go func() {
		if err := daemon.Serve(adminCtx, adminLn, srv, time.Second, logger); err != nil {
			logger.Error("admin API", "error", err)
		}
	}()

	ctx, stop := daemon.SignalContext()
	defer stop()
	return a.Run(ctx)
}

func hostIP(c *cli.Context, advertise func() (netip.Addr, error)) (netip.Addr, error) {
	if s := c.String("host-ip"); s != "" {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return ip, fmt.Errorf("--host-ip %q: %w", s, err)
		}
		return ip, nil
	}
	return advertise()
}

func newRuntime(c *cli.Context, node, dataDir string, logger hclog.Logger) (agent.Runtime, error) {
	switch c.String("runtime") {
	case "process":
		return process.New(process.Config{
			ImagesDir: c.String("images-dir"),
			StateDir:  filepath.Join(dataDir, "replicas"),
			LogDir:    filepath.Join(dataDir, "logs"),
			Logger:    logger,
		})
	case "docker":
		return docker.New(c.Context, docker.Config{Node: node, Network: c.String("docker-network"),
			ImageHealthcheck: c.Bool("docker-image-healthcheck"), Timeout: 30 * time.Second, Logger: logger})
	default:
		return nil, fmt.Errorf("--runtime %q: want docker or process", c.String("runtime"))
	}
}
