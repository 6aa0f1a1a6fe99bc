package balancer

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// HTTP/2 to clients: golang.org/x/net/http2's server speaks the protocol
// (frames, HPACK, flow control, stream limits, GOAWAY; its mitigations of
// rapid-reset floods and of stream and header abuse), and each stream is a
// request that net/http/httputil's ReverseProxy relays through
// streamTransport (transport.go), which chooses and retries backends as the
// HTTP/1.1 relays do. The streams of one connection spread over the
// backends like separate requests. Backends are spoken to in HTTP/1.1, or
// HTTP/2 in clear for a service whose protocol is H2C (gRPC: trailers,
// streaming both ways, deadlines carried by the grpc-timeout field).
type h2Server struct {
	b     *Balancer
	srv   *http2.Server
	base  *http.Server // for GOAWAY on shutdown: ConfigureServer hooks its Shutdown
	proxy *httputil.ReverseProxy
}

type connKey struct{}

func (s *h2Server) init(b *Balancer) {
	s.b = b
	s.base = &http.Server{ErrorLog: log.New(io.Discard, "", 0)}
	s.srv = &http2.Server{
		MaxConcurrentStreams: b.cfg.MaxConcurrentStreams,
		IdleTimeout:          b.cfg.ClientIdleTimeout,
		ReadIdleTimeout:      30 * time.Second, // ping a quiet connection, close it if the ping goes unanswered
		PingTimeout:          10 * time.Second,
		CountError: func(errType string) {
			b.logger.Debug("HTTP/2 client error", "type", errType)
		},
	}
	_ = http2.ConfigureServer(s.base, s.srv)
	s.proxy = &httputil.ReverseProxy{
		Rewrite:        s.rewrite,
		Transport:      &streamTransport{b: b},
		ModifyResponse: s.modifyResponse,
		ErrorHandler:   s.errorHandler,
		BufferPool:     bufferPool{},
		ErrorLog:       log.New(io.Discard, "", 0),
	}
}

// serve serves an HTTP/2 client connection until it ends; the caller
// forgets cc then.
func (s *h2Server) serve(cc *clientConn, c net.Conn, p proto) {
	cc.proto = p
	ctx := context.WithValue(context.Background(), connKey{}, cc)
	s.srv.ServeConn(c, &http2.ServeConnOpts{Context: ctx, BaseConfig: s.base, Handler: s})
}

// serveH2C serves a plain connection whose client began with the HTTP/2
// preface (still in cc.br) as HTTP/2.
func (cc *clientConn) serveH2C() {
	_ = cc.c.SetDeadline(time.Time{})
	cc.b.m.conns[protoH2C].Inc()
	// The reader goes with the connection: the HTTP/2 server's frame
	// reader may still be in it after ServeConn returns, so forget must
	// not reset it or put it back in the pool.
	br := cc.br
	cc.br = nil
	cc.b.h2.serve(cc, &bufferedConn{Conn: cc.c, r: br}, protoH2C)
}

// bufferedConn reads a connection through a reader that may hold its first
// bytes.
type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// goAway tells every HTTP/2 client to open its next streams elsewhere
// (GOAWAY); their connections close once the streams in flight end.
func (s *h2Server) goAway() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the hooks start at once; nothing of the base server's own to wait for
	_ = s.base.Shutdown(ctx)
}

