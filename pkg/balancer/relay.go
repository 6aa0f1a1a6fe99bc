package balancer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Serve accepts client connections on ln and relays their requests until
// Shutdown or Close, or until ln fails. One goroutine serves each client
// connection: it reads a request head, picks a backend, relays the request
// and then the response, and starts over (keep-alive).
func (b *Balancer) Serve(ln net.Listener) error {
	b.srvMu.Lock()
	if b.shutting.Load() {
		b.srvMu.Unlock()
		return ErrServerClosed
	}
	b.listeners[ln] = struct{}{}
	b.srvMu.Unlock()
	defer func() {
		b.srvMu.Lock()
		delete(b.listeners, ln)
		b.srvMu.Unlock()
	}()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if b.shutting.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				b.logger.Warn("accept failed; retrying", "error", err, "in", delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		cc := b.newClientConn(newSock(c))
		b.srvMu.Lock()
		if b.shutting.Load() {
			b.srvMu.Unlock()
			c.Close()
			return ErrServerClosed
		}
		b.conns[cc] = struct{}{}
		b.srvWG.Add(1)
		b.srvMu.Unlock()
		if l := b.eventLoop(); l != nil && l.accept(cc, c) {
			continue
		}
		go cc.serve()
	}
}

var errNoBackends = errors.New("no backend available")

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("balancer: server closed")

// Shutdown stops accepting, closes idle client connections, and waits until
// the requests in flight have been answered (each connection is closed
// after its answer) or ctx ends, when the remaining connections are closed.
func (b *Balancer) Shutdown(ctx context.Context) error {
	b.srvMu.Lock()
	b.shutting.Store(true)
	for ln := range b.listeners {
		ln.Close()
	}
	b.srvMu.Unlock()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		b.srvMu.Lock()
		n := len(b.conns)
		for cc := range b.conns {
			if cc.idle.Load() && !cc.looped.Load() {
				cc.c.Close()
			}
		}
		b.srvMu.Unlock()
		if n == 0 {
			b.stopLoops()
			return nil
		}
		b.eachLoop((*loop).shutdown)
		select {
		case <-ctx.Done():
			b.eachLoop((*loop).closeAll)
			b.srvMu.Lock()
			for cc := range b.conns {
				if !cc.looped.Load() {
					cc.c.Close()
				}
			}
			b.srvMu.Unlock()
			b.srvWG.Wait()
			b.stopLoops()
			return ctx.Err()
		case <-tick.C:
		}
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

// clientConn is one client connection and the buffers it reuses.
type clientConn struct {
	b        *Balancer
	c        net.Conn
	br       *bufio.Reader
	remoteIP []byte
	idle     atomic.Bool // waiting for a request: Shutdown may close it
	out      []byte
	req      head
	resp     head
	reqID    []byte
	// For the access log: copies of the request's method and target.
	method, path []byte
	deadline     readDeadline
	// Waiting for a backend with room (Config.BackendMaxConns).
	wake       chan struct{}
	queueTimer *time.Timer

	// While the event loop owns it (loop_linux.go).
	looped atomic.Bool // Shutdown leaves it to the loop
	phase  uint8
	due    int64      // unix nanoseconds the current phase times out; 0: never
	lst    relayState // the request in flight
	lbc    *bconn     // its backend connection
}

// readDeadline sets a connection's read deadline at most about once a
// second on the fast path: a deadline set less than a second ago is left as
// it is (so a timeout fires up to a second early), and one no longer wanted
// stays until a read that could outlast it.
type readDeadline struct{ at time.Time }

func (d *readDeadline) extend(c net.Conn, timeout time.Duration) {
	if timeout <= 0 {
		d.clear(c)
		return
	}
	now := time.Now()
	if d.at.IsZero() || d.at.Sub(now) < timeout-time.Second {
		d.at = now.Add(timeout)
		_ = c.SetReadDeadline(d.at)
	}
}

func (d *readDeadline) clear(c net.Conn) {
	if !d.at.IsZero() {
		d.at = time.Time{}
		_ = c.SetReadDeadline(time.Time{})
	}
}

func (b *Balancer) newClientConn(c net.Conn) *clientConn {
	cc := &clientConn{b: b, c: c, out: make([]byte, 0, 1024)}
	if tcp, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		cc.remoteIP = []byte(tcp.AddrPort().Addr().Unmap().String())
	} else {
		cc.remoteIP = []byte(c.RemoteAddr().String())
	}
	return cc
}

