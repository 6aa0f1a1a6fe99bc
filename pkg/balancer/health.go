package balancer

import (
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"time"
)

// Active health checks: each backend is asked GET HealthPath every
// HealthInterval on a new connection (as HAProxy's "check" does); Fall
// failures in a row take it out of rotation, Rise successes in a row bring
// it back. A backend ejected passively (a refused or reset connection) is
// out at once and comes back the same way, through Rise good checks.

func (b *Balancer) activeChecks() bool { return b.cfg.HealthInterval > 0 }

func (b *Balancer) newHealthClient() *http.Client {
	return &http.Client{
		Timeout: b.cfg.HealthTimeout,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext:       (&net.Dialer{Timeout: b.cfg.HealthTimeout}).DialContext,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// healthLoop checks be until it is retired.
func (b *Balancer) healthLoop(be *backend) {
	// Spread the checks of many backends over the interval.
	t := time.NewTimer(time.Duration(rand.Int64N(int64(b.cfg.HealthInterval))))
	defer t.Stop()
	okRun, failRun := 0, 0
	for {
		select {
		case <-be.stop:
			return
		case <-t.C:
		}
		if be.resetRuns.Swap(false) {
			okRun = 0
		}
		err := b.probe(be)
		if err == nil {
			okRun, failRun = okRun+1, 0
		} else {
			okRun, failRun = 0, failRun+1
		}
		switch {
		case be.down.Load() && okRun >= b.cfg.Rise:
			be.upSince.Store(time.Now().UnixNano())
			be.down.Store(false)
			b.logger.Info("backend up: health checks pass", "addr", be.hostPort, "node", be.node, "checks", okRun)
		case !be.down.Load() && failRun >= b.cfg.Fall:
			be.down.Store(true)
			b.ejections.Add(1)
			b.logger.Warn("backend down: health checks fail", "addr", be.hostPort, "node", be.node, "checks", failRun, "error", err)
		}
		t.Reset(b.cfg.HealthInterval)
	}
}

// probe runs one check: a 2xx or 3xx answer within HealthTimeout passes.
func (b *Balancer) probe(be *backend) error {
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.HealthTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+be.hostPort+b.cfg.HealthPath, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "herd-gateway-health-check")
	resp, err := b.health.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode >= 400 {
		return &httpError{status: resp.StatusCode, msg: "health check answered " + resp.Status}
	}
	return nil
}

// slowStartSkip reports whether pick should pass over be this time: a
// backend up for less than SlowStart gets a share of its turns that grows
// linearly from 0 to all, as HAProxy's slowstart does with weights.
func slowStartSkip(be *backend, now, slowStart int64) bool {
	if slowStart <= 0 {
		return false
	}
	up := now - be.upSince.Load()
	if up >= slowStart {
		return false
	}
	return rand.Int64N(slowStart) >= up
}
