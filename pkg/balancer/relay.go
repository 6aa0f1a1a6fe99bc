package balancer

import (
	"bytes"
	"errors"
	"time"
)

// The goroutine relay: a goroutine serves a client connection, driving each
// exchange through its states with blocking reads and writes. Without the
// event loop it serves every connection from accept to close; with it, it
// takes over the exchanges the loop does not relay itself (a streamed or
// chunked body, 100-continue, a large or streamed answer, an upgrade) from
// the state the loop left them in, then gives the connection back.

// serve relays the connection's exchanges until it closes.
func (cc *clientConn) serve() {
	defer cc.b.srv.forget(cc)
	for {
		cc.idleSince.Store(time.Now().UnixNano())
		cc.x.state = stateReadingHead
		partial, err := cc.awaitHead()
		if err == nil {
			err = readHead(cc.br, &cc.req, true)
		}
		cc.idleSince.Store(0)
		if err == errH2Preface && cc.b.cfg.H2C && cc.proto == protoHTTP {
			cc.serveH2C()
			return
		}
		if err != nil {
			cc.badHead(err, partial || cc.br != nil && cc.br.Buffered() > 0)
			return
		}
		cc.prepare()
		cc.run()
		if !cc.keepAlive() {
			return
		}
	}
}

// awaitHead waits for the first byte of the next request head, at most
// ClientIdleTimeout (ClientHeaderTimeout on a new connection), then gives
// the rest of the head ClientHeaderTimeout. partial: some of it came.
//
// While it waits with nothing buffered, the connection holds no buffer: it
// waits for the socket to be readable, then takes them from their pools.
func (cc *clientConn) awaitHead() (partial bool, err error) {
	cfg := &cc.b.cfg
	if cc.br == nil || cc.br.Buffered() == 0 {
		wait := cfg.ClientIdleTimeout
		if !cc.served {
			wait = cfg.ClientHeaderTimeout
		}
		cc.deadline.extend(cc.c, wait)
		if w, ok := cc.c.(readWaiter); ok {
			cc.rest()
			if err := w.WaitRead(); err != nil {
				return false, err
			}
		}
		cc.busy()
		if _, err := cc.br.Peek(1); err != nil {
			return false, err
		}
	}
	cc.idleSince.Store(0)
	if b, _ := cc.br.Peek(cc.br.Buffered()); !bytes.Contains(b, crlfcrlf) {
		cc.deadline.set(cc.c, cfg.ClientHeaderTimeout) // the head is not all here yet
	}
	return true, nil
}

// readWaiter is a connection that can wait until it has something to read
// without reading it (netpoll.Wrap's).
type readWaiter interface{ WaitRead() error }

// run drives the exchange from its current state to done.
func (cc *clientConn) run() {
	for {
		switch cc.x.state {
		case stateConnecting:
			cc.connect()
		case stateSending:
			cc.send()
		case stateAwaitingHead, stateStreaming:
			cc.receive()
		case stateFailed:
			cc.settle()
		default: // done
			return
		}
	}
}

// connect chooses the attempt's backend, unless the attempt has one
// already, and takes a pooled connection to it or dials one.
func (cc *clientConn) connect() {
	x := &cc.x
	if x.h == nil && !cc.chooseWaiting() {
		return
	}
	var bc *bconn
	if !x.fresh {
		bc = x.h.pool.get(time.Now())
	}
	x.fresh = false
	if bc == nil {
		var err error
		if bc, err = x.h.dial(); err != nil {
			cc.connectFailed(err)
			return
		}
	}
	x.bc, x.state = bc, stateSending
}

// send writes the request in cc.out to the attempt's connection, then the
// rest of its body.
func (cc *clientConn) send() {
	x, req, bc := &cc.x, &cc.req, cc.x.bc
	if bc.reused && !x.replayable && !bc.alive() {
		// A request that must not be sent twice does not go out on a
		// connection the backend has already closed.
		bc.close()
		x.failAttempt(failure{stale: true})
		return
	}
	if _, err := bc.c.Write(cc.out); err != nil {
		cc.sendFailed(bc, err)
		return
	}
	x.state = stateAwaitingHead
	if x.bodyInOut {
		return
	}
	if req.expect100 {
		// The client waits for "100 Continue" before it sends the body:
		// forward the backend's, or send the body after a second. A
		// final answer instead is relayed, and the body never read.
		code, err := cc.expectContinue(bc)
		if err != nil {
			bc.close()
			cc.backendFailed(bc, err, reachedMaybe)
			return
		}
		x.skipBody = code >= 200
	}
	if x.skipBody {
		return
	}
	if err := cc.relayRequestBody(bc); err != nil {
		// Part of the body is unread or unsent: whatever happens, the
		// client connection cannot carry another request.
		x.closeAfter = true
		bc.close()
		var he *httpError
		var ce *clientError // in this direction, a write to the backend
		switch {
		case errors.As(err, &he): // the client's body is malformed
			cc.writeError(he.status, he.msg, true)
			cc.finish(outcomeBadRequest, he.status)
		case errors.As(err, &ce): // the body was consumed: no retry
			x.h.failures.Add(1)
			x.failAttempt(failure{err: ce.err, reach: reachedAll})
		default: // reading from the client failed: it is gone
			cc.finish(outcomeClientGone, statusClientGone)
		}
	}
}

// sendFailed ends an attempt whose request did not all go out on bc: on a
// reused connection nothing of it was processed (stale), otherwise bc's
// backend failed.
func (cc *clientConn) sendFailed(bc *bconn, err error) {
	bc.close()
	if bc.reused {
		cc.x.failAttempt(failure{err: err, stale: true})
		return
	}
	cc.backendFailed(bc, err, reachedMaybe)
}

