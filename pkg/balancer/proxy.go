package balancer

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"
)

var errNoBackends = errors.New("no backend available")

// rewrite prepares the outbound request: Host preserved, X-Forwarded-For
// appended to (as HAProxy's forwardfor does), X-Forwarded-Proto and -Host
// set. The backend's address is filled in per attempt by RoundTrip.
func rewrite(pr *httputil.ProxyRequest) {
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = "backend.invalid"
	pr.Out.Host = pr.In.Host
	if prior, ok := pr.In.Header["X-Forwarded-For"]; ok {
		pr.Out.Header["X-Forwarded-For"] = prior
	}
	pr.SetXForwarded()
}

// RoundTrip sends req to the next backend, and to others after a failure
// that Config.Retries allows. It implements http.RoundTripper for the proxy.
func (b *Balancer) RoundTrip(req *http.Request) (*http.Response, error) {
	var guard *bodyGuard
	if req.Body != nil && req.Body != http.NoBody {
		guard = &bodyGuard{rc: req.Body}
		req.Body = guard
	}
	idempotent := guard == nil && (isIdempotentMethod(req.Method) || req.Header.Get("Idempotency-Key") != "")
	var tried []*backend
	for attempt := 0; ; attempt++ {
		be := b.snap.Load().pick(&b.rr, tried)
		if be == nil {
			if len(tried) == 0 {
				return nil, errNoBackends
			}
			return nil, fmt.Errorf("all %d backends tried", len(tried))
		}
		req.URL.Host = be.hostPort
		be.inflight.Add(1)
		be.requests.Add(1)
		resp, err := be.transport.RoundTrip(req)
		if err == nil {
			resp.Body = trackBody(resp.Body, be.done)
			return resp, nil
		}
		be.done()
		be.failures.Add(1)
		if req.Context().Err() != nil {
			return nil, err // the client went away: nothing to retry for
		}
		refused := isDialError(err)
		if refused {
			be.eject(b.cfg.EjectFor)
			b.logger.Warn("backend ejected", "addr", be.hostPort, "node", be.node, "error", err)
		}
		tried = append(tried, be)
		if attempt >= b.cfg.Retries || (guard != nil && guard.touched.Load()) || !(refused || idempotent) {
			return nil, err
		}
		b.logger.Debug("retrying on another backend", "failed", be.hostPort, "method", req.Method, "error", err)
	}
}

func isIdempotentMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// isDialError tells whether err happened before the request was sent.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func (b *Balancer) serveError(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusBadGateway
	msg := fmt.Sprintf("herd gateway: backend for service %q failed: %v\n", b.cfg.Service, err)
	if errors.Is(err, errNoBackends) {
		status = http.StatusServiceUnavailable
		msg = fmt.Sprintf("herd gateway: no backend available for service %q\n", b.cfg.Service)
	} else if r.Context().Err() != nil {
		return // client gone; nobody reads an answer
	}
	b.logger.Debug("request failed", "method", r.Method, "path", r.URL.Path, "status", status, "error", err)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg)
}

// bodyGuard lets a request body survive a failed attempt: the transport
// closes the body it was given, which must not close the client's. It
// records whether any byte was read, after which a retry is unsafe.
type bodyGuard struct {
	rc      io.ReadCloser
	touched atomic.Bool // the transport reads from its own goroutine
}

func (g *bodyGuard) Read(p []byte) (int, error) {
	g.touched.Store(true)
	return g.rc.Read(p)
}

// Close is a no-op: the server closes the client's body when the handler ends.
func (g *bodyGuard) Close() error { return nil }

// trackBody calls done once, when the response body is closed. Upgraded
// (101) responses keep their io.ReadWriteCloser for the proxy's tunnel.
func trackBody(body io.ReadCloser, done func()) io.ReadCloser {
	if rw, ok := body.(io.ReadWriteCloser); ok {
		return &trackedRWBody{trackedBody: trackedBody{ReadCloser: body, done: done}, w: rw}
	}
	return &trackedBody{ReadCloser: body, done: done}
}

type trackedBody struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (t *trackedBody) Close() error {
	err := t.ReadCloser.Close()
	t.once.Do(t.done)
	return err
}

type trackedRWBody struct {
	trackedBody
	w io.Writer
}

func (t *trackedRWBody) Write(p []byte) (int, error) { return t.w.Write(p) }
