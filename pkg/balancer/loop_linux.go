package balancer

import (
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herd-cluster/herd/internal/netpoll"
)

// loop is the relay's event loop: one goroutine, locked to its thread, that
// owns client connections and their backend connections through one
// edge-triggered poller of its own (internal/netpoll), and drives their
// exchanges through the same states and steps as the goroutine relay, as
// far as they go without waiting: reading a head, choosing a backend,
// connecting, sending a request whose body came with its head, retrying,
// reading an answer that fits in a read buffer and relaying it. What would
// wait (a streamed or chunked body, 100-continue, a large or streamed
// answer, an upgrade) is handed to a goroutine from the state the exchange
// is in (relay.go), and the connection comes back to the loop once that
// exchange is over.
//
// Why: under wrk on 2 cores the goroutine-per-connection relay served more
// requests than HAProxy but with a longer tail; its threads waited behind
// each other and behind the Go scheduler's run queues. One thread that
// takes ready sockets in the kernel's order, as HAProxy does, costs less
// CPU per request and waits less (docs/http.md, Performance).
//
// The loop's sockets are not in Go's network poller (that would wake an
// idle P for every event): they are duplicates taken from accepted
// connections, or dialled by the loop, and become Go connections again
// (netpoll.FileConn) only while a goroutine has them.
type loop struct {
	b      *Balancer
	poller *netpoll.Poller
	done   chan struct{} // closed when run has returned

	mu      sync.Mutex
	inbox   []func()
	stopped bool

	// Loop-only state.
	fds     []*lconn // registered sockets by descriptor
	clients map[*clientConn]struct{}
	pools   map[*host]*connPool // the loop's keep-alive connections, by backend
	quit    bool
	sweepAt int64
	gen     int32
	// While a batch of events is handled, writes are queued (corked) and
	// made after it, together: a backend or client woken by the first
	// finds the others ready too.
	corked bool
	dirty  []*lconn
	// Write buffers for what a socket cannot take yet, kept for reuse: a
	// connection holds one only while something waits to be written.
	spare [][]byte
}

// spareMax bounds the write buffers a loop keeps; writeBufSize is their
// size, and the largest kept.
const (
	spareMax     = 256
	writeBufSize = 4 << 10
)

// buf returns an empty write buffer.
func (l *loop) buf() []byte {
	if n := len(l.spare); n > 0 {
		b := l.spare[n-1]
		l.spare[n-1] = nil
		l.spare = l.spare[:n-1]
		return b
	}
	return make([]byte, 0, writeBufSize)
}

// keep takes back a write buffer that is no longer needed.
func (l *loop) keep(b []byte) {
	if cap(b) <= writeBufSize && len(l.spare) < spareMax {
		l.spare = append(l.spare, b[:0])
	}
}

// How often the loop checks deadlines and its pools.
const sweepEvery = 50 * time.Millisecond

// lwait is what the loop waits for on a client connection beyond its
// exchange's state.
type lwait uint8

const (
	waitExchange lwait = iota // the exchange's next step (a head, a connection, an answer)
	waitFlush                 // the last answer is written in part: the next request waits for the rest
	waitClose                 // closing once the last answer is written
	waitAway                  // a goroutine has it, or it is closed
)

func newLoop(b *Balancer) (*loop, error) {
	p, err := netpoll.New(256)
	if err != nil {
		return nil, err
	}
	l := &loop{
		b: b, poller: p, done: make(chan struct{}),
		clients: make(map[*clientConn]struct{}),
		pools:   make(map[*host]*connPool),
	}
	go l.run()
	return l, nil
}

// post runs f on the loop. It reports false when the loop has stopped.
func (l *loop) post(f func()) bool {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return false
	}
	l.inbox = append(l.inbox, f)
	first := len(l.inbox) == 1
	l.mu.Unlock()
	if first {
		l.poller.Wake()
	}
	return true
}

// stop ends the loop, which closes what it still owns, and waits for it.
func (l *loop) stop() {
	l.post(func() { l.quit = true })
	<-l.done
}

