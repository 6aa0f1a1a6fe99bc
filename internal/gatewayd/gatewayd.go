// Package gatewayd is the gateway process's life: how it starts (gossip
// first, its traffic port only once it knows the cluster's backends), how it
// stops, and how it is replaced by a new binary without dropping anything
// (SIGHUP: cloudflare/tableflip passes the listening sockets, a handoff
// passes the view, then the gossip identity). cmd/gateway fills its Config.
package gatewayd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"
	"github.com/hashicorp/go-hclog"

	"github.com/herd-cluster/herd/internal/daemon"
	"github.com/herd-cluster/herd/pkg/certs"
	"github.com/herd-cluster/herd/pkg/gateway"
	"github.com/herd-cluster/herd/pkg/membership"
	"github.com/herd-cluster/herd/pkg/rollout"
	"github.com/herd-cluster/herd/pkg/scale"
)

// Config is what a gateway process runs with.
type Config struct {
	Gateway    gateway.Config
	Membership *membership.Config
	// Listen is the client traffic address; ListenName is how errors name
	// it (the command line's flag). Default name "traffic address".
	Listen, ListenName string
	// TLSListen, if set, is the address of the TLS client traffic listener,
	// served with the certificates Certs configures (read at start, then
	// polled; an upgrade's new process reads them afresh). TLSListenName
	// and CertsName are how errors name the address and the certificates
	// (the command line's flags).
	TLSListen, TLSListenName string
	Certs                    certs.Config
	CertsName                string
	// Join are gossip addresses to join at start (besides the members of
	// the saved view).
	Join []string
	// ListenAdmin opens the admin listener with the given listen function
	// (an upgrade's, which may hand back the old process's socket).
	ListenAdmin func(listen func(network, addr string) (net.Listener, error)) (net.Listener, error)
	// Admin builds the admin API once gossip and the coordinators run.
	Admin func(*Parts) http.Handler
	// DataDir keeps the rollout coordinators' state (rollout.SetConfig);
	// empty: in memory.
	DataDir string
	// ShutdownGrace bounds how long in-flight requests may take to finish
	// on a stop or an upgrade.
	ShutdownGrace time.Duration
	// StartTimeout bounds the wait for the gossip port (a gateway that is
	// stopping may still hold it) and for the cluster's state at start.
	StartTimeout time.Duration
	// UpgradeTimeout is how long a new binary has to say it is ready
	// before the upgrade is given up and this process keeps serving.
	UpgradeTimeout time.Duration
	// PIDFile, if set, holds the pid of the process serving (written when
	// it is ready; the new one's after an upgrade).
	PIDFile string
	Logger  hclog.Logger
}

// Parts are what the admin API serves.
type Parts struct {
	Gateway  *gateway.Gateway
	Cluster  *membership.Cluster
	Rollouts *rollout.Set
	Scaler   *scale.Scaler
	// Certs are the TLS listener's certificates; nil without TLSListen.
	Certs *certs.Store
	// Autoscaler sets, shares and reports the services' autoscaling.
	Autoscaler Autoscaler
}

// handoffFile names the socket the old process passes to the new one.
const handoffFile = "herd-handoff"

// process is one gateway process.
type process struct {
	cfg    Config
	logger hclog.Logger
	upg    *tableflip.Upgrader // nil where upgrades are not supported
	gw     *gateway.Gateway
	view   gateway.View // what it started from

	runCtx  context.Context
	stopRun context.CancelFunc
	runDone chan struct{}

	cluster  *membership.Cluster
	rollouts *rollout.Set
	scaler   *scale.Scaler
	auto     atomic.Pointer[autoscaler] // once it runs
	traffic  net.Listener
	tlsLn    net.Listener
	certs    *certs.Store
	adminLn  net.Listener
	adminSrv *http.Server
	serveErr chan error
	hup      chan os.Signal
}

