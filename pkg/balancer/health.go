package balancer

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/herd-cluster/herd/internal/h2health"
)

// healthChecker runs the active health checks: each backend is asked GET
// HealthPath every HealthInterval on a new connection (as HAProxy's "check"
// does), over HTTP/1.1 or, for an H2C service, h2c; a GRPC service's
// backends are asked gRPC's standard Health/Check instead (h2health); Fall failures in a row take it out of rotation, Rise successes in a
// row bring it back. A backend ejected passively (a refused or reset
// connection) is out at once and comes back the same way, through Rise good
// checks. One goroutine per backend, from its arrival to its retirement or
// to stop.
type healthChecker struct {
	path              string
	interval, timeout time.Duration
	rise, fall        int
	client            *http.Client
	protocol          func() Protocol // the service's, at each check
	logger            hclog.Logger
	onDown            func() // counts a backend taken out
	ctx               context.Context
	cancel            context.CancelFunc
	wg                sync.WaitGroup
}

// newHealthChecker returns nil when active checks are off.
func newHealthChecker(cfg *Config, logger hclog.Logger, protocol func() Protocol, onDown func()) *healthChecker {
	if cfg.HealthInterval <= 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &healthChecker{
		path: cfg.HealthPath, interval: cfg.HealthInterval, timeout: cfg.HealthTimeout,
		rise: cfg.Rise, fall: cfg.Fall, logger: logger, protocol: protocol, onDown: onDown, ctx: ctx, cancel: cancel,
		client: &http.Client{
			Timeout: cfg.HealthTimeout,
			Transport: &http.Transport{
				DisableKeepAlives: true,
				DialContext:       (&net.Dialer{Timeout: cfg.HealthTimeout}).DialContext,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// watch checks h until it is retired or the checker stops.
func (hc *healthChecker) watch(h *host) {
	hc.wg.Go(func() { hc.loop(h) })
}

// stop ends every check and waits for them. Safe to call more than once.
func (hc *healthChecker) stop() {
	hc.cancel()
	hc.wg.Wait()
	hc.client.CloseIdleConnections()
}

func (hc *healthChecker) loop(h *host) {
	// Spread the checks of many backends over the interval.
	t := time.NewTimer(time.Duration(rand.Int64N(int64(hc.interval))))
	defer t.Stop()
	okRun, failRun := 0, 0
	for {
		select {
		case <-h.stop:
			return
		case <-hc.ctx.Done():
			return
		case <-t.C:
		}
		if h.resetRuns.Swap(false) {
			okRun = 0
		}
		err := hc.probe(h)
		if err == nil {
			okRun, failRun = okRun+1, 0
		} else {
			okRun, failRun = 0, failRun+1
		}
		switch {
		case h.down.Load() && okRun >= hc.rise:
			h.upSince.Store(time.Now().UnixNano())
			h.down.Store(false)
			hc.logger.Info("backend up: health checks pass", "addr", h.hostPort, "node", h.node, "checks", okRun)
		case !h.down.Load() && failRun >= hc.fall:
			h.down.Store(true)
			hc.onDown()
			hc.logger.Warn("backend down: health checks fail", "addr", h.hostPort, "node", h.node, "checks", failRun, "error", err)
		}
		t.Reset(hc.interval)
	}
}

// probe runs one check: a 2xx or 3xx answer within the timeout passes, or
// for gRPC, SERVING.
func (hc *healthChecker) probe(h *host) error {
	ctx, cancel := context.WithTimeout(hc.ctx, hc.timeout)
	defer cancel()
	switch hc.protocol() {
	case GRPC:
		return h2health.GRPC(ctx, h.hostPort, "")
	case H2C:
		return h2health.HTTP(ctx, h.hostPort, hc.path)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+h.hostPort+hc.path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "herd-gateway-health-check")
	resp, err := hc.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode >= 400 {
		return fmt.Errorf("health check answered %s", resp.Status)
	}
	return nil
}