// accept takes a new client connection c: a duplicate of its socket joins
// the loop and c is closed. false: the loop cannot take it, and c is
// untouched.
func (l *loop) accept(cc *clientConn, c net.Conn) bool {
	fd, err := netpoll.DupConn(c)
	if err != nil {
		return false
	}
	lc := &lconn{fd: fd, raddr: c.RemoteAddr(), cc: cc}
	c.Close()
	cc.c = lc
	if !l.post(func() { l.adopt(cc) }) {
		l.b.srv.forget(cc)
	}
	return true
}

// shutdown closes the client connections idle since before (unix
// nanoseconds), as Shutdown does without the loop; the others close after
// their answer (respond sees Balancer.closing).
func (l *loop) shutdown(before int64) {
	l.post(func() {
		for cc := range l.clients {
			since := cc.idleSince.Load()
			if cc.c.(*lconn).wait == waitExchange && cc.x.state == stateReadingHead && since != 0 && since <= before {
				l.closeClient(cc)
			}
		}
	})
}

// closeAll closes every client connection the loop owns.
func (l *loop) closeAll() {
	l.post(func() {
		for cc := range l.clients {
			l.closeClient(cc)
		}
	})
}

func (l *loop) run() {
	runtime.LockOSThread()
	defer l.exit()
	for !l.quit {
		timeout := time.Duration(-1)
		if len(l.clients) > 0 || len(l.pools) > 0 {
			timeout = sweepEvery
		}
		events, woken := l.poller.Wait(timeout)
		l.corked = true
		if woken {
			l.runInbox()
		}
		for _, ev := range events {
			l.dispatch(ev)
		}
		l.corked = false
		for i, lc := range l.dirty {
			l.dirty[i] = nil
			lc.dirty = false
			if lc.l == l && l.fds[lc.fd] == lc {
				l.flush(lc)
			}
		}
		l.dirty = l.dirty[:0]
		if now := time.Now().UnixNano(); now >= l.sweepAt {
			l.sweep(now)
			l.sweepAt = now + int64(sweepEvery)
		}
	}
}

func (l *loop) runInbox() {
	l.mu.Lock()
	inbox := l.inbox
	l.inbox = nil
	l.mu.Unlock()
	for _, f := range inbox {
		f()
	}
}

func (l *loop) exit() {
	l.mu.Lock()
	l.stopped = true
	inbox := l.inbox
	l.inbox = nil
	l.mu.Unlock()
	for _, f := range inbox { // adoptions: they close with quit set
		f()
	}
	for cc := range l.clients {
		l.closeClient(cc)
	}
	for _, p := range l.pools {
		p.closeAll()
	}
	l.poller.Close()
	close(l.done)
}

func (l *loop) dispatch(ev netpoll.Event) {
	if ev.Fd >= len(l.fds) {
		return
	}
	lc := l.fds[ev.Fd]
	if lc == nil || lc.gen != ev.Tag {
		return
	}
	if ev.Hup {
		lc.hup = true // edge-triggered: this is said once
	}
	if ev.In {
		lc.drained = false
	}
	if lc.connecting {
		if ev.Out {
			l.connected(lc)
		}
		return
	}
	if ev.Out && lc.waiting() {
		l.flush(lc)
		if l.fds[ev.Fd] != lc {
			return // closed or handed over
		}
	}
	if !ev.In {
		return
	}
	cc := lc.cc
	switch {
	case lc.bc == nil:
		l.readRequest(cc)
	case cc != nil && cc.x.bc == lc.bc && cc.x.state == stateAwaitingHead:
		l.answer(cc)
	case cc == nil && ev.Hup:
		l.dropIdle(lc.bc) // the backend closed a pooled connection
	}
}