func (cc *clientConn) serve() {
	cc.br = getReader(cc.c)
	defer cc.finish()
	for {
		cc.idle.Store(true)
		if cc.b.shutting.Load() {
			return
		}
		cc.deadline.extend(cc.c, cc.b.cfg.ClientIdleTimeout)
		err := readHead(cc.br, &cc.req, true)
		cc.idle.Store(false)
		if err != nil {
			cc.badHead(err)
			return
		}
		if !cc.relay() {
			return
		}
	}
}

// badHead answers a request head that failed to parse (a read error is
// not answered).
func (cc *clientConn) badHead(err error) {
	var he *httpError
	if errors.As(err, &he) {
		cc.writeError(he.status, he.msg, nil)
	}
}

// finish closes the connection and forgets it.
func (cc *clientConn) finish() {
	b := cc.b
	cc.c.Close()
	putReader(cc.br)
	b.srvMu.Lock()
	delete(b.conns, cc)
	b.srvMu.Unlock()
	b.srvWG.Done()
}

// relayState is what one request's relay needs beyond the heads.
type relayState struct {
	started    time.Time
	be         *backend
	bc         *bconn
	queuedAt   time.Time // when it first waited for a backend with room
	tried      [8]*backend
	nTried     int
	attempts   int
	bodyInOut  bool // the whole request body is in cc.out: it can be resent
	skipBody   bool // the backend answered before the body was sent
	retryable  bool // bodyInOut, and safe to send twice when it may have been processed
	closeAfter bool // close the client connection after this response
}

// relay forwards the request in cc.req and its answer. It reports whether
// the client connection may serve another request.
func (cc *clientConn) relay() bool {
	var st relayState
	cc.prepare(&st)
	status, err := cc.attempt(&st)
	return cc.settle(&st, status, err)
}

// prepare builds the request to send in cc.out, with the body when it is
// all buffered.
func (cc *clientConn) prepare(st *relayState) {
	b, req := cc.b, &cc.req
	*st = relayState{started: time.Now()}
	cc.requestID()
	if b.accessEvery > 0 { // the head's bytes do not outlive the body
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
		st.bodyInOut = true
	}
	st.retryable = st.bodyInOut && (isIdempotent(req.line[0]) || req.idempotent)
	st.closeAfter = req.close
}

// settle ends a request whose attempt ended with status and err: it
// retries on other backends while it may, answers an error when it cannot,
// and reports whether the client connection may serve another request.
func (cc *clientConn) settle(st *relayState, status int, err error) bool {
	b := cc.b
	for err != nil {
		if status != 0 { // the client is gone or can no longer be answered
			st.closeAfter = true
			b.record(st.be, status, st, cc)
			return false
		}
		if st.nTried >= len(st.tried) || st.attempts > b.cfg.Retries || !cc.mayRetry(st, err) {
			code := 502
			if isTimeout(err) {
				code = 504
			}
			if errors.Is(err, errNoBackends) || errors.Is(err, errQueueTimeout) {
				code = 503
			}
			cc.writeError(code, cc.errorText(code, err), st)
			b.record(st.be, code, st, cc)
			return !st.closeAfter && !b.shutting.Load()
		}
		b.retries.Add(1)
		b.logger.Debug("retrying on another backend", "failed", st.be.hostPort, "method", string(cc.req.line[0]), "error", err)
		status, err = cc.attempt(st)
	}
	return !st.closeAfter && !b.shutting.Load()
}

// attemptError is a failure of one attempt and whether it happened before
// the request could have reached the backend.
type attemptError struct {
	err     error
	unsent  bool // connect failed: nothing reached the backend
	noRetry bool // the request (or its body) may have reached the backend, or the answer began
}

