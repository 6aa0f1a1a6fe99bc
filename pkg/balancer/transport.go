package balancer

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// Protocol is how a service's backends are spoken to.
type Protocol string

const (
	// HTTP1 is HTTP/1.1, each request on a keep-alive connection of its
	// own: the relays' protocol. The default.
	HTTP1 Protocol = "http"
	// H2C is HTTP/2 in clear (prior knowledge), many streams on a
	// connection. Requests reach such a service from HTTP/2 clients
	// (h2.go); its active health check is GET HealthPath over h2c.
	H2C Protocol = "h2c"
	// GRPC is gRPC: carried as H2C, health checked with gRPC's standard
	// health protocol (grpc.health.v1.Health/Check of the server as a
	// whole, SERVING passes) instead of GET HealthPath.
	GRPC Protocol = "grpc"
)

// ParseProtocol reads a backend protocol: "http" (or ""), "h2c" or
// "grpc".
func ParseProtocol(s string) (Protocol, error) {
	switch s {
	case "", "http", "http1", "http/1.1":
		return HTTP1, nil
	case "h2c":
		return H2C, nil
	case "grpc":
		return GRPC, nil
	}
	return "", errors.New("protocol " + s + ": want http, h2c or grpc")
}

// http2Only reports whether backends of protocol p speak HTTP/2 only.
func (p Protocol) http2Only() bool { return p == H2C || p == GRPC }

// streamTransport is the http.RoundTripper of the HTTP/2 side (h2.go): it
// sends a stream's request to a backend of the stream's service, chosen
// and retried as the relays do (pick, pickWaiting, failure rules), over the
// backend's own keep-alive pool for HTTP/1.1 backends, or HTTP/2 streams
// for h2c ones.
type streamTransport struct{ b *Balancer }

// stream is one HTTP/2 stream's exchange: the same state the relays keep
// for a request, for the same choices.
type stream struct {
	x     exchange
	wait  *queueWait
	proto proto
	reqID string
	// status the client was answered (0: nothing written yet).
	status int
}

type streamKey struct{}

// bodyNotRead reports whether nothing of req's body has been read: a
// bodiless request, or one whose body the backend never asked for.
func bodyNotRead(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody
}

func (t *streamTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	st, _ := req.Context().Value(streamKey{}).(*stream)
	if st == nil {
		return nil, errors.New("balancer: a request without its stream")
	}
	x := &st.x
	for {
		h, err := x.pickWaiting(t.b, &st.wait)
		if err != nil {
			if x.nTried > 0 && errors.Is(err, errNoBackends) && x.fail.err != nil {
				err = x.fail.err // every backend was tried: the last failure says why
			}
			return nil, err
		}
		x.begin(h)
		resp, reached, err := t.roundTrip(h, x.svc, req)
		if err == nil && resp.StatusCode >= 500 && x.rejects(resp.StatusCode) {
			x.answered(resp.StatusCode)
			discard(resp)
			x.failAttempt(failure{err: &armAnswer{status: resp.StatusCode, arm: h.arm}, reach: reachedMaybe, answered: true})
			x.svc.retries.Add(1)
			t.b.logger.Debug("answer of a canary arm discarded for the stable arm's", "status", resp.StatusCode,
				"arm", h.arm.String(), "backend", h.hostPort, "request_id", st.reqID)
			continue
		}
		if err == nil {
			x.answered(resp.StatusCode)
			resp.Body = &releasingBody{ReadCloser: resp.Body, x: x}
			return resp, nil
		}
		h.failures.Add(1)
		r := reachedMaybe
		if !reached {
			r = reachedNothing
			x.svc.eject(h)
			t.b.logger.Warn("backend ejected: connect failed", "service", x.svc.name, "addr", h.hostPort, "node", h.node, "error", err)
		}
		x.failAttempt(failure{err: err, reach: r})
		if req.Context().Err() != nil || !x.retry(t.b.cfg.Retries) {
			return nil, err
		}
		x.svc.retries.Add(1)
		t.b.logger.Debug("retrying on another backend", "failed", h.hostPort, "method", req.Method, "request_id", st.reqID, "error", err)
	}
}

// discard drops an answer that will not be relayed: its connection goes
// back to its pool only when the body is all buffered already (read
// without waiting); else closing the body closes the connection (HTTP/1.1)
// or resets the stream (h2c).
func discard(resp *http.Response) {
	n := resp.ContentLength
	if resp.Request != nil && resp.Request.Method == http.MethodHead {
		n = 0
	}
	if pb, ok := resp.Body.(*pooledBody); ok && n >= 0 && int64(pb.bc.br.Buffered()) == n {
		_, _ = io.Copy(io.Discard, resp.Body)
	}
	_ = resp.Body.Close()
}

