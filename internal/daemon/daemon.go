// Package daemon is the flag wiring the gateway and the agent share:
// logging, gossip, the admin listener, serving until a signal, the data
// directory and --config files. clusterctl does not import it (it would link
// Serf through pkg/membership); what every program shares is internal/cliutil.
package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/urfave/cli/v2"

	"github.com/herd-cluster/herd/pkg/membership"
)

// LogFlags are --log-level and --log-json.
func LogFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "log-level", Value: "info", EnvVars: []string{"HERD_LOG_LEVEL"},
			Usage: "trace, debug, info, warn or error"},
		&cli.BoolFlag{Name: "log-json", EnvVars: []string{"HERD_LOG_JSON"}, Usage: "log JSON lines"},
	}
}

// Logger builds the process's logger from LogFlags.
func Logger(c *cli.Context, name string) (hclog.Logger, error) {
	level := hclog.LevelFromString(c.String("log-level"))
	if level == hclog.NoLevel {
		return nil, fmt.Errorf("--log-level %q: want trace, debug, info, warn or error", c.String("log-level"))
	}
	return hclog.New(&hclog.LoggerOptions{
		Name: name, Level: level, JSONFormat: c.Bool("log-json"), Output: os.Stderr,
	}), nil
}

// GossipFlags are the flags every cluster member takes. adminDefault is the
// default of --admin.
func GossipFlags(adminDefault string) []cli.Flag {
	host, _ := os.Hostname()
	return []cli.Flag{
		&cli.StringFlag{Name: "bind", Value: "0.0.0.0:7946", EnvVars: []string{"HERD_BIND"},
			Usage: "gossip address, ip:port (TCP and UDP)"},
		&cli.StringFlag{Name: "advertise", EnvVars: []string{"HERD_ADVERTISE"},
			Usage: "address other members reach this one at (default: the bind address or a private IP)"},
		&cli.StringSliceFlag{Name: "join", EnvVars: []string{"HERD_JOIN"},
			Usage: "gossip address of a member to join; repeatable, or comma-separated in HERD_JOIN"},
		&cli.StringFlag{Name: "node", Value: host, EnvVars: []string{"HERD_NODE"}, Usage: "unique node name"},
		&cli.StringFlag{Name: "encrypt", EnvVars: []string{"HERD_ENCRYPT"},
			Usage: "base64 gossip encryption key, the same on every member"},
		&cli.StringFlag{Name: "gossip-profile", Value: membership.ProfileLAN, EnvVars: []string{"HERD_GOSSIP_PROFILE"},
			Usage: "gossip timings: lan, local (one machine: faster failure detection) or wan"},
		&cli.StringFlag{Name: "admin", Value: adminDefault, EnvVars: []string{"HERD_ADMIN"},
			Usage: "admin API address, ip:port"},
		&cli.StringFlag{Name: "token", EnvVars: []string{"HERD_TOKEN"},
			Usage: "admin API bearer token (required when --admin is not loopback)"},
		&cli.StringFlag{Name: "admin-tls-cert", EnvVars: []string{"HERD_ADMIN_TLS_CERT"},
			Usage: "serve the admin API over TLS with this PEM certificate (with --admin-tls-key)"},
		&cli.StringFlag{Name: "admin-tls-key", EnvVars: []string{"HERD_ADMIN_TLS_KEY"},
			Usage: "the PEM private key of --admin-tls-cert"},
		&cli.StringFlag{Name: "data-dir", EnvVars: []string{"HERD_DATA_DIR"}, Usage: "where state is kept"},
		ConfigFlag(),
	}
}

// GossipFlagError names the flag behind a membership error the operator
// fixes with one of GossipFlags: a wrong gossip key, no address to
// advertise. Other errors, and nil, are returned as they are.
func GossipFlagError(err error) error {
	switch {
	case errors.Is(err, membership.ErrWrongKey):
		return fmt.Errorf("%w (check --encrypt / HERD_ENCRYPT)", err)
	case errors.Is(err, membership.ErrNoAdvertiseAddr):
		return fmt.Errorf("%w (--advertise / HERD_ADVERTISE)", err)
	}
	return err
}