func (e *attemptError) Error() string { return e.err.Error() }
func (e *attemptError) Unwrap() error { return e.err }

func (cc *clientConn) mayRetry(st *relayState, err error) bool {
	var ae *attemptError
	if !errors.As(err, &ae) || ae.noRetry {
		return false
	}
	if ae.unsent {
		return true // connect failed: the request never left
	}
	return st.retryable
}

// attempt sends the request to one backend and relays the answer. A non-nil
// error with status 0 may be retried elsewhere (mayRetry decides); with a
// status, the exchange is over and the client connection must close.
func (cc *clientConn) attempt(st *relayState) (int, error) {
	be, err := cc.choose(st)
	if err != nil {
		return 0, err
	}
	st.begin(be)
	defer be.done()
	status, err := cc.exchange(st, be, false)
	return cc.unstale(st, be, status, err)
}

// begin counts an attempt on be.
func (st *relayState) begin(be *backend) {
	st.be = be
	st.tried[st.nTried] = be
	st.nTried++
	st.attempts++
	be.requests.Add(1)
}

// unstale retries an exchange that failed on a stale pooled connection
// once more on a new connection: not the backend's failure, and not a
// retry.
func (cc *clientConn) unstale(st *relayState, be *backend, status int, err error) (int, error) {
	if errors.Is(err, errStale) {
		return cc.exchange(st, be, true)
	}
	return status, err
}

// errStale: a reused connection failed before anything of the request
// could have been processed, or before any answer, for a request that may
// be sent twice.
var errStale = errors.New("stale keep-alive connection")

// exchange is one attempt on one connection to be: a pooled one, or a new
// one when fresh.
func (cc *clientConn) exchange(st *relayState, be *backend, fresh bool) (int, error) {
	get := be.get
	if fresh {
		get = be.dial
	}
	bc, err := get()
	if err != nil {
		return 0, cc.connectFailed(be, err)
	}
	st.bc = bc
	if status, err := cc.send(st, be, bc); err != nil {
		bc.close()
		return status, err
	}
	return cc.receive(st, be, bc)
}

// connectFailed ejects be, which refused a connection or did not take it
// in time.
func (cc *clientConn) connectFailed(be *backend, err error) error {
	b := cc.b
	be.failures.Add(1)
	be.eject(b.cfg.EjectFor, b.activeChecks())
	b.ejections.Add(1)
	b.logger.Warn("backend ejected: connect failed", "addr", be.hostPort, "node", be.node, "error", err)
	return &attemptError{err: err, unsent: true}
}

// send writes the request in cc.out to bc, then the rest of its body.
func (cc *clientConn) send(st *relayState, be *backend, bc *bconn) (int, error) {
	req := &cc.req
	if bc.reused && !st.retryable && !bc.alive() {
		// A request that must not be sent twice does not go out on a
		// connection the backend has already closed.
		return 0, errStale
	}
	if _, err := bc.c.Write(cc.out); err != nil {
		if bc.reused {
			return 0, errStale // nothing of it was processed
		}
		return 0, cc.backendFailed(be, bc, err)
	}
	if st.bodyInOut {
		return 0, nil
	}
	if req.expect100 {
		// The client waits for "100 Continue" before it sends the body:
		// forward the backend's, or send the body after a second. A
		// final answer instead is relayed, and the body never read.
		code, err := cc.expectContinue(bc)
		if err != nil {
			return 0, cc.backendFailed(be, bc, err)
		}
		st.skipBody = code >= 200
	}
	if st.skipBody {
		return 0, nil
	}
	if err := cc.relayRequestBody(bc); err != nil {
		// Part of the body is unread or unsent: whatever happens,
		// the client connection cannot carry another request.
		st.closeAfter = true
		var he *httpError
		var ce *clientError // in this direction, a write to the backend
		switch {
		case errors.As(err, &he): // the client's body is malformed
			cc.writeError(he.status, he.msg, st)
			return he.status, err
		case errors.As(err, &ce):
			be.failures.Add(1)
			return 0, &attemptError{err: ce.err, noRetry: true} // the body was consumed: no retry
		default: // reading from the client failed: it is gone
			return 499, err
		}
	}
	return 0, nil
}