// releasingBody ends the attempt (the backend's request in flight) when
// the answer's body is closed.
type releasingBody struct {
	io.ReadCloser
	x    *exchange
	once sync.Once
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.x.endAttempt)
	return err
}

// roundTrip sends req to h. reached is false when the request did not
// reach the backend (the connection failed): it may go anywhere else.
func (t *streamTransport) roundTrip(h *host, svc *Service, req *http.Request) (_ *http.Response, reached bool, _ error) {
	out := req.Clone(req.Context())
	out.URL.Scheme, out.URL.Host = "http", h.hostPort
	if svc.Protocol().http2Only() {
		tr := svc.h2cTransport()
		if tr == nil {
			return nil, false, errServiceClosed
		}
		resp, err := tr.RoundTrip(out)
		return resp, err == nil || !isDialError(err), err
	}
	return t.http1(h, out)
}

// http1 sends req on one of h's keep-alive connections, or a new one, and
// reads the answer's head; its body is read from the connection, which goes
// back to the pool once the body is read whole.
func (t *streamTransport) http1(h *host, req *http.Request) (*http.Response, bool, error) {
	bc := h.pool.get(time.Now())
	for {
		fresh := bc == nil
		if fresh {
			var err error
			if bc, err = h.dial(); err != nil {
				return nil, false, err
			}
		}
		resp, err := t.exchange(bc, req)
		if err == nil {
			return resp, true, nil
		}
		bc.close()
		// A reused connection the backend had closed: nothing was processed
		// (nothing of the body was read), the same backend on a new one.
		if !fresh && connDropped(err) && bodyNotRead(req) {
			bc = nil
			continue
		}
		return nil, true, err
	}
}

var writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4096) }}

// exchange writes req on bc and reads the answer's head.
func (t *streamTransport) exchange(bc *bconn, req *http.Request) (*http.Response, error) {
	bw := writerPool.Get().(*bufio.Writer)
	bw.Reset(bc.c)
	err := req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	bw.Reset(nil)
	writerPool.Put(bw)
	if err != nil {
		return nil, err
	}
	if d := t.b.cfg.ResponseHeaderTimeout; d > 0 {
		_ = bc.c.SetReadDeadline(time.Now().Add(d))
	}
	resp, err := http.ReadResponse(bc.br, req)
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
		resp, err = http.ReadResponse(bc.br, req) // an interim answer (103 Early Hints): the final one follows
	}
	_ = bc.c.SetReadDeadline(time.Time{})
	if err != nil {
		return nil, err
	}
	resp.Body = &pooledBody{ReadCloser: resp.Body, bc: bc, keep: !resp.Close}
	return resp, nil
}

// pooledBody gives its connection back to its backend's pool when the body
// has been read whole and the backend keeps the connection open; else it
// closes it.
type pooledBody struct {
	io.ReadCloser
	bc   *bconn
	keep bool
	eof  bool
}

func (b *pooledBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *pooledBody) Close() error {
	if b.bc == nil {
		return nil
	}
	err := b.ReadCloser.Close()
	if b.eof && b.keep && b.bc.br.Buffered() == 0 {
		b.bc.h.pool.put(b.bc, time.Now())
	} else {
		b.bc.close()
	}
	b.bc = nil
	return err
}

// isDialError reports whether err is a failure to connect: nothing was
// sent.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

var errServiceClosed = errors.New("the service is closed")

// h2cTransport is the service's HTTP/2 client to its backends, made on
// first use (nil once the service's idle connections were closed for good):
// one connection per backend, streams multiplexed on it.
func (s *Service) h2cTransport() *http2.Transport {
	s.h2cOnce.Do(func() {
		d := net.Dialer{Timeout: s.b.cfg.DialTimeout, KeepAlive: 30 * time.Second}
		s.h2c = &http2.Transport{
			AllowHTTP: true,
			DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
				return d.DialContext(ctx, network, addr)
			},
			ReadIdleTimeout: 30 * time.Second, // ping a connection quiet this long
			PingTimeout:     5 * time.Second,
		}
	})
	return s.h2c
}

// Protocol is how the service's backends are spoken to (HTTP1 until SetProtocol).
func (s *Service) Protocol() Protocol {
	if p := s.proto.Load(); p != nil {
		return *p
	}
	return HTTP1
}

// SetProtocol sets how the service's backends are spoken to (its agents'
// --protocol).
func (s *Service) SetProtocol(p Protocol) {
	if p == "" {
		p = HTTP1
	}
	if s.Protocol() != p {
		s.proto.Store(&p)
	}
}