// Run runs a gateway process until SIGTERM or SIGINT (a stop), or a
// successful upgrade on SIGHUP (the new process serves on).
func Run(cfg Config) error {
	p := &process{cfg: cfg, logger: cfg.Logger, serveErr: make(chan error, 3), hup: make(chan os.Signal, 1)}
	// A SIGHUP during the start (the pid file already names this process)
	// waits for it to be over, instead of ending the process.
	signal.Notify(p.hup, syscall.SIGHUP)
	defer signal.Stop(p.hup)
	defer p.close()
	upg, err := tableflip.New(tableflip.Options{UpgradeTimeout: cfg.UpgradeTimeout, PIDFile: cfg.PIDFile})
	switch {
	case errors.Is(err, tableflip.ErrNotSupported):
		p.logger.Warn("upgrades on SIGHUP are not supported on this system")
	case err != nil:
		return fmt.Errorf("upgrader: %w", err)
	default:
		p.upg = upg
	}
	if cfg.TLSListen != "" {
		if p.certs, err = certs.Load(cfg.Certs); err != nil {
			return prefixed(cfg.CertsName, "certificates", err)
		}
	}
	cfg.Gateway.Queries = autoscaleQueries(&p.auto)
	cfg.Gateway.Queries[queryCanaryCounts] = p.answerCanaryCounts
	if p.gw, err = gateway.New(cfg.Gateway); err != nil {
		return err
	}
	var succ *gateway.Successor
	if p.upg != nil && p.upg.HasParent() {
		if succ, err = p.takeView(); err != nil {
			return err
		}
	} else if err := p.restoreView(); err != nil {
		return err
	}
	p.runCtx, p.stopRun = context.WithCancel(context.Background())
	p.runDone = make(chan struct{})
	go p.runInBackground()

	if succ == nil {
		if err := p.startGossip(); err != nil {
			return err
		}
	}
	if err := p.listenTraffic(); err != nil {
		return err
	}
	if p.adminLn, err = cfg.ListenAdmin(p.listen); err != nil {
		return err
	}
	p.serveTraffic()
	if succ != nil {
		// Serving from the old process's view, followed: tell it to stop
		// accepting, then wait for its gossip identity.
		go succ.Run(p.runCtx, p.gw)
		if err := p.upg.Ready(); err != nil {
			return err
		}
		p.logger.Info("upgrade: serving; waiting for the old process to hand gossip over")
		<-succ.Taken
		if err := succ.Err(); err != nil {
			p.logger.Warn("upgrade: the old process went away without handing over; taking gossip", "error", err)
		}
		if err := p.startGossip(); err != nil {
			return err
		}
	}
	if err := p.startCoordinatorAndAdmin(); err != nil {
		return err
	}
	if succ == nil && p.upg != nil {
		if err := p.upg.Ready(); err != nil {
			return err
		}
	}
	_ = daemon.Notify("MAINPID=" + strconv.Itoa(os.Getpid()) + "\nREADY=1")
	args := []any{"listen", p.traffic.Addr(), "admin", p.adminLn.Addr(),
		"gossip", p.cluster.LocalNode().Addr, "service", cfg.Gateway.Service, "pid", os.Getpid()}
	if p.tlsLn != nil {
		args = append(args, "tls_listen", p.tlsLn.Addr())
	}
	p.logger.Info("gateway ready", args...)
	return p.wait()
}

// runInBackground runs what lives as long as the gateway: its membership
// loop and the certificates' reloads. runDone closes when both are over.
func (p *process) runInBackground() {
	defer close(p.runDone)
	if p.certs != nil {
		done := make(chan struct{})
		go func() { p.certs.Run(p.runCtx); close(done) }()
		defer func() { <-done }()
	}
	p.gw.Run(p.runCtx)
}

// prefixed names what failed: "--tls-cert-dir: /etc/herd/certs: no such
// directory".
func prefixed(name, fallback string, err error) error {
	if name == "" {
		name = fallback
	}
	return fmt.Errorf("%s: %w", name, err)
}

// listenTraffic opens the client traffic listeners, plain and TLS.
func (p *process) listenTraffic() error {
	name := p.cfg.ListenName
	if name == "" {
		name = "traffic address"
	}
	var err error
	if p.traffic, err = daemon.ListenWith(p.listen, name, p.cfg.Listen); err != nil {
		return err
	}
	if p.certs == nil {
		return nil
	}
	name = p.cfg.TLSListenName
	if name == "" {
		name = "TLS traffic address"
	}
	p.tlsLn, err = daemon.ListenWith(p.listen, name, p.cfg.TLSListen)
	return err
}

// serveTraffic serves the client traffic listeners; serveErr gets what
// ends each.
func (p *process) serveTraffic() {
	go func() { p.serveErr <- p.gw.Balancer().Serve(p.traffic) }()
	if p.tlsLn != nil {
		cfg := p.certs.TLSConfig()
		go func() { p.serveErr <- p.gw.Balancer().ServeTLS(p.tlsLn, cfg) }()
	}
}

// listen opens a listener through the upgrader, which hands back the old
// process's socket for the same address after an upgrade.
func (p *process) listen(network, addr string) (net.Listener, error) {
	if p.upg != nil {
		return p.upg.Listen(network, addr)
	}
	return net.Listen(network, addr)
}

// takeView reads the old process's view from the handoff and restores it.
func (p *process) takeView() (*gateway.Successor, error) {
	f, err := p.upg.File(handoffFile)
	if err != nil || f == nil {
		return nil, fmt.Errorf("upgrade: no handoff from the old process: %v", err)
	}
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("upgrade: handoff: %w", err)
	}
	v, succ, err := gateway.ReadView(conn)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("upgrade: %w", err)
	}
	p.view = v
	p.logger.Info("upgrade: took the old process's view", "members", p.gw.Restore(v))
	return succ, nil
}