// receive relays the answer to the request sent on the attempt's
// connection, from its head on.
func (cc *clientConn) receive() {
	req, bc := &cc.req, cc.x.bc
	bc.deadline.extend(bc.c, cc.b.cfg.ResponseHeaderTimeout)
	for {
		if err := readHead(bc.br, &cc.resp, false); err != nil {
			cc.headFailed(bc, err)
			return
		}
		if cc.resp.status == 101 || cc.resp.status >= 200 {
			break
		}
		// 1xx (100 Continue, 103 Early Hints): forward to HTTP/1.1 clients
		// and read on.
		if !req.http10 {
			interim, _ := bc.br.Peek(cc.resp.size)
			if _, err := cc.c.Write(interim); err != nil {
				bc.close()
				cc.finish(outcomeClientGone, statusClientGone)
				return
			}
		}
		_, _ = bc.br.Discard(cc.resp.size)
	}
	if cc.resp.status >= 500 && cc.x.rejects(cc.resp.status) {
		cc.x.answered(cc.resp.status)
		cc.dropAnswer(bc)
		return
	}
	cc.x.answered(cc.resp.status)
	cc.respond()
}

// dropAnswer discards the answer whose head is in cc.resp, from a canary or
// baseline backend, for the request to go to the stable arm (rejects), and
// fails the attempt. The connection goes back to its pool only when the
// answer is all buffered and nothing else is, and the backend keeps it
// open; else it is closed, with whatever of the answer is still coming.
func (cc *clientConn) dropAnswer(bc *bconn) {
	resp := &cc.resp
	n := resp.contentLength
	if resp.bodyless(cc.req.line[0]) {
		n = 0
	}
	if !resp.close && !resp.chunked && n >= 0 && int64(bc.br.Buffered()) == int64(resp.size)+n {
		_, _ = bc.br.Discard(bc.br.Buffered())
		bc.deadline.clear(bc.c)
		bc.h.put(bc)
	} else {
		bc.close()
	}
	x := &cc.x
	cc.b.logger.Debug("answer of a canary arm discarded for the stable arm's", "status", resp.status, "arm", x.h.arm.String(),
		"backend", x.h.hostPort, "request_id", string(cc.reqID))
	x.failAttempt(failure{err: &armAnswer{status: resp.status, arm: x.h.arm}, reach: reachedMaybe, answered: true})
}

// headFailed ends an attempt whose answer's head could not be read from
// bc: a reused connection the backend closed before answering a request
// that may be sent again is stale; anything else is the backend's failure.
func (cc *clientConn) headFailed(bc *bconn, err error) {
	x := &cc.x
	stale := bc.reused && x.replayable && bc.br.Buffered() == 0 && connDropped(err)
	bc.close()
	if stale {
		x.failAttempt(failure{err: err, stale: true})
		return
	}
	cc.backendFailed(bc, err, reachedMaybe)
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

// respond relays the response head in cc.resp (still buffered in the
// attempt connection's reader) and its body, and ends the exchange. The
// event loop calls it too, for an answer that is all buffered: then it
// writes once and never waits.
func (cc *clientConn) respond() {
	b, x, req, resp, bc := cc.b, &cc.x, &cc.req, &cc.resp, cc.x.bc
	x.state = stateStreaming
	status := resp.status
	method := req.line[0]
	upgrade := status == 101 && req.upgrading()
	bodyless := resp.bodyless(method) && !upgrade
	dechunk := resp.chunked && req.http10 && !bodyless
	untilClose := !bodyless && !upgrade && !resp.chunked && resp.contentLength < 0
	if untilClose || dechunk || req.close || x.skipBody || b.closing.Load() {
		x.closeAfter = true
	}
	reuse := !resp.close && !untilClose && !upgrade && !x.skipBody

	cc.out = cc.out[:0]
	raw, _ := bc.br.Peek(resp.size)
	hsts := cc.proto == protoHTTPS && b.hsts != nil
	if resp.rewrite || x.closeAfter || dechunk || upgrade || hsts {
		cc.out = cc.appendResponseHead(cc.out, x.closeAfter, dechunk, upgrade)
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
		bc.close()
		cc.finish(outcomeClientGone, statusClientGone)
		return
	}
	if !bodyless && n != 0 || upgrade {
		// More is read from the backend: no response-header deadline for it.
		bc.deadline.clear(bc.c)
	}
	var err error
	switch {
	case bodyless || n == 0:
	case upgrade:
		cc.tunnel(bc)
		cc.finish(outcomeUpgraded, status)
		return
	case resp.chunked:
		err = relayChunked(cc.c, bc.br, dechunk)
	case n > 0:
		_, err = copyN(cc.c, bc.br, n)
	default: // until the backend closes
		_, err = copyAll(cc.c, bc.br)
		reuse = false
	}
	if err != nil {
		bc.close()
		var ce *clientError
		if errors.As(err, &ce) {
			cc.finish(outcomeClientGone, statusClientGone)
		} else {
			cc.finish(outcomeCutShort, status)
		}
		return
	}
	if reuse {
		bc.h.put(bc)
	} else {
		bc.close()
	}
	cc.finish(outcomeServed, status)
}

// put returns a connection whose exchange ended cleanly to its pool: the
// event loop's it came from, or the goroutines'.
func (h *host) put(bc *bconn) {
	if bc.loop != nil {
		bc.loop.put(bc)
		return
	}
	h.pool.put(bc, time.Now())
}

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