// ServeHTTP relays one stream.
func (s *h2Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b := s.b
	cc, _ := r.Context().Value(connKey{}).(*clientConn)
	st := &stream{proto: cc.proto, reqID: r.Header.Get("X-Request-Id")}
	st.x.started = time.Now()
	if st.reqID == "" {
		st.reqID = newRequestID()
	}
	defer s.record(st, cc, r)
	if b.cfg.RedirectHTTPS && r.TLS == nil && r.URL.Path != b.cfg.HealthPath {
		st.status = s.redirect(w, r)
		st.x.outcome = outcomeServed
		return
	}
	t, ok := b.route([]byte(r.Host), []byte(r.RequestURI))
	if !ok {
		o := outcomeNoRoute
		if b.routes.Load().empty() {
			o = outcomeNoBackend
		}
		s.answerError(w, st, o, nil)
		return
	}
	st.x.svc, st.x.strip = t.svc, t.strip
	// The HTTP/2 server gives every request a Body, even one whose stream
	// ended with its headers; a length of 0 is what says there is none
	// (ReverseProxy then sends none).
	st.x.replayable = r.ContentLength == 0 && (isIdempotent([]byte(r.Method)) || r.Header.Get("Idempotency-Key") != "")
	p := pinNone
	if b.cfg.CanaryPinning && cc.trusted {
		p = parsePin([]byte(r.Header.Get("X-Herd-Canary")))
	}
	st.x.chooseArm(p)
	defer func() {
		if p := recover(); p != nil { // ReverseProxy gives up on a body it could not copy whole
			st.x.outcome = outcomeCutShort
			if r.Context().Err() != nil {
				st.x.outcome = outcomeClientGone
			}
			panic(p)
		}
	}()
	s.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), streamKey{}, st)))
	if st.x.outcome == outcomeNone {
		st.x.outcome = outcomeServed
	}
}

// rewrite makes the request the backend gets: the path (stripped as the
// route says), Host kept, X-Forwarded-For appended to for a trusted proxy
// or replaced, X-Forwarded-Proto and -Host, X-Request-Id. ReverseProxy has
// removed the hop-by-hop fields (but TE: trailers) and the client's
// X-Forwarded-* ones.
func (s *h2Server) rewrite(pr *httputil.ProxyRequest) {
	st := pr.In.Context().Value(streamKey{}).(*stream)
	cc, _ := pr.In.Context().Value(connKey{}).(*clientConn)
	out := pr.Out
	out.Host = pr.In.Host
	if st.x.strip > 0 {
		raw := string(appendStripped(nil, []byte(pr.In.URL.EscapedPath()), st.x.strip))
		out.URL.Path, out.URL.RawPath = raw, ""
		if p, err := url.PathUnescape(raw); err == nil && p != raw {
			out.URL.Path, out.URL.RawPath = p, raw
		}
	}
	client := string(cc.remoteIP)
	if prior := pr.In.Header.Values("X-Forwarded-For"); cc.trusted && len(prior) > 0 {
		client = strings.Join(prior, ", ") + ", " + client
	}
	out.Header.Set("X-Forwarded-For", client)
	if pr.In.TLS != nil {
		out.Header.Set("X-Forwarded-Proto", "https")
	} else {
		out.Header.Set("X-Forwarded-Proto", "http")
	}
	out.Header.Set("X-Forwarded-Host", pr.In.Host)
	out.Header.Set("X-Request-Id", st.reqID)
	out.Header.Del("Expect") // the body goes with the head; an interim 100 is not waited for
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = nil // none added
	}
}

func (s *h2Server) modifyResponse(resp *http.Response) error {
	st := resp.Request.Context().Value(streamKey{}).(*stream)
	st.status = resp.StatusCode
	if s.b.hsts != nil && resp.Request.TLS != nil && resp.Header.Get("Strict-Transport-Security") == "" {
		resp.Header.Set("Strict-Transport-Security", "max-age="+strconv.FormatInt(int64(s.b.cfg.HSTS/time.Second), 10))
	}
	return nil
}

// errorHandler answers a stream that could not be relayed: no backend, or
// the last one tried failed.
func (s *h2Server) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	st := r.Context().Value(streamKey{}).(*stream)
	x := &st.x
	var o outcome
	switch {
	case r.Context().Err() != nil:
		st.status, x.outcome = statusClientGone, outcomeClientGone
		return
	case errors.Is(err, errQueueTimeout):
		o = outcomeBusy
	case errors.Is(err, errNoBackends) && x.nTried == 0:
		o = outcomeNoBackend
	case isTimeout(err):
		o = outcomeTimedOut
	default:
		o = outcomeBackendFailed
	}
	if deadlinePassed(r, x.started) {
		// A gRPC backend ends a call at its deadline with a stream reset;
		// the client's own deadline fires at the same moment. Whichever
		// the client sees first, the truth is the same: the deadline.
		answerDeadlineExceeded(w, st)
		return
	}
	if o != outcomeNoBackend {
		backend := "none"
		if x.last != nil {
			backend = x.last.hostPort
		}
		s.b.logger.Warn("request failed", "status", statusOf(o), "outcome", o.String(), "service", x.svc.name,
			"backend", backend, "attempts", x.nTried, "request_id", st.reqID, "proto", st.proto.String(), "error", err)
	}
	s.answerError(w, st, o, err)
}