// register adds lc to the loop's poller.
func (l *loop) register(lc *lconn) error {
	for lc.fd >= len(l.fds) {
		l.fds = append(l.fds, make([]*lconn, len(l.fds)+64)...)
	}
	l.gen++ // tells this registration's events from a closed predecessor's on the same descriptor
	if l.gen == -1 {
		l.gen = 0 // -1 is the poller's own
	}
	lc.gen = l.gen
	if err := l.poller.Add(lc.fd, lc.gen); err != nil {
		return err
	}
	l.fds[lc.fd], lc.l = lc, l
	return nil
}

// release takes lc out of the loop and makes it a Go connection again,
// for a goroutine.
func (l *loop) release(lc *lconn) error {
	if lc.l != nil {
		_ = l.poller.Remove(lc.fd)
		l.fds[lc.fd], lc.l = nil, nil
	}
	gc, err := netpoll.FileConn(lc.fd)
	if err != nil {
		return err
	}
	lc.gc = gc
	return nil
}

// adopt makes the loop the owner of cc: a new connection, or one whose
// goroutine is done with its exchange.
func (l *loop) adopt(cc *clientConn) {
	lc := cc.c.(*lconn)
	if lc.gc != nil {
		lc.gc.Close()
		lc.gc = nil
	}
	lc.drained = false
	if l.quit || l.register(lc) != nil {
		l.b.srv.forget(cc)
		return
	}
	l.clients[cc] = struct{}{}
	cc.looped.Store(true)
	l.next(cc)
	l.readRequest(cc)
}

// next readies cc for its next request, once its last answer is written.
func (l *loop) next(cc *clientConn) {
	lc := cc.c.(*lconn)
	if lc.waiting() {
		lc.wait = waitFlush
		return
	}
	lc.wait, cc.x.state, lc.headBegun = waitExchange, stateReadingHead, false
	if cc.served {
		lc.due = dueIn(l.b.cfg.ClientIdleTimeout)
	} else {
		lc.due = dueIn(l.b.cfg.ClientHeaderTimeout)
	}
	cc.rest() // idle: no buffer until the next request's bytes come
}

// readRequest reads and relays the requests cc has sent, as far as they go
// without waiting.
func (l *loop) readRequest(cc *clientConn) {
	lc := cc.c.(*lconn)
	for lc.wait == waitExchange && cc.x.state == stateReadingHead {
		err := netpoll.ErrAgain
		if cc.br != nil && cc.br.Buffered() > 0 || !lc.drained {
			cc.busy()
			err = readHead(cc.br, &cc.req, true)
		}
		if err == netpoll.ErrAgain {
			idle := cc.br == nil || cc.br.Buffered() == 0
			if !idle {
				cc.idleSince.Store(0)
			} else if cc.idleSince.Load() == 0 {
				cc.idleSince.Store(time.Now().UnixNano())
			}
			switch {
			case idle: // Shutdown closes it once idle long enough
				cc.rest()
			case !lc.headBegun: // the rest of the head has ClientHeaderTimeout
				lc.headBegun, lc.due = true, dueIn(l.b.cfg.ClientHeaderTimeout)
			}
			return
		}
		cc.idleSince.Store(0)
		if err != nil {
			if err == errH2Preface && l.b.cfg.H2C {
				l.handOverH2C(cc)
				return
			}
			l.refuse(cc, err)
			return
		}
		cc.prepare()
		if !cc.x.bodyInOut {
			l.handOver(cc) // the body streams: a goroutine relays it
			return
		}
		l.advance(cc)
	}
}

// refuse answers a head that did not parse or did not come in time, and
// closes the connection.
func (l *loop) refuse(cc *clientConn, err error) {
	cc.badHead(err, cc.c.(*lconn).headBegun || cc.br != nil && cc.br.Buffered() > 0)
	l.closeWhenFlushed(cc)
}

