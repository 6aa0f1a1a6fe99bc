package balancer

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// clientConn is one client connection, the exchange in progress on it, and
// the buffers it reuses from one exchange to the next. Either relay drives
// it: a goroutine (relay.go) or an event loop (loop_linux.go), which owns it
// then (looped).
type clientConn struct {
	b        *Balancer
	c        net.Conn
	br       *bufio.Reader
	remoteIP []byte
	trusted  bool // the client is a trusted proxy: its X-Forwarded-For is kept
	// proto is how the client speaks (plain HTTP/1.x, or over TLS);
	// tlsSummary the TLS version and ALPN, for the access log.
	proto      proto
	tlsSummary string
	// idleSince is when it began waiting for a request with nothing of it
	// received (unix nanoseconds; 0: busy): Shutdown may close it.
	idleSince atomic.Int64
	served    bool        // it sent a request: a timeout before the next one closes it without a 408
	looped    atomic.Bool // an event loop owns it: Shutdown leaves it to the loop
	deadline  readDeadline

	x exchange
	// The buffers of an exchange, taken from a pool when a request's bytes
	// arrive and given back when the connection is idle again: an idle
	// keep-alive connection holds neither them nor a read buffer.
	*scratch
	// Set once the request has waited for a backend with room.
	wait *queueWait
}

// scratch is what a client connection needs only while it has an exchange
// in progress (or a request head coming).
type scratch struct {
	req   head
	resp  head
	out   []byte // what goes to the backend, or to the client
	reqID []byte
	// For the access log: copies of the request's method and target.
	method, path []byte
}

var scratchPool = sync.Pool{New: func() any { return &scratch{out: make([]byte, 0, 1024)} }}

// busy gives cc its read buffer and its exchange buffers, if it does not
// hold them: bytes of a request have come.
func (cc *clientConn) busy() {
	if cc.br == nil {
		cc.br = getReader(cc.c)
	}
	if cc.scratch == nil {
		cc.scratch = scratchPool.Get().(*scratch)
	}
}

// rest gives back cc's buffers when nothing of a next request is buffered:
// the connection is idle.
func (cc *clientConn) rest() {
	if cc.br != nil && cc.br.Buffered() == 0 {
		putReader(cc.br)
		cc.br = nil
	}
	if cc.br == nil && cc.scratch != nil {
		s := cc.scratch
		cc.scratch = nil
		if cap(s.out) > 64<<10 {
			s.out = make([]byte, 0, 1024) // a large error page or head is not kept
		}
		s.out, s.reqID = s.out[:0], s.reqID[:0]
		s.req.reset()
		s.resp.reset()
		scratchPool.Put(s)
	}
}

func (b *Balancer) newClientConn(c net.Conn) *clientConn {
	cc := &clientConn{b: b, c: c}
	var addr netip.Addr
	if tcp, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		addr = tcp.AddrPort().Addr().Unmap()
		cc.remoteIP = []byte(addr.String())
	} else {
		cc.remoteIP = []byte(c.RemoteAddr().String())
	}
	cc.trusted = addr.IsValid() && b.cfg.trusted(addr)
	return cc
}

// readDeadline sets a connection's read deadline at most about once a
// second on the fast path: a deadline between timeout-slack and timeout
// from now is left as it is (so a timeout fires up to slack early: a
// second, or a tenth of a shorter timeout), and one no longer wanted stays
// until a read that could outlast it.
type readDeadline struct{ at time.Time }

func (d *readDeadline) extend(c net.Conn, timeout time.Duration) {
	if timeout <= 0 {
		d.clear(c)
		return
	}
	now := time.Now()
	slack := min(time.Second, timeout/10)
	if left := d.at.Sub(now); d.at.IsZero() || left < timeout-slack || left > timeout {
		d.at = now.Add(timeout)
		_ = c.SetReadDeadline(d.at)
	}
}

// set sets the deadline timeout from now, exactly.
func (d *readDeadline) set(c net.Conn, timeout time.Duration) {
	d.at = time.Now().Add(timeout)
	_ = c.SetReadDeadline(d.at)
}

func (d *readDeadline) clear(c net.Conn) {
	if !d.at.IsZero() {
		d.at = time.Time{}
		_ = c.SetReadDeadline(time.Time{})
	}
}

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, maxHead) }}