// deadlinePassed reports whether r is a gRPC call whose grpc-timeout has run
// out since it started.
func deadlinePassed(r *http.Request, started time.Time) bool {
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
		return false
	}
	d, ok := parseGRPCTimeout(r.Header.Get("Grpc-Timeout"))
	return ok && time.Since(started) >= d
}

// parseGRPCTimeout reads a grpc-timeout field: at most 8 digits and a unit
// (H, M, S, m, u, n), as the gRPC over HTTP/2 protocol defines it.
func parseGRPCTimeout(s string) (time.Duration, bool) {
	if len(s) < 2 || len(s) > 9 {
		return 0, false
	}
	n, err := strconv.ParseInt(s[:len(s)-1], 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	unit := map[byte]time.Duration{'H': time.Hour, 'M': time.Minute, 'S': time.Second, 'm': time.Millisecond,
		'u': time.Microsecond, 'n': time.Nanosecond}[s[len(s)-1]]
	if unit == 0 {
		return 0, false
	}
	return time.Duration(n) * unit, true
}

// answerDeadlineExceeded answers a gRPC call whose deadline passed with a
// trailers-only response: grpc-status 4, DEADLINE_EXCEEDED.
func answerDeadlineExceeded(w http.ResponseWriter, st *stream) {
	st.x.outcome, st.status = outcomeTimedOut, http.StatusOK
	h := w.Header()
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", "4")
	h.Set("Grpc-Message", "deadline exceeded")
	h.Set("X-Request-Id", st.reqID)
	w.WriteHeader(http.StatusOK)
}

// answerError writes the gateway's own short answer for outcome o.
func (s *h2Server) answerError(w http.ResponseWriter, st *stream, o outcome, _ error) {
	st.x.outcome, st.status = o, statusOf(o)
	msg := errorText(o, st.x.svc)
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Request-Id", st.reqID)
	h.Set("Content-Length", strconv.Itoa(len(msg)+len("\nrequest id: \n")+len(st.reqID)))
	w.WriteHeader(st.status)
	_, _ = io.WriteString(w, msg+"\nrequest id: "+st.reqID+"\n")
}

// redirect answers 308 to the same URL over https.
func (s *h2Server) redirect(w http.ResponseWriter, r *http.Request) int {
	w.Header().Set("Location", httpsURL(r.Host, r.RequestURI, s.b.cfg.HTTPSPort))
	w.WriteHeader(http.StatusPermanentRedirect)
	return http.StatusPermanentRedirect
}

// record counts an ended stream and logs it when the access log takes it.
func (s *h2Server) record(st *stream, cc *clientConn, r *http.Request) {
	st.x.endAttempt()
	if r.Context().Err() != nil && st.x.outcome == outcomeServed && st.status == 0 {
		st.x.outcome, st.status = outcomeClientGone, statusClientGone
	}
	e := ended{svc: st.x.svc, h: st.x.last, proto: st.proto, status: st.status, outcome: st.x.outcome,
		took: time.Since(st.x.started), attempts: st.x.nTried}
	if s.b.m.accessEvery > 0 {
		e.method, e.path, e.reqID, e.client, e.tls = []byte(r.Method), []byte(r.RequestURI), []byte(st.reqID), cc.remoteIP, cc.tlsSummary
	}
	s.b.m.observe(&e)
}

// bufferPool is ReverseProxy's copy buffers.
type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *copyBuffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { copyBuffers.Put(&b) }