// advance drives cc's exchange from its state as far as it goes without
// waiting; once it is done, cc waits for its next request (or closes).
func (l *loop) advance(cc *clientConn) {
	x := &cc.x
	for {
		switch x.state {
		case stateConnecting:
			if x.h == nil && !cc.choose() { // without a cap on backends, choosing does not wait
				continue
			}
			if !x.fresh {
				if bc := l.pooled(x.h); bc != nil {
					x.bc, x.state = bc, stateSending
					continue
				}
			}
			x.fresh = false
			if !l.dial(cc) {
				return // connecting: its socket's event goes on
			}
		case stateSending:
			l.send(cc)
		case stateFailed:
			cc.settle()
		case stateDone:
			l.ended(cc)
			return
		default: // awaiting the answer's events
			return
		}
	}
}

// ended moves on after an exchange: to the next, or to closing.
func (l *loop) ended(cc *clientConn) {
	if cc.keepAlive() {
		l.next(cc)
	} else {
		l.closeWhenFlushed(cc)
	}
}

// pooled returns an idle connection of the loop's to h, or nil.
func (l *loop) pooled(h *host) *bconn {
	p := l.pools[h]
	if p == nil {
		return nil
	}
	now := time.Now()
	for bc := p.get(now); bc != nil; bc = p.get(now) {
		if !h.retired.Load() && !bc.c.(*lconn).hup {
			return bc
		}
		bc.close()
	}
	return nil
}

// put takes back bc, whose exchange ended cleanly: on the loop, into its
// pool; from a goroutine (a large or streamed answer), through the inbox,
// so that such an answer does not cost the loop a new connection.
func (l *loop) put(bc *bconn) {
	if bc.c.(*lconn).gc == nil {
		l.putIdle(bc)
		return
	}
	if !l.post(func() { l.reclaim(bc) }) {
		bc.close()
	}
}

// reclaim makes a backend connection a goroutine used the loop's again.
func (l *loop) reclaim(bc *bconn) {
	lc := bc.c.(*lconn)
	lc.gc.Close()
	lc.gc, lc.drained, bc.deadline.at = nil, false, time.Time{}
	if l.quit || l.register(lc) != nil {
		bc.close()
		return
	}
	l.putIdle(bc)
}

// putIdle keeps bc, whose exchange ended cleanly, for another request.
func (l *loop) putIdle(bc *bconn) {
	lc := bc.c.(*lconn)
	if lc.hup || lc.waiting() {
		bc.close()
		return
	}
	lc.cc = nil
	p := l.pools[bc.h]
	if p == nil {
		p = &connPool{max: l.b.cfg.MaxIdleConnsPerBackend, timeout: l.b.cfg.IdleConnTimeout}
		l.pools[bc.h] = p
	}
	p.put(bc, time.Now())
}

// dropIdle closes a pooled connection the backend closed.
func (l *loop) dropIdle(bc *bconn) {
	if p := l.pools[bc.h]; p != nil {
		p.remove(bc)
	}
}

// dial connects to the attempt's backend for cc's request, without
// waiting. It reports whether the exchange moved on (connected, or
// failed); false: the connection is pending.
func (l *loop) dial(cc *clientConn) bool {
	x := &cc.x
	raddr := net.TCPAddrFromAddrPort(x.h.addr)
	fd, pending, err := netpoll.Dial(x.h.addr)
	if err != nil {
		cc.connectFailed(&net.OpError{Op: "dial", Net: "tcp", Addr: raddr, Err: err})
		return true
	}
	lc := &lconn{fd: fd, raddr: raddr, cc: cc, connecting: pending}
	bc := &bconn{h: x.h, c: lc, loop: l}
	bc.br, lc.bc = getReader(lc), bc
	if err := l.register(lc); err != nil {
		bc.close()
		cc.connectFailed(err)
		return true
	}
	x.bc = bc
	if pending {
		cc.c.(*lconn).due = dueIn(l.b.cfg.DialTimeout)
		return false
	}
	lc.laddr = netpoll.LocalAddr(fd)
	x.state = stateSending
	return true
}