// restoreView restores the view the last process of this gateway saved, so
// that it routes from its first request even before gossip catches up.
func (p *process) restoreView() error {
	if p.cfg.Gateway.ViewPath == "" {
		return nil
	}
	v, err := gateway.LoadView(p.cfg.Gateway.ViewPath)
	if err != nil {
		p.logger.Warn("ignoring the saved view", "error", err)
		return nil
	}
	p.view = v
	if n := p.gw.Restore(v); n > 0 {
		p.logger.Info("restored the saved view", "members", n, "saved", v.Saved)
	}
	return nil
}

// startGossip binds the gossip port, waiting up to StartTimeout while
// another process (the gateway stopping before this one) still holds it,
// joins the cluster, and makes the view what the join says.
func (p *process) startGossip() error {
	mcfg := *p.cfg.Membership
	mcfg.EventCh, mcfg.QueryCh = p.gw.EventCh(), p.gw.QueryCh()
	deadline := time.Now().Add(p.cfg.StartTimeout)
	for waited := false; ; {
		c, err := membership.New(&mcfg)
		if err == nil {
			p.cluster = c
			break
		}
		// memberlist reports the bind error as text.
		inUse := errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
		if !inUse || time.Now().After(deadline) {
			return err
		}
		if !waited {
			waited = true
			p.logger.Info("gossip address in use; waiting for it (the gateway stopping before this one?)",
				"addr", mcfg.BindAddr, "for", p.cfg.StartTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := p.gw.SetRouteFetcher(p.runCtx, p.cluster); err != nil {
		return err
	}
	return p.join()
}

// join joins the cluster through Join, or else through the members of the
// view it started from, and makes the view what the join's state says. A
// join that fails is an error only with nothing to route by.
func (p *process) join() error {
	var fromView []string
	for _, n := range p.view.Nodes {
		if n.Name != p.cfg.Membership.NodeName {
			fromView = append(fromView, n.Addr)
		}
	}
	if len(p.cfg.Join) == 0 && len(fromView) == 0 {
		return nil // the first member of a cluster
	}
	joined := make(chan error, 1)
	go func() {
		_, err := p.cluster.Join(p.cfg.Join)
		if len(p.cfg.Join) == 0 || err != nil && len(fromView) > 0 {
			_, err = p.cluster.Join(fromView)
		}
		joined <- err
	}()
	var err error
	select {
	case err = <-joined:
	case <-time.After(p.cfg.StartTimeout):
		err = fmt.Errorf("join: no answer within %s", p.cfg.StartTimeout)
	}
	if err != nil {
		if len(p.view.Nodes) == 0 {
			return err
		}
		p.logger.Warn("could not join yet; routing by the saved view until gossip catches up", "error", err)
		return nil
	}
	return p.gw.Sync(context.Background(), p.cluster.Members())
}

func (p *process) startCoordinatorAndAdmin() error {
	set, err := rollout.NewSet(rollout.SetConfig{Dir: p.cfg.DataDir, Only: p.cfg.Gateway.Service, Config: rollout.Config{
		Members: p.cluster, MembersChanged: p.gw.Changed, Logger: p.logger, Measure: p.measure,
	}})
	if err != nil {
		return err
	}
	p.rollouts = set
	if p.scaler, err = p.newScaler(); err != nil {
		set.Close()
		return err
	}
	if err := p.startAutoscaler(); err != nil {
		set.Close()
		return err
	}
	p.adminSrv = &http.Server{
		Handler: p.cfg.Admin(&Parts{Gateway: p.gw, Cluster: p.cluster, Rollouts: set, Scaler: p.scaler,
			Certs: p.certs, Autoscaler: p.auto.Load()}),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          p.logger.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
	}
	go func() {
		if err := p.adminSrv.Serve(p.adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.logger.Error("admin API", "error", err)
		}
	}()
	return nil
}

// wait serves until a stop, or a successful upgrade.
func (p *process) wait() error {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(term)
	for {
		select {
		case err := <-p.serveErr:
			return fmt.Errorf("traffic: %w", err)
		case <-term:
			return p.stop()
		case <-p.hup:
			if p.upg == nil {
				p.logger.Warn("SIGHUP: upgrades are not supported on this system")
				continue
			}
			leader, err := p.upgrade()
			if err != nil {
				p.logger.Error("upgrade failed; this process keeps serving", "error", err)
				_ = daemon.Notify("READY=1")
				continue
			}
			return p.handOver(leader)
		}
	}
}

// upgrade starts the binary on disk in this process's place, with the same
// arguments, passing the listening sockets and a handoff that follows this
// process's view; it returns once the new process serves, or fails (it
// exited, or did not say it was ready within UpgradeTimeout).
func (p *process) upgrade() (*gateway.Leader, error) {
	_ = daemon.Notify("RELOADING=1")
	p.logger.Info("SIGHUP: upgrading: starting the binary on disk in this process's place")
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("handoff socket: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "handoff"), os.NewFile(uintptr(fds[1]), handoffFile)
	defer theirs.Close()
	conn, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		return nil, fmt.Errorf("handoff socket: %w", err)
	}
	if err := p.upg.AddFile(handoffFile, theirs); err != nil {
		conn.Close()
		return nil, fmt.Errorf("handoff socket: %w", err)
	}
	leader, err := gateway.Lead(context.Background(), p.gw, conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if err := p.upg.Upgrade(); err != nil {
		leader.Close(context.Background())
		return nil, err
	}
	return leader, nil
}

// handOver ends this process after a successful upgrade: it stops
// accepting (the new process accepts on the same sockets), lets its
// requests finish, closes the admin API and the coordinator, leaves gossip
// without a leave message (the new process is the same member), and hands
// the gossip identity over.
func (p *process) handOver(leader *gateway.Leader) error {
	p.logger.Info("upgrade: the new process serves; draining this one")
	p.drain()
	if err := p.cluster.Shutdown(); err != nil {
		p.logger.Warn("gossip shutdown", "error", err)
	}
	p.stopRun() // saves the view first: the new process saves its own after
	<-p.runDone
	if err := leader.HandOver(); err != nil {
		p.logger.Warn("upgrade: handing gossip over", "error", err)
	}
	p.logger.Info("upgrade done: this process exits")
	return nil
}

// leaveBudget bounds how long a stopping gateway spends leaving: its leave
// message goes out with the next gossip round, and Serf would then keep it
// for a second more, resending it, holding the gossip port a restart needs.
// The members it reached spread it; one that had not heard it by then sees
// the gateway fail instead, or come back.
const leaveBudget = 300 * time.Millisecond

// stop ends this process on SIGTERM. It leaves the cluster first, still
// serving (its view stays current: gossip goes on while it leaves), for at
// most leaveBudget; then, at once, it stops accepting and lets go of the
// gossip port, so that the process starting in its place binds both and
// serves: the gap is that process's start. This one then finishes its
// requests (every answer closes its connection) and closes its idle
// connections (DrainIdleDelay: a request sent on one meanwhile is still
// answered).
func (p *process) stop() error {
	began := time.Now()
	_ = daemon.Notify("STOPPING=1")
	p.logger.Info("stopping: leaving the cluster")
	left := make(chan struct{})
	go func() {
		defer close(left)
		if err := p.cluster.Leave(); err != nil {
			p.logger.Warn("leave", "error", err)
		}
	}()
	select {
	case <-left:
	case <-time.After(leaveBudget):
		p.logger.Debug("the leave goes on spreading without this process", "after", leaveBudget)
	}
	p.gw.Balancer().StopAccepting()
	if p.upg != nil {
		p.upg.Stop() // its copies of the listening sockets too: new connections are refused, not left waiting
	}
	if err := p.cluster.Shutdown(); err != nil {
		p.logger.Warn("gossip shutdown", "error", err)
	}
	p.logger.Info("stopped accepting; draining", "after", time.Since(began).Round(time.Millisecond))
	err := p.drain()
	p.stopRun()
	<-p.runDone
	if p.cfg.PIDFile != "" {
		if b, rerr := os.ReadFile(p.cfg.PIDFile); rerr == nil && string(b) == strconv.Itoa(os.Getpid()) {
			os.Remove(p.cfg.PIDFile)
		}
	}
	p.logger.Info("gateway stopped", "took", time.Since(began).Round(time.Millisecond))
	return err
}

// drain stops accepting traffic, lets the requests in flight finish within
// ShutdownGrace, and closes the admin API and the coordinator.
func (p *process) drain() error {
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.ShutdownGrace)
	defer cancel()
	var err error
	if serr := p.gw.Balancer().Shutdown(ctx); serr != nil {
		err = fmt.Errorf("shutdown %s: %w", p.traffic.Addr(), serr)
	}
	actx, acancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer acancel()
	_ = p.adminSrv.Shutdown(actx)
	p.scaler.Close()
	p.rollouts.Close()
	return err
}

// close releases whatever a start that failed half-way had opened.
func (p *process) close() {
	if p.stopRun != nil {
		p.stopRun()
		<-p.runDone
	}
	if p.cluster != nil {
		_ = p.cluster.Shutdown()
	}
	for _, l := range []net.Listener{p.traffic, p.tlsLn, p.adminLn} {
		if l != nil {
			l.Close()
		}
	}
	if p.upg != nil {
		p.upg.Stop()
	}
}