// receive relays the answer to the request sent on bc. It closes bc unless
// the exchange ended cleanly.
func (cc *clientConn) receive(st *relayState, be *backend, bc *bconn) (int, error) {
	req := &cc.req
	ok := false
	defer func() {
		if !ok {
			bc.close()
		}
	}()
	bc.deadline.extend(bc.c, cc.b.cfg.ResponseHeaderTimeout)
	for {
		if err := readHead(bc.br, &cc.resp, false); err != nil {
			if bc.reused && st.retryable && bc.br.Buffered() == 0 && connDropped(err) {
				return 0, errStale
			}
			return 0, cc.backendFailed(be, bc, err)
		}
		if cc.resp.status == 101 || cc.resp.status >= 200 {
			break
		}
		// 1xx (100 Continue, 103 Early Hints): forward to HTTP/1.1 clients
		// and read on.
		if !req.http10 {
			interim, _ := bc.br.Peek(cc.resp.size)
			if _, err := cc.c.Write(interim); err != nil {
				return 499, &clientError{err}
			}
		}
		_, _ = bc.br.Discard(cc.resp.size)
	}
	status, err := cc.respond(st, bc)
	ok = err == nil
	return status, err
}

// expectContinue waits up to a second for the backend's interim answer to
// "Expect: 100-continue" and returns its status (0 when it sent none). A
// 100 is forwarded to the client and consumed.
func (cc *clientConn) expectContinue(bc *bconn) (int, error) {
	bc.deadline.at = time.Now().Add(time.Second)
	_ = bc.c.SetReadDeadline(bc.deadline.at)
	_, err := bc.br.Peek(1)
	bc.deadline.clear(bc.c)
	if err != nil {
		if isTimeout(err) {
			return 0, nil
		}
		return 0, err
	}
	var h head
	if err := readHead(bc.br, &h, false); err != nil {
		return 0, err
	}
	if h.status != 100 {
		return h.status, nil
	}
	b, _ := bc.br.Peek(h.size)
	if _, err := cc.c.Write(b); err != nil {
		return 0, &clientError{err}
	}
	_, _ = bc.br.Discard(h.size)
	return 100, nil
}

// clientError is a failure on the client side of the relay.
type clientError struct{ err error }

func (e *clientError) Error() string { return "client: " + e.err.Error() }
func (e *clientError) Unwrap() error { return e.err }

// backendFailed accounts for a backend that failed after the connection
// was made: a reset or an empty answer ejects it.
func (cc *clientConn) backendFailed(be *backend, bc *bconn, err error) error {
	be.failures.Add(1)
	if !bc.reused && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
		be.eject(cc.b.cfg.EjectFor, cc.b.activeChecks())
		cc.b.ejections.Add(1)
		cc.b.logger.Warn("backend ejected: connection reset or closed", "addr", be.hostPort, "node", be.node, "error", err)
	}
	return &attemptError{err: err}
}

// relayRequestBody streams the request body from the client to bc.
func (cc *clientConn) relayRequestBody(bc *bconn) error {
	cc.deadline.clear(cc.c) // a large upload may take longer than the idle timeout
	var err error
	if cc.req.chunked {
		err = relayChunked(bc.c, cc.br, false)
	} else {
		_, err = copyN(bc.c, cc.br, cc.req.contentLength)
	}
	return err
}