func getReader(r io.Reader) *bufio.Reader {
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func putReader(br *bufio.Reader) {
	br.Reset(nil)
	readerPool.Put(br)
}

// prepare starts the exchange of the request head in cc.req: it builds the
// request to send in cc.out, with the body when it is all buffered.
func (cc *clientConn) prepare() {
	b, req, x := cc.b, &cc.req, &cc.x
	*x = exchange{started: time.Now(), state: stateConnecting}
	cc.served = true
	if t, ok := b.route(req.hostValue, req.path); ok {
		x.svc, x.strip = t.svc, t.strip
	}
	cc.requestID()
	if b.m.accessEvery > 0 { // the head's bytes do not outlive the body
		cc.method = append(cc.method[:0], req.line[0]...)
		cc.path = append(cc.path[:0], req.line[1]...)
	}
	cc.out = cc.appendRequestHead(cc.out[:0])
	// A body that is already buffered goes out in the same write as the head.
	rest := req.contentLength
	if req.chunked || (rest > 0 && int64(cc.br.Buffered()-req.size) < rest) {
		_, _ = cc.br.Discard(req.size)
	} else {
		buf, _ := cc.br.Peek(req.size + int(max(rest, 0)))
		cc.out = append(cc.out, buf[req.size:]...)
		_, _ = cc.br.Discard(len(buf))
		x.bodyInOut = true
	}
	x.replayable = x.bodyInOut && (isIdempotent(req.line[0]) || req.idempotent)
	x.closeAfter = req.close
	if b.cfg.RedirectHTTPS && cc.proto == protoHTTP && !isPath(req.path, b.cfg.HealthPath) {
		x.closeAfter = x.closeAfter || !x.bodyInOut // the body, if it was not all read, cannot be skipped
		cc.redirectHTTPS()
		return
	}
	if x.svc == nil { // no route: the body, if it was not all read, cannot be skipped
		x.closeAfter = x.closeAfter || !x.bodyInOut
		if b.routes.Load().empty() { // nothing to route to yet
			cc.answerError(outcomeNoBackend, nil)
			return
		}
		cc.answerError(outcomeNoRoute, nil)
		return
	}
	if x.svc.Protocol().http2Only() {
		x.closeAfter = x.closeAfter || !x.bodyInOut
		cc.answerError(outcomeHTTP2Only, nil)
		return
	}
	p := pinNone
	if b.cfg.CanaryPinning && cc.trusted {
		p = req.canaryPin
	}
	x.chooseArm(p)
}

// keepAlive reports whether the connection may carry another exchange
// after the one that just ended: whether its answer said so. (One that did
// not say Connection: close stays open even if the balancer began closing
// since: a client may already be sending its next request on it.)
func (cc *clientConn) keepAlive() bool { return !cc.x.closeAfter }

// finish ends the exchange with o: the client was answered status (or is
// gone), the backend's request in flight is released, and it is counted.
func (cc *clientConn) finish(o outcome, status int) {
	x := &cc.x
	x.endAttempt()
	x.outcome, x.status, x.state = o, status, stateDone
	x.closeAfter = x.closeAfter || o.closes()
	cc.b.m.record(cc)
}

// settle decides what follows a failed attempt: the same backend on a new
// connection (the pooled one was stale), another backend while the request
// may go again, or an error answer.
func (cc *clientConn) settle() {
	b, x := cc.b, &cc.x
	switch {
	case x.fail.stale:
		x.fresh, x.state = true, stateConnecting
	case x.retry(b.cfg.Retries):
		x.svc.retries.Add(1)
		b.logger.Debug("retrying on another backend", "failed", x.last.hostPort, "method", string(cc.req.line[0]),
			"request_id", string(cc.reqID), "error", x.fail.err)
		x.state = stateConnecting
	default:
		cc.answerError(x.errorOutcome(), x.fail.err)
	}
}

// choose picks the backend of the next attempt without waiting and begins
// the attempt on it; when there is none, it answers the error. It reports
// whether the attempt began.
func (cc *clientConn) choose() bool {
	h, err := cc.x.pick()
	if err != nil {
		cc.noBackend(err)
		return false
	}
	cc.x.begin(h)
	return true
}

// pick returns a backend for the next attempt with its request in flight
// counted, without waiting: errNoBackends, or errFull when those that would
// do are at their cap.
func (x *exchange) pick() (*host, error) {
	s, arm := x.svc, x.attemptArm()
	for {
		var h *host
		var full bool
		if arm == ArmStable { // as before arms: one call to the selector
			h, full = s.sel[ArmStable].Select(s.reg.set.Load().arms[ArmStable], x.tried[:x.nTried], time.Now().UnixNano())
		} else {
			h, full = s.selectIn(arm, x.measured, x.tried[:x.nTried], time.Now().UnixNano())
		}
		switch {
		case h == nil && full:
			return nil, errFull
		case h == nil:
			return nil, errNoBackends
		case h.acquire():
			return h, nil
		}
		// another request took its last slot: pick again
	}
}

// errFull: every backend that would do has its cap of requests in flight.
var errFull = errors.New("every backend is at its cap of requests in flight")

// noBackend answers a request no backend could be chosen for.
func (cc *clientConn) noBackend(err error) {
	switch {
	case errors.Is(err, errQueueTimeout):
		cc.answerError(outcomeBusy, err)
	case cc.x.nTried > 0: // every backend was tried
		cc.answerError(outcomeBackendFailed, cc.x.fail.err)
	default:
		cc.answerError(outcomeNoBackend, err)
	}
}

// connectFailed ejects the attempt's backend, which refused the connection
// or did not take it in time: nothing of the request reached it.
func (cc *clientConn) connectFailed(err error) {
	b, h := cc.b, cc.x.h
	h.failures.Add(1)
	cc.x.svc.eject(h)
	b.logger.Warn("backend ejected: connect failed", "service", cc.x.svc.name, "addr", h.hostPort, "node", h.node, "error", err)
	cc.x.failAttempt(failure{err: err, reach: reachedNothing})
}

// backendFailed ends an attempt whose backend failed after the connection
// was made, on bc: a reset or an empty answer on a new connection ejects it.
func (cc *clientConn) backendFailed(bc *bconn, err error, r reach) {
	b, h := cc.b, cc.x.h
	h.failures.Add(1)
	if !bc.reused && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
		cc.x.svc.eject(h)
		b.logger.Warn("backend ejected: connection reset or closed", "service", cc.x.svc.name, "addr", h.hostPort,
			"node", h.node, "error", err)
	}
	cc.x.failAttempt(failure{err: err, reach: r})
}