// connected continues cc's exchange once its new connection is up, or
// failed.
func (l *loop) connected(lc *lconn) {
	lc.connecting = false
	cc, bc := lc.cc, lc.bc
	if err := netpoll.ConnectResult(lc.fd); err != nil {
		bc.close()
		cc.connectFailed(&net.OpError{Op: "dial", Net: "tcp", Addr: lc.raddr, Err: err})
	} else {
		lc.laddr = netpoll.LocalAddr(lc.fd)
		cc.x.state = stateSending
	}
	l.advance(cc)
	l.readRequest(cc)
}

// send writes cc's request, whose body came with its head, to the
// attempt's connection.
func (l *loop) send(cc *clientConn) {
	x := &cc.x
	bc := x.bc
	lc := bc.c.(*lconn)
	lc.cc = cc
	if bc.reused && !x.replayable && !lc.quiet() {
		// A request that must not be sent twice waits for a new connection.
		bc.close()
		x.failAttempt(failure{stale: true})
		return
	}
	if _, err := lc.Write(cc.out); err != nil {
		cc.sendFailed(bc, err)
		return
	}
	x.state = stateAwaitingHead
	cc.c.(*lconn).due = dueIn(l.b.cfg.ResponseHeaderTimeout)
}

// answer reads the answer to cc's request and relays it when it is all
// here; an answer the loop does not relay itself goes to a goroutine.
func (l *loop) answer(cc *clientConn) {
	x, resp := &cc.x, &cc.resp
	bc := x.bc
	err := readHead(bc.br, resp, false)
	if err == netpoll.ErrAgain {
		return
	}
	if err != nil {
		cc.headFailed(bc, err)
		l.advance(cc)
		l.readRequest(cc)
		return
	}
	total := resp.size
	simple := resp.status >= 200 && resp.status != 101
	if simple && !resp.bodyless(cc.req.line[0]) {
		simple = !resp.chunked && resp.contentLength >= 0 && resp.contentLength <= int64(bc.br.Size()-resp.size)
		total += int(resp.contentLength)
	}
	if simple && bc.br.Buffered() < total {
		cc.c.(*lconn).due = 0 // the head is here: no deadline for the body, as without the loop
		_, err := bc.br.Peek(total)
		if err == netpoll.ErrAgain {
			return
		}
		simple = err == nil
	}
	if resp.status >= 500 && x.rejects(resp.status) {
		// For the stable arm: pooled again when it is all here, closed
		// otherwise; no goroutine needed.
		x.answered(resp.status)
		cc.dropAnswer(bc)
		l.advance(cc)
		l.readRequest(cc)
		return
	}
	if !simple {
		// The goroutine reads the head again from the buffer (or the
		// same error) and takes it from there.
		l.handOver(cc)
		return
	}
	x.answered(resp.status)
	cc.respond() // all buffered: one write, which does not wait
	l.advance(cc)
	l.readRequest(cc)
}

// handOver gives cc to a goroutine that drives its exchange from the state
// it is in, then gives the connection back to the loop if it may carry
// another exchange.
func (l *loop) handOver(cc *clientConn) {
	lc := cc.c.(*lconn)
	delete(l.clients, cc)
	lc.wait = waitAway
	if bc := cc.x.bc; bc != nil {
		bc.deadline.at = time.Time{}
		if err := l.release(bc.c.(*lconn)); err != nil {
			l.closeClient(cc)
			return
		}
	}
	if err := l.release(lc); err != nil {
		l.closeClient(cc)
		return
	}
	cc.deadline.at = time.Time{}
	cc.looped.Store(false)
	go func() {
		cc.run()
		if cc.keepAlive() && l.post(func() { l.adopt(cc) }) {
			return
		}
		l.b.srv.forget(cc)
	}()
}

// handOverH2C gives a client that began with the HTTP/2 preface to a
// goroutine, which serves it as HTTP/2.
func (l *loop) handOverH2C(cc *clientConn) {
	lc := cc.c.(*lconn)
	delete(l.clients, cc)
	lc.wait = waitAway
	if err := l.release(lc); err != nil {
		l.closeClient(cc)
		return
	}
	cc.deadline.at = time.Time{}
	cc.looped.Store(false)
	go func() {
		cc.serveH2C()
		l.b.srv.forget(cc)
	}()
}