// respond relays the response head in cc.resp (still buffered in bc.br)
// and its body. The error is non-nil when the exchange failed half-way.
func (cc *clientConn) respond(st *relayState, bc *bconn) (int, error) {
	b, req, resp := cc.b, &cc.req, &cc.resp
	status := resp.status
	method := req.line[0]
	upgrade := status == 101 && req.upgrading()
	bodyless := resp.bodyless(method) && !upgrade
	dechunk := resp.chunked && req.http10 && !bodyless
	untilClose := !bodyless && !upgrade && !resp.chunked && resp.contentLength < 0
	if untilClose || dechunk || req.close || st.skipBody || b.shutting.Load() {
		st.closeAfter = true
	}
	reuse := !resp.close && !untilClose && !upgrade && !st.skipBody

	cc.out = cc.out[:0]
	raw, _ := bc.br.Peek(resp.size)
	if resp.rewrite || st.closeAfter || dechunk || upgrade {
		cc.out = cc.appendResponseHead(cc.out, st.closeAfter, dechunk, upgrade)
	} else {
		cc.out = append(cc.out, raw...)
	}
	_, _ = bc.br.Discard(resp.size)

	// A small body that is all here goes out with the head, in one write.
	n := resp.contentLength
	if !bodyless && n > 0 && int64(bc.br.Buffered()) >= n && n <= maxHead {
		body, _ := bc.br.Peek(int(n))
		cc.out = append(cc.out, body...)
		_, _ = bc.br.Discard(int(n))
		n = 0
	}
	if _, err := cc.c.Write(cc.out); err != nil {
		return 499, &clientError{err}
	}
	if !bodyless && n != 0 || upgrade {
		// More is read from the backend: no response-header deadline for it.
		bc.deadline.clear(bc.c)
	}
	var err error
	switch {
	case bodyless || n == 0:
	case upgrade:
		st.closeAfter = true
		cc.tunnel(bc)
		return status, errUpgraded
	case resp.chunked:
		err = relayChunked(cc.c, bc.br, dechunk)
	case n > 0:
		_, err = copyN(cc.c, bc.br, n)
	default: // until the backend closes
		_, err = copyAll(cc.c, bc.br)
		reuse = false
	}
	if err != nil {
		st.closeAfter = true
		var ce *clientError
		if errors.As(err, &ce) {
			return 499, err
		}
		return status, &attemptError{err: err, noRetry: true}
	}
	if reuse {
		bc.be.put(bc)
		st.bc = nil
	} else {
		bc.close()
	}
	b.record(st.be, status, st, cc)
	return 0, nil
}

var errUpgraded = errors.New("connection upgraded")

type closeWriter interface{ CloseWrite() error }