// answerError answers the client with the error of outcome o and ends the
// exchange. The client gets a short generic text and the request id; the
// detail (err, the backend) goes to the log with the same id.
func (cc *clientConn) answerError(o outcome, err error) {
	b, x := cc.b, &cc.x
	status := statusOf(o)
	if o != outcomeNoBackend && o != outcomeNoRoute && o != outcomeHTTP2Only {
		backend := "none"
		if x.last != nil {
			backend = x.last.hostPort
		}
		b.logger.Warn("request failed", "status", status, "outcome", o.String(), "service", x.svc.name,
			"backend", backend, "attempts", x.nTried, "request_id", string(cc.reqID), "error", err)
	}
	cc.writeError(status, errorText(o, x.svc), true)
	cc.finish(o, status)
}

// errorText is the short text the client gets with the gateway's own
// answer for outcome o, on a request for svc (nil: no route took it).
func errorText(o outcome, svc *Service) string {
	switch {
	case o == outcomeNoRoute:
		return "herd gateway: no route for this host and path"
	case svc == nil:
		return "herd gateway: no backend available: no service is announced"
	}
	service := strconv.Quote(svc.name)
	switch o {
	case outcomeNoBackend:
		return "herd gateway: no backend available for service " + service
	case outcomeBusy:
		return "herd gateway: every backend of service " + service + " is busy"
	case outcomeTimedOut:
		return "herd gateway: the backend of service " + service + " timed out"
	case outcomeHTTP2Only:
		return "herd gateway: service " + service + " speaks HTTP/2 only (h2c, gRPC): send the request over HTTP/2"
	}
	return "herd gateway: the backend of service " + service + " failed"
}