// flush writes what lc has pending; once all is written, the client it
// is waits for its next request, or closes.
func (l *loop) flush(lc *lconn) {
	if err := lc.flush(); err != nil {
		if lc.bc == nil {
			l.closeClient(lc.cc)
		} else if cc := lc.cc; cc != nil && cc.x.bc == lc.bc {
			cc.sendFailed(lc.bc, err) // the request did not all go out
			l.advance(cc)
			l.readRequest(cc)
		}
		return
	}
	if lc.waiting() || lc.bc != nil {
		return
	}
	switch cc := lc.cc; lc.wait {
	case waitFlush:
		l.next(cc)
		l.readRequest(cc)
	case waitClose:
		l.closeClient(cc)
	}
}

// closeWhenFlushed closes cc once what it has pending is written.
func (l *loop) closeWhenFlushed(cc *clientConn) {
	lc := cc.c.(*lconn)
	if !lc.waiting() {
		l.closeClient(cc)
		return
	}
	lc.wait, lc.due = waitClose, 0
}

// closeClient closes cc, ending the attempt it has in flight.
func (l *loop) closeClient(cc *clientConn) {
	if bc := cc.x.bc; bc != nil {
		bc.close()
	}
	cc.x.endAttempt()
	delete(l.clients, cc)
	cc.c.(*lconn).wait = waitAway
	cc.looped.Store(false)
	l.b.srv.forget(cc)
}

// dueIn returns when a wait that may last t times out, in unix
// nanoseconds; 0 (never) when t is not positive.
func dueIn(t time.Duration) int64 {
	if t <= 0 {
		return 0
	}
	return time.Now().Add(t).UnixNano()
}

// sweep enforces deadlines and ages the pools.
func (l *loop) sweep(now int64) {
	for cc := range l.clients {
		lc := cc.c.(*lconn)
		if lc.wait != waitExchange || lc.due == 0 || now < lc.due {
			continue
		}
		switch x := &cc.x; x.state {
		case stateReadingHead: // the client idle or header timeout
			l.refuse(cc, os.ErrDeadlineExceeded)
			continue
		case stateConnecting: // the connect timeout
			bc := x.bc
			raddr := bc.c.RemoteAddr()
			bc.close()
			cc.connectFailed(&net.OpError{Op: "dial", Net: "tcp", Addr: raddr, Err: os.ErrDeadlineExceeded})
		case stateAwaitingHead: // the response header timeout
			bc := x.bc
			raddr := bc.c.RemoteAddr()
			bc.close()
			cc.backendFailed(bc, &net.OpError{Op: "read", Net: "tcp", Addr: raddr, Err: os.ErrDeadlineExceeded}, reachedMaybe)
		default:
			continue
		}
		l.advance(cc)
		l.readRequest(cc)
	}
	t := time.Unix(0, now)
	for h, p := range l.pools {
		if p.expire(t) {
			delete(l.pools, h)
		}
	}
}

// lconn is a socket the loop owns: non-blocking reads and writes with raw
// system calls (a write the kernel cannot take yet is kept and flushed when
// the socket is writable), or, while a goroutine has it, a Go connection
// to the same socket that every call goes to.
type lconn struct {
	fd           int
	gen          int32
	l            *loop // set while registered
	laddr, raddr net.Addr
	pending      []byte // written, not yet taken by the kernel from sent on
	sent         int
	dirty        bool  // in the loop's list of connections to flush after this batch
	err          error // a read error: every later read returns it
	gc           net.Conn
	closed       atomic.Bool
	connecting   bool
	hup          bool        // the peer closed its side, or the socket failed
	drained      bool        // the last read took all there was, and no event came since (netpoll: edge triggering)
	cc           *clientConn // the client connection it is, or serves
	bc           *bconn      // set for a backend connection
	// For a client connection: what the loop waits for, and until when
	// (unix nanoseconds; 0: no limit); whether a request head has begun.
	wait      lwait
	due       int64
	headBegun bool
}