// tunnel copies bytes both ways between the client and bc until either side
// closes: a WebSocket or other upgraded connection.
func (cc *clientConn) tunnel(bc *bconn) {
	cc.deadline.clear(cc.c)
	done := make(chan struct{}, 2)
	go func() {
		_, _ = copyAll(bc.c, cc.br)
		if cw, ok := bc.c.(closeWriter); ok {
			_ = cw.CloseWrite()
		}
		done <- struct{}{}
	}()
	go func() {
		_, _ = copyAll(cc.c, bc.br)
		if cw, ok := cc.c.(closeWriter); ok {
			_ = cw.CloseWrite()
		}
		done <- struct{}{}
	}()
	<-done
	<-done
	bc.close()
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

var (
	idPrefix  = newIDPrefix()
	idCounter atomic.Uint64
)

func newIDPrefix() string {
	var b [6]byte
	if f, err := os.Open("/dev/urandom"); err == nil {
		_, _ = io.ReadFull(f, b[:])
		f.Close()
	}
	const hex = "0123456789abcdef"
	out := make([]byte, 0, 13)
	for _, c := range b {
		out = append(out, hex[c>>4], hex[c&15])
	}
	return string(append(out, '-'))
}

// appendRequestHead writes the request as the backend gets it: HTTP/1.1,
// the client's fields minus hop-by-hop ones, Host kept, X-Forwarded-For
// appended to, X-Forwarded-Proto and -Host set, X-Request-Id kept or added.
func (cc *clientConn) appendRequestHead(out []byte) []byte {
	req := &cc.req
	out = append(out, req.line[0]...)
	out = append(out, ' ')
	out = append(out, originForm(req.line[1])...)
	out = append(out, " HTTP/1.1\r\n"...)
	for _, f := range req.fields {
		if !f.drop {
			out = appendField(out, f.name, f.value)
		}
	}
	out = append(out, "X-Forwarded-For: "...)
	if len(req.forwardedFor) > 0 {
		out = append(out, req.forwardedFor...)
		out = append(out, ", "...)
	}
	out = append(out, cc.remoteIP...)
	out = append(out, "\r\nX-Forwarded-Proto: http\r\n"...)
	if len(req.hostValue) > 0 {
		out = appendField(out, []byte("X-Forwarded-Host"), req.hostValue)
	} else if !req.host {
		out = append(out, "Host: \r\n"...) // HTTP/1.0 without Host: empty, as RFC 9112 §3.2 says
	}
	if len(req.requestID) == 0 {
		out = appendField(out, []byte("X-Request-Id"), cc.reqID)
	}
	if req.upgrading() {
		out = append(out, "Connection: Upgrade\r\n"...)
		out = appendField(out, []byte("Upgrade"), req.upgrade)
	}
	return append(out, crlf...)
}

// appendResponseHead writes the backend's response head minus hop-by-hop
// fields, adding Connection: close when the client connection ends after it.
func (cc *clientConn) appendResponseHead(out []byte, closing, dechunk, upgrade bool) []byte {
	resp := &cc.resp
	out = append(out, resp.line[0]...)
	out = append(out, ' ')
	out = append(out, resp.line[1]...)
	out = append(out, ' ')
	out = append(out, resp.line[2]...)
	out = append(out, crlf...)
	for _, f := range resp.fields {
		if f.drop || dechunk && equalFold(f.name, "Transfer-Encoding") {
			continue
		}
		out = appendField(out, f.name, f.value)
	}
	switch {
	case upgrade:
		out = append(out, "Connection: Upgrade\r\n"...)
		out = appendField(out, []byte("Upgrade"), resp.upgrade)
	case closing:
		out = append(out, "Connection: close\r\n"...)
	}
	return append(out, crlf...)
}

func appendField(out, name, value []byte) []byte {
	out = append(out, name...)
	out = append(out, ": "...)
	out = append(out, value...)
	return append(out, crlf...)
}

// originForm turns an absolute-form target (a client that thinks it talks
// to a proxy) into the path the backend expects.
func originForm(target []byte) []byte {
	if len(target) == 0 || target[0] == '/' || target[0] == '*' {
		return target
	}
	for _, scheme := range []string{"http://", "https://"} {
		if len(target) > len(scheme) && equalFold(target[:len(scheme)], scheme) {
			rest := target[len(scheme):]
			if i := bytes.IndexByte(rest, '/'); i >= 0 {
				return rest[i:]
			}
			return []byte("/")
		}
	}
	return target
}

// writeError answers the client with a short plain-text error; the
// connection closes after it unless the request was read whole.
func (cc *clientConn) writeError(code int, msg string, st *relayState) {
	closing := st == nil || st.closeAfter || cc.b.shutting.Load()
	out := cc.out[:0]
	out = append(out, "HTTP/1.1 "...)
	out = strconv.AppendInt(out, int64(code), 10)
	out = append(out, ' ')
	out = append(out, statusText(code)...)
	out = append(out, "\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nContent-Length: "...)
	out = strconv.AppendInt(out, int64(len(msg)+1), 10)
	if len(cc.reqID) > 0 && st != nil {
		out = append(out, "\r\nX-Request-Id: "...)
		out = append(out, cc.reqID...)
	}
	if closing {
		out = append(out, "\r\nConnection: close"...)
	}
	out = append(out, "\r\n\r\n"...)
	out = append(out, msg...)
	out = append(out, '\n')
	cc.out = out
	_, _ = cc.c.Write(out)
}

func (cc *clientConn) errorText(code int, err error) string {
	switch code {
	case 503:
		if errors.Is(err, errQueueTimeout) {
			return "herd gateway: every backend of service " + strconv.Quote(cc.b.cfg.Service) + " is busy: " + err.Error()
		}
		return "herd gateway: no backend available for service " + strconv.Quote(cc.b.cfg.Service)
	case 504:
		return "herd gateway: backend for service " + strconv.Quote(cc.b.cfg.Service) + " timed out: " + err.Error()
	}
	return "herd gateway: backend for service " + strconv.Quote(cc.b.cfg.Service) + " failed: " + err.Error()
}

func statusText(code int) string {
	switch code {
	case 400:
		return "Bad Request"
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

// copyN copies n bytes from src to dst as they arrive, through src's
// buffer: no allocation, and nothing held back.
func copyN(dst io.Writer, src *bufio.Reader, n int64) (int64, error) {
	var done int64
	for done < n {
		if src.Buffered() == 0 {
			if _, err := src.Peek(1); err != nil {
				if errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				return done, err
			}
		}
		b, _ := src.Peek(int(min(int64(src.Buffered()), n-done)))
		w, err := dst.Write(b)
		_, _ = src.Discard(w)
		done += int64(w)
		if err != nil {
			return done, &clientError{err}
		}
	}
	return done, nil
}

// copyAll copies from src to dst until src ends.
func copyAll(dst io.Writer, src *bufio.Reader) (int64, error) {
	var done int64
	for {
		if src.Buffered() == 0 {
			if _, err := src.Peek(1); err != nil {
				if errors.Is(err, io.EOF) {
					return done, nil
				}
				return done, err
			}
		}
		b, _ := src.Peek(src.Buffered())
		w, err := dst.Write(b)
		_, _ = src.Discard(w)
		done += int64(w)
		if err != nil {
			return done, &clientError{err}
		}
	}
}

// relayChunked copies a chunked body from src to dst, chunk by chunk as
// they arrive, trailers included. With dechunk, only the data is written.
func relayChunked(dst io.Writer, src *bufio.Reader, dechunk bool) error {
	var sizeLine []byte
	for {
		line, err := readLine(src)
		if err != nil {
			return err
		}
		sizeText := line
		if i := bytes.IndexByte(sizeText, ';'); i >= 0 {
			sizeText = sizeText[:i]
		}
		size, err := strconv.ParseUint(string(bytes.TrimRight(sizeText, " \t")), 16, 62)
		if err != nil {
			return badRequest("malformed chunk size %q", truncate(line, 32))
		}
		if !dechunk {
			// The size line is written again as the number the gateway
			// read (no leading zeros, whitespace or extensions), so the
			// backend cannot read another size: no disagreement to
			// smuggle through. Dropping extensions is allowed: RFC 9112
			// §7.1.1 lets a recipient ignore them.
			sizeLine = append(strconv.AppendUint(sizeLine[:0], size, 16), crlf...)
			if _, err := dst.Write(sizeLine); err != nil {
				return &clientError{err}
			}
		}
		_, _ = src.Discard(len(line) + 2)
		if size == 0 {
			// Trailers, then the blank line.
			for {
				line, err := readLine(src)
				if err != nil {
					return err
				}
				if !dechunk {
					if _, err := dst.Write(lineWithCRLF(src, line)); err != nil {
						return &clientError{err}
					}
				}
				_, _ = src.Discard(len(line) + 2)
				if len(line) == 0 {
					return nil
				}
			}
		}
		if _, err := copyN(dst, src, int64(size)); err != nil {
			return err
		}
		end, err := src.Peek(2)
		if err != nil {
			return err
		}
		if !bytes.Equal(end, crlf) {
			return badRequest("chunk not followed by CRLF")
		}
		if !dechunk {
			if _, err := dst.Write(end); err != nil {
				return &clientError{err}
			}
		}
		_, _ = src.Discard(2)
	}
}

// readLine peeks at the next CRLF-terminated line (without the CRLF).
func readLine(br *bufio.Reader) ([]byte, error) {
	for {
		b, err := br.Peek(max(1, br.Buffered()))
		if i := bytes.Index(b, crlf); i >= 0 {
			return b[:i], nil
		}
		if len(b) >= 4096 {
			return nil, badRequest("chunk line too long")
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if _, err := br.Peek(len(b) + 1); err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

func lineWithCRLF(br *bufio.Reader, line []byte) []byte {
	b, _ := br.Peek(len(line) + 2)
	return b
}