// writeError answers the client with a short plain-text error: msg, then
// the request id when inExchange. The connection closes after it unless the
// request was read whole and may be followed by another.
func (cc *clientConn) writeError(code int, msg string, inExchange bool) {
	closing := !inExchange || cc.x.closeAfter || cc.b.closing.Load()
	if closing && inExchange {
		cc.x.closeAfter = true
	}
	out := cc.out[:0]
	out = append(out, "HTTP/1.1 "...)
	out = strconv.AppendInt(out, int64(code), 10)
	out = append(out, ' ')
	out = append(out, statusText(code)...)
	out = append(out, "\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nContent-Length: "...)
	n := len(msg) + 1
	withID := inExchange && len(cc.reqID) > 0
	if withID {
		n += len("request id: \n") + len(cc.reqID)
	}
	out = strconv.AppendInt(out, int64(n), 10)
	if withID {
		out = append(out, "\r\nX-Request-Id: "...)
		out = append(out, cc.reqID...)
	}
	if closing {
		out = append(out, "\r\nConnection: close"...)
	}
	out = append(out, "\r\n\r\n"...)
	out = append(out, msg...)
	out = append(out, '\n')
	if withID {
		out = append(out, "request id: "...)
		out = append(out, cc.reqID...)
		out = append(out, '\n')
	}
	cc.out = out
	_, _ = cc.c.Write(out)
}

// redirectHTTPS answers the request with 308 to the same URL over https
// (Config.RedirectHTTPS).
func (cc *clientConn) redirectHTTPS() {
	closing := cc.x.closeAfter || cc.b.closing.Load()
	cc.x.closeAfter = closing
	out := append(cc.out[:0], "HTTP/1.1 308 Permanent Redirect\r\nLocation: "...)
	out = append(out, httpsURL(string(cc.req.hostValue), string(cc.req.path), cc.b.cfg.HTTPSPort)...)
	out = append(out, "\r\nContent-Length: 0\r\n"...)
	if closing {
		out = append(out, "Connection: close\r\n"...)
	}
	out = append(out, crlf...)
	cc.out = out
	_, _ = cc.c.Write(out)
	cc.finish(outcomeServed, http.StatusPermanentRedirect)
}

// httpsURL is the https URL of a request for host (perhaps with a port) and
// target: the host without its port, and port unless it is 443.
func httpsURL(host, target string, port int) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
		if strings.Contains(h, ":") {
			host = "[" + h + "]"
		}
	}
	if port != 443 {
		host += ":" + strconv.Itoa(port)
	}
	if target == "" || target[0] != '/' {
		target = "/"
	}
	return "https://" + host + target
}

// isPath reports whether target (a path, perhaps with a query) is path.
func isPath(target []byte, path string) bool {
	if i := bytes.IndexByte(target, '?'); i >= 0 {
		target = target[:i]
	}
	return string(target) == path
}

// badHead answers a request head that failed to parse, or did not come in
// time. Nothing is answered to a read error, or to a keep-alive connection
// that timed out before the first byte of its next request (partial).
func (cc *clientConn) badHead(err error, partial bool) {
	cc.busy()
	var he *httpError
	switch {
	case errors.As(err, &he):
		cc.writeError(he.status, he.msg, false)
	case isTimeout(err) && (partial || !cc.served):
		cc.writeError(408, "herd gateway: the request did not arrive in time", false)
	}
}

// requestID keeps the client's X-Request-Id or makes one.
func (cc *clientConn) requestID() {
	if len(cc.req.requestID) > 0 {
		cc.reqID = append(cc.reqID[:0], cc.req.requestID...)
		return
	}
	cc.reqID = append(cc.reqID[:0], idPrefix...)
	cc.reqID = strconv.AppendUint(cc.reqID, idCounter.Add(1), 36)
}

// newRequestID is a new request id, as a string.
func newRequestID() string { return idPrefix + strconv.FormatUint(idCounter.Add(1), 36) }

// Request ids are a random prefix for the process and a counter: unique
// across gateways and restarts, and cheap.
var (
	idPrefix  = newIDPrefix()
	idCounter atomic.Uint64
)

func newIDPrefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:]) + "-"
}

func statusText(code int) string {
	switch code {
	case 400:
		return "Bad Request"
	case 408:
		return "Request Timeout"
	case 431:
		return "Request Header Fields Too Large"
	case 501:
		return "Not Implemented"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Gateway Timeout"
	case 505:
		return "HTTP Version Not Supported"
	}
	return "Error"
}

func isIdempotent(method []byte) bool {
	switch string(method) {
	case "GET", "HEAD", "OPTIONS":
		return true
	}
	return false
}

// connDropped: the peer closed or reset the connection.
func connDropped(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