// MembershipConfig fills a membership Config from GossipFlags.
func MembershipConfig(c *cli.Context, logger hclog.Logger) (*membership.Config, error) {
	cfg := membership.DefaultConfig()
	cfg.NodeName = c.String("node")
	cfg.BindAddr = c.String("bind")
	cfg.AdvertiseAddr = c.String("advertise")
	cfg.Profile = c.String("gossip-profile")
	cfg.Logger = logger
	dir, err := DataDir(c)
	if err != nil {
		return nil, err
	}
	cfg.SnapshotPath = filepath.Join(dir, "serf.snapshot")
	cfg.KeyringPath = filepath.Join(dir, "serf.keyring")
	if k := c.String("encrypt"); k != "" {
		key, err := membership.ParseKey(k)
		if err != nil {
			return nil, fmt.Errorf("--encrypt: %w", err)
		}
		cfg.EncryptKey = key
	}
	return cfg, nil
}

// ListenAdmin opens the admin listener, refusing a non-loopback address
// without a token: anyone who can reach the admin API can deploy.
func ListenAdmin(c *cli.Context) (net.Listener, error) {
	return ListenAdminWith(c, net.Listen)
}

// ListenAdminWith is ListenAdmin with the listener made by listen (an
// upgrade's, which may be inherited from the process it replaces).
func ListenAdminWith(c *cli.Context, listen func(network, addr string) (net.Listener, error)) (net.Listener, error) {
	addr := c.String("admin")
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("--admin %q: want ip:port: %w", addr, err)
	}
	if !ap.Addr().IsLoopback() && c.String("token") == "" {
		return nil, fmt.Errorf("--admin %s is reachable from other hosts: set --token (HERD_TOKEN) too", addr)
	}
	certFile, keyFile := c.String("admin-tls-cert"), c.String("admin-tls-key")
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("--admin-tls-cert and --admin-tls-key go together")
	}
	var tlsConfig *tls.Config
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("--admin-tls-cert %s / --admin-tls-key %s: %w", certFile, keyFile, err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	l, err := ListenWith(listen, "admin API", addr)
	if err != nil || tlsConfig == nil {
		return l, err
	}
	return tls.NewListener(l, tlsConfig), nil
}

// Listen opens a TCP listener, naming the address and what it is for in the
// error.
func Listen(what, addr string) (net.Listener, error) { return ListenWith(net.Listen, what, addr) }

// ListenWith is Listen with the listener made by listen.
func ListenWith(listen func(network, addr string) (net.Listener, error), what, addr string) (net.Listener, error) {
	l, err := listen("tcp", addr)
	if err != nil {
		// An upgrade's listener reports the bind error as text.
		if errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use") {
			return nil, fmt.Errorf("%s: address %s already in use", what, addr)
		}
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return l, nil
}

// Serve serves h on l until ctx ends, then shuts down, letting in-flight
// requests finish for up to grace.
func Serve(ctx context.Context, l net.Listener, h http.Handler, grace time.Duration, logger hclog.Logger) error {
	return ServeUntil(ctx, l, &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          logger.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
	}, grace)
}

// Server is what ServeUntil runs: *http.Server, *balancer.Balancer.
type Server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
}

// ServeUntil serves l with srv until ctx ends, then shuts it down, letting
// requests in flight finish within grace.
func ServeUntil(ctx context.Context, l net.Listener, srv Server, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown %s: %w", l.Addr(), err)
	}
	return nil
}

// SignalContext ends on SIGTERM or SIGINT.
func SignalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
}

// DefaultDataDir is --data-dir when unset.
const DefaultDataDir = "/var/lib/herd"

// DataDir is --data-dir (DefaultDataDir when unset), created if missing.
func DataDir(c *cli.Context) (string, error) {
	dir := c.String("data-dir")
	if dir == "" {
		dir = DefaultDataDir
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("--data-dir: %w", err)
	}
	return dir, nil
}

// ExitCodes is the exit code part of gateway's and agent's --help.
const ExitCodes = `Exit codes:
   0  stopped by SIGTERM or SIGINT after a clean shutdown
   1  could not run: a port in use, the Docker engine unreachable, a wrong gossip key, ...
   2  bad usage: an unknown flag, a bad flag value or --config file`