func (c *lconn) Read(p []byte) (int, error) {
	if c.gc != nil {
		return c.gc.Read(p)
	}
	if c.err != nil {
		return 0, c.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, err := netpoll.Read(c.fd, p)
	switch {
	case err == netpoll.ErrAgain:
		c.drained = true
		return 0, err
	case err == io.EOF:
		c.err = err
		return 0, err
	case err != nil:
		c.err = c.opError("read", err)
		return 0, c.err
	}
	// A read that did not fill p took all there was: more data will come
	// with an event, so the loop need not read again only to be told to
	// try later.
	c.drained = n < len(p)
	return n, nil
}

func (c *lconn) Write(p []byte) (int, error) {
	if c.gc != nil {
		return c.gc.Write(p)
	}
	if c.closed.Load() {
		return 0, c.opError("write", net.ErrClosed)
	}
	if c.waiting() || c.l != nil && c.l.corked {
		if c.pending == nil && c.l != nil {
			c.pending = c.l.buf()
		}
		c.pending = append(c.pending, p...)
		if c.l != nil && c.l.corked && !c.dirty {
			c.dirty = true
			c.l.dirty = append(c.l.dirty, c)
		}
		return len(p), nil
	}
	switch n, err := netpoll.Write(c.fd, p); err {
	case nil:
	case netpoll.ErrAgain:
		if c.pending == nil && c.l != nil {
			c.pending = c.l.buf()
		}
		c.pending = append(c.pending[:0], p[n:]...)
	default:
		return n, c.opError("write", err)
	}
	return len(p), nil
}

// waiting reports whether written bytes wait to be flushed.
func (c *lconn) waiting() bool { return c.sent < len(c.pending) }

// flush writes what is pending, as far as the socket takes it.
func (c *lconn) flush() error {
	n, err := netpoll.Write(c.fd, c.pending[c.sent:])
	c.sent += n
	switch err {
	case nil:
	case netpoll.ErrAgain:
		return nil
	default:
		return c.opError("write", err)
	}
	c.sent = 0
	if c.l != nil {
		c.l.keep(c.pending) // a large answer's buffer is not kept
	}
	c.pending = nil
	return nil
}

// quiet reports whether the peer has neither closed the connection nor
// sent anything unread.
func (c *lconn) quiet() bool {
	if c.gc != nil {
		q, ok := c.gc.(quieter)
		return !ok || q.Quiet()
	}
	return netpoll.Quiet(c.fd)
}

func (c *lconn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.laddr, Addr: c.raddr, Err: err}
}

// Close closes the socket: the loop's and, while a goroutine has it, the
// Go connection's.
func (c *lconn) Close() error {
	if c.gc != nil {
		c.gc.Close()
	}
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	if c.l != nil && c.l.fds[c.fd] == c {
		c.l.fds[c.fd] = nil // closing the descriptor takes it out of the poller
	}
	return netpoll.Close(c.fd)
}

func (c *lconn) CloseWrite() error {
	if cw, ok := c.gc.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return netpoll.CloseWrite(c.fd)
}

func (c *lconn) LocalAddr() net.Addr  { return c.laddr }
func (c *lconn) RemoteAddr() net.Addr { return c.raddr }

// Deadlines apply while a goroutine has the connection; the loop keeps its
// own.
func (c *lconn) SetDeadline(t time.Time) error {
	if c.gc != nil {
		return c.gc.SetDeadline(t)
	}
	return nil
}

func (c *lconn) SetReadDeadline(t time.Time) error {
	if c.gc != nil {
		return c.gc.SetReadDeadline(t)
	}
	return nil
}

func (c *lconn) SetWriteDeadline(t time.Time) error {
	if c.gc != nil {
		return c.gc.SetWriteDeadline(t)
	}
	return nil
}
