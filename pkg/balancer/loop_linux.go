package balancer

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// loop is the relay's event loop: one goroutine, locked to its thread, that
// owns the client connections and their backend connections through one
// epoll instance of its own, and relays the common exchange itself: a
// request whose body (if any) came with its head, answered with a
// Content-Length body that fits in a read buffer. Everything else (a
// streamed or chunked body, 100-continue, an upgrade, a failure to retry,
// a connection to dial again) is handed to a goroutine running the same
// relay code as without the loop, and the connection comes back to the loop
// when that request is over.
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
// (net.FileConn) only while a goroutine has them.
type loop struct {
	b      *Balancer
	ep     int
	epf    *os.File // ep, in Go's poller
	eprc   syscall.RawConn
	wakeFd int // an eventfd: post wakes the loop
	events []syscall.EpollEvent

	mu      sync.Mutex
	inbox   []func()
	stopped bool

	// Loop-only state.
	fds     []*lconn // registered connections by descriptor
	clients map[*clientConn]struct{}
	idle    map[*backend][]*bconn // keep-alive pools of the loop's backend connections
	quit    bool
	sweepAt int64
	gen     int32
	// While a batch of events is handled, writes are queued (corked) and
	// made after it, together: a backend or client woken by the first
	// finds the others ready too.
	corked bool
	dirty  []*lconn
}

// How often the loop checks deadlines and its pools.
const sweepEvery = 50 * time.Millisecond

// Phases of a client connection the loop owns.
const (
	phRead    = iota // waiting for a request head
	phConnect        // dialling its backend
	phAwait          // waiting for the answer
	phFlush          // the answer is written in part: the rest waits
	phClose          // closing once the last answer is written
	phAway           // a goroutine has it, or it is closed
)

var errAgain = errors.New("try again when ready")

func newLoop(b *Balancer) (*loop, error) {
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	r, _, e := syscall.RawSyscall(syscall.SYS_EVENTFD2, 0, syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if e != 0 {
		syscall.Close(ep)
		return nil, os.NewSyscallError("eventfd2", e)
	}
	l := &loop{
		b: b, ep: ep, wakeFd: int(r),
		events:  make([]syscall.EpollEvent, 256),
		clients: make(map[*clientConn]struct{}),
		idle:    make(map[*backend][]*bconn),
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(l.wakeFd), Pad: -1}
	if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, l.wakeFd, &ev); err != nil {
		syscall.Close(ep)
		syscall.Close(l.wakeFd)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	// The loop waits for its epoll instance in Go's poller (an epoll
	// descriptor is readable when it has events), so that an idle loop
	// holds no P and no thread: blocked in epoll_wait instead, it kept a P
	// in its system call, and the goroutines relaying uploads had one P
	// fewer.
	_ = syscall.SetNonblock(ep, true)
	l.epf = os.NewFile(uintptr(ep), "epoll")
	rc, err := l.epf.SyscallConn()
	if err != nil || l.epf.SetReadDeadline(time.Time{}) != nil {
		l.epf.Close()
		syscall.Close(l.wakeFd)
		return nil, errors.New("epoll descriptor not pollable")
	}
	l.eprc = rc
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
		one := uint64(1)
		syscall.Write(l.wakeFd, (*[8]byte)(unsafe.Pointer(&one))[:])
	}
	return true
}

// stop ends the loop: it closes what it still owns.
func (l *loop) stop() { l.post(func() { l.quit = true }) }

// accept takes a new client connection c: a duplicate of its socket joins
// the loop and c is closed. false: the loop cannot take it.
func (l *loop) accept(cc *clientConn, c net.Conn) bool {
	rc, ok := rawConnOf(c)
	if !ok {
		return false
	}
	fd, err := -1, error(nil)
	if cerr := rc.Control(func(s uintptr) { fd, err = dupCloexec(int(s)) }); cerr != nil || err != nil {
		return false
	}
	lc := &lconn{fd: fd, laddr: c.LocalAddr(), raddr: c.RemoteAddr(), cc: cc}
	c.Close()
	cc.c, cc.br = lc, getReader(lc)
	if !l.post(func() { l.adopt(cc) }) {
		lc.Close()
		return false
	}
	return true
}

func dupCloexec(fd int) (int, error) {
	r, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_DUPFD_CLOEXEC, 0)
	if e != 0 {
		return -1, os.NewSyscallError("fcntl", e)
	}
	return int(r), nil
}

// shutdown closes the client connections waiting for a request (or for
// the rest of its head), as Shutdown does without the loop; the others
// close after their answer (respond sees Balancer.shutting).
func (l *loop) shutdown() {
	l.post(func() {
		for cc := range l.clients {
			if cc.phase == phRead {
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

// closeIdle closes the loop's idle backend connections.
func (l *loop) closeIdle() {
	l.post(func() {
		for be, pool := range l.idle {
			for _, bc := range pool {
				bc.close()
			}
			delete(l.idle, be)
		}
	})
}

func (l *loop) run() {
	runtime.LockOSThread()
	defer l.exit()
	for !l.quit {
		n := l.wait()
		l.corked = true
		for _, ev := range l.events[:n] {
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
	for _, pool := range l.idle {
		for _, bc := range pool {
			bc.close()
		}
	}
	syscall.Close(l.wakeFd)
	l.epf.Close()
}

// wait returns the next batch of events. A non-blocking look first, as a
// raw system call: when busy there is always something, and the Go
// scheduler need not hand the thread's P over. When there is nothing, the
// goroutine parks in Go's poller until there is, or until the next sweep.
func (l *loop) wait() int {
	if n := l.poll(); n > 0 {
		return n
	}
	deadline := time.Time{}
	if len(l.clients) > 0 || len(l.idle) > 0 {
		deadline = time.Now().Add(sweepEvery)
	}
	_ = l.epf.SetReadDeadline(deadline)
	n := 0
	_ = l.eprc.Read(func(uintptr) bool { // a deadline ends it with an error
		n = l.poll()
		return n > 0
	})
	return n
}

// poll returns the events that are ready, without waiting.
func (l *loop) poll() int {
	n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(l.ep),
		uintptr(unsafe.Pointer(&l.events[0])), uintptr(len(l.events)), 0, 0, 0)
	if e != 0 {
		return 0 // EINTR
	}
	return int(n)
}

func (l *loop) dispatch(ev syscall.EpollEvent) {
	fd := int(ev.Fd)
	if ev.Pad == -1 && fd == l.wakeFd {
		var buf [8]byte
		syscall.Read(l.wakeFd, buf[:])
		l.mu.Lock()
		inbox := l.inbox
		l.inbox = nil
		l.mu.Unlock()
		for _, f := range inbox {
			f()
		}
		return
	}
	if fd >= len(l.fds) {
		return
	}
	lc := l.fds[fd]
	if lc == nil || lc.gen != ev.Pad {
		return
	}
	if ev.Events&(syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
		lc.hup = true // edge-triggered: this is said once
	}
	if ev.Events&(syscall.EPOLLIN|syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
		lc.drained = false
	}
	if lc.connecting {
		if ev.Events&(syscall.EPOLLOUT|syscall.EPOLLERR|syscall.EPOLLHUP) != 0 {
			l.connected(lc)
		}
		return
	}
	if ev.Events&(syscall.EPOLLOUT|syscall.EPOLLERR|syscall.EPOLLHUP) != 0 && lc.waiting() {
		l.flush(lc)
		if l.fds[fd] != lc {
			return // closed or handed over
		}
	}
	if ev.Events&(syscall.EPOLLIN|syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) == 0 {
		return
	}
	cc := lc.cc
	switch {
	case lc.bc == nil:
		if cc.phase == phRead {
			l.readRequest(cc)
		}
	case cc != nil && cc.lbc == lc.bc && cc.phase == phAwait:
		l.answer(cc)
	case cc == nil && ev.Events&(syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0:
		l.dropIdle(lc.bc) // the backend closed a pooled connection
	}
}

// register adds lc to the loop's epoll instance.
func (l *loop) register(lc *lconn) error {
	for lc.fd >= len(l.fds) {
		l.fds = append(l.fds, make([]*lconn, len(l.fds)+64)...)
	}
	l.gen++ // tells this registration's events from a closed predecessor's on the same descriptor
	if l.gen == -1 {
		l.gen = 0 // -1 is the wake-up descriptor's
	}
	lc.gen = l.gen
	ev := syscall.EpollEvent{
		Events: syscall.EPOLLIN | syscall.EPOLLOUT | syscall.EPOLLRDHUP | epollET,
		Fd:     int32(lc.fd), Pad: lc.gen,
	}
	if err := syscall.EpollCtl(l.ep, syscall.EPOLL_CTL_ADD, lc.fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	l.fds[lc.fd], lc.l = lc, l
	return nil
}

// release takes lc out of the loop and makes it a Go connection again,
// for a goroutine.
func (l *loop) release(lc *lconn) error {
	if lc.l != nil {
		_ = syscall.EpollCtl(l.ep, syscall.EPOLL_CTL_DEL, lc.fd, nil)
		l.fds[lc.fd], lc.l = nil, nil
	}
	fd, err := dupCloexec(lc.fd)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), "")
	gc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return err
	}
	lc.gc = newSock(gc)
	return nil
}

// adopt makes the loop the owner of cc: a new connection, or one whose
// goroutine is done with its request.
func (l *loop) adopt(cc *clientConn) {
	lc := cc.c.(*lconn)
	if lc.gc != nil {
		lc.gc.Close()
		lc.gc = nil
	}
	if l.quit || l.register(lc) != nil {
		cc.finish()
		return
	}
	l.clients[cc] = struct{}{}
	cc.looped.Store(true)
	l.next(cc)
}

// next waits for cc's next request, reading any that is already there.
func (l *loop) next(cc *clientConn) {
	if cc.c.(*lconn).waiting() {
		cc.phase = phFlush
		return
	}
	cc.phase = phRead
	cc.due = dueIn(l.b.cfg.ClientIdleTimeout)
	l.readRequest(cc)
}

func (l *loop) readRequest(cc *clientConn) {
	lc := cc.c.(*lconn)
	for cc.phase == phRead {
		err := errAgain
		if cc.br.Buffered() > 0 || !lc.drained {
			err = readHead(cc.br, &cc.req, true)
		}
		if err == errAgain {
			idle := cc.br.Buffered() == 0
			cc.idle.Store(idle)
			if idle && l.b.shutting.Load() {
				l.closeClient(cc)
			}
			return
		}
		cc.idle.Store(false)
		if err != nil {
			cc.badHead(err)
			l.closeWhenFlushed(cc)
			return
		}
		l.start(cc)
	}
}

// start relays the request in cc.req: from the loop when its body came with
// its head, from a goroutine otherwise.
func (l *loop) start(cc *clientConn) {
	st := &cc.lst
	cc.prepare(st)
	if !st.bodyInOut {
		l.handOver(cc, nil, func() bool {
			status, err := cc.attempt(st)
			return cc.settle(st, status, err)
		})
		return
	}
	be, err := cc.choose(st) // without a cap on backends, it does not wait
	if err != nil {
		l.ended(cc, cc.settle(st, 0, err)) // no backend: nothing to retry
		return
	}
	st.begin(be)
	if bc := l.pooled(be); bc != nil {
		l.send(cc, bc)
	} else {
		l.dial(cc, be)
	}
}

// ended moves on after a request: to the next, or to closing.
func (l *loop) ended(cc *clientConn, more bool) {
	if more {
		l.next(cc)
	} else {
		l.closeWhenFlushed(cc)
	}
}

// pooled returns an idle connection of the loop's to be, or nil.
func (l *loop) pooled(be *backend) *bconn {
	pool := l.idle[be]
	for len(pool) > 0 {
		bc := pool[len(pool)-1]
		pool[len(pool)-1] = nil
		pool = pool[:len(pool)-1]
		if time.Since(bc.idleSince) < be.idleTimeout && !be.retired.Load() && !bc.c.(*lconn).hup {
			l.idle[be] = pool
			bc.reused = true
			return bc
		}
		bc.close()
	}
	delete(l.idle, be)
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
	be := bc.be
	pool := l.idle[be]
	if lc := bc.c.(*lconn); be.retired.Load() || len(pool) >= be.maxIdle || lc.hup || lc.waiting() {
		bc.close()
		return
	}
	bc.idleSince = time.Now()
	bc.c.(*lconn).cc = nil
	l.idle[be] = append(pool, bc)
}

// dropIdle closes a pooled connection the backend closed.
func (l *loop) dropIdle(bc *bconn) {
	pool := l.idle[bc.be]
	for i, p := range pool {
		if p == bc {
			l.idle[bc.be] = slices.Delete(pool, i, i+1)
			bc.close()
			return
		}
	}
}

// dial connects to be for cc's request, without waiting.
func (l *loop) dial(cc *clientConn, be *backend) {
	st := &cc.lst
	fd, err := dialNonblock(be.addr)
	if err != nil && err != syscall.EINPROGRESS {
		if fd >= 0 {
			syscall.Close(fd)
		}
		err = &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(be.addr), Err: os.NewSyscallError("connect", err)}
		l.dialFailed(cc, nil, be, err)
		return
	}
	lc := &lconn{fd: fd, raddr: net.TCPAddrFromAddrPort(be.addr), cc: cc, connecting: true}
	bc := &bconn{be: be, c: lc, loop: l}
	bc.br, lc.bc = getReader(lc), bc
	st.bc, cc.lbc = bc, bc
	if err := l.register(lc); err != nil {
		l.dialFailed(cc, bc, be, err)
		return
	}
	cc.phase = phConnect
	cc.due = dueIn(l.b.cfg.DialTimeout)
	if err == nil {
		l.connected(lc)
	}
}

// dialNonblock starts connecting a new non-blocking socket to ap, with the
// options Go's dialer sets (no Nagle, keep-alive probes after 30 s).
func dialNonblock(ap netip.AddrPort) (int, error) {
	family, addr := syscall.AF_INET, ap.Addr().Unmap()
	var sa syscall.Sockaddr = &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: addr.As4()}
	if !addr.Is4() {
		family, sa = syscall.AF_INET6, &syscall.SockaddrInet6{Port: int(ap.Port()), Addr: addr.As16()}
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1)
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, 30)
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, 30)
	return fd, syscall.Connect(fd, sa)
}

// connected continues cc's request once its new connection is up, or
// failed.
func (l *loop) connected(lc *lconn) {
	lc.connecting = false
	cc, bc := lc.cc, lc.bc
	errno, err := syscall.GetsockoptInt(lc.fd, syscall.SOL_SOCKET, syscall.SO_ERROR)
	if err == nil && errno != 0 {
		err = os.NewSyscallError("connect", syscall.Errno(errno))
	}
	if err != nil {
		l.dialFailed(cc, bc, bc.be, &net.OpError{Op: "dial", Net: "tcp", Addr: lc.raddr, Err: err})
		return
	}
	if sa, err := syscall.Getsockname(lc.fd); err == nil {
		lc.laddr = sockaddrToTCP(sa)
	}
	l.send(cc, bc)
}

// send writes cc's request to bc.
func (l *loop) send(cc *clientConn, bc *bconn) {
	st, be, lc := &cc.lst, bc.be, bc.c.(*lconn)
	st.bc, cc.lbc, lc.cc = bc, bc, cc
	if bc.reused && !st.retryable && !lc.quiet() {
		// A request that must not be sent twice waits for a new connection.
		l.abandon(cc, bc, func() (int, error) { return cc.unstale(st, be, 0, errStale) })
		return
	}
	if _, err := lc.Write(cc.out); err != nil {
		l.sendFailed(cc, bc, err)
		return
	}
	cc.phase = phAwait
	cc.due = dueIn(l.b.cfg.ResponseHeaderTimeout)
}

// answer reads the answer to cc's request and relays it when it is all
// here; an answer the loop does not relay itself goes to a goroutine.
func (l *loop) answer(cc *clientConn) {
	st, bc, resp := &cc.lst, cc.lbc, &cc.resp
	err := readHead(bc.br, resp, false)
	if err == errAgain {
		return
	}
	total := resp.size
	simple := err == nil && resp.status >= 200 && resp.status != 101
	if simple && !resp.bodyless(cc.req.line[0]) {
		simple = !resp.chunked && resp.contentLength >= 0 && resp.contentLength <= int64(bc.br.Size()-resp.size)
		total += int(resp.contentLength)
	}
	if simple && bc.br.Buffered() < total {
		cc.due = 0 // the head is here: no deadline for the body, as without the loop
		_, err := bc.br.Peek(total)
		if err == errAgain {
			return
		}
		simple = err == nil
	}
	if !simple {
		// The goroutine reads the head again from the buffer (or the
		// same error) and takes it from there.
		l.resume(cc, bc, func() (int, error) {
			status, err := cc.receive(st, bc.be, bc)
			return cc.unstale(st, bc.be, status, err)
		})
		return
	}
	cc.lbc = nil
	status, err := cc.respond(st, bc) // all buffered: one write, which does not wait
	if err != nil {
		bc.close()
	}
	bc.be.done()
	l.ended(cc, cc.settle(st, status, err)) // only a client gone can fail here: no retry
}

// abandon closes bc, if any, on which cc's attempt failed, and hands the
// request to a goroutine that settles it with f's result: a retry, or an
// error answer.
func (l *loop) abandon(cc *clientConn, bc *bconn, f func() (int, error)) {
	if bc != nil {
		bc.close()
	}
	cc.lbc = nil
	l.resume(cc, nil, f)
}

// dialFailed abandons an attempt whose connection to be failed.
func (l *loop) dialFailed(cc *clientConn, bc *bconn, be *backend, err error) {
	l.abandon(cc, bc, func() (int, error) { return 0, cc.connectFailed(be, err) })
}

// sendFailed abandons an attempt whose request did not all go out on bc:
// on a reused connection nothing of it was processed (stale), otherwise
// bc's backend failed.
func (l *loop) sendFailed(cc *clientConn, bc *bconn, err error) {
	st := &cc.lst
	if bc.reused {
		err = errStale
	} else {
		err = cc.backendFailed(bc.be, bc, err)
	}
	l.abandon(cc, bc, func() (int, error) { return cc.unstale(st, bc.be, 0, err) })
}

// resume hands cc's request, whose attempt began on the loop, to a
// goroutine that runs f (the rest of the attempt) and settles it. bc, if
// not nil, is the backend connection it continues on.
func (l *loop) resume(cc *clientConn, bc *bconn, f func() (int, error)) {
	st := &cc.lst
	be := st.be
	if bc != nil {
		bc.deadline.at = time.Time{}
		if err := l.release(bc.c.(*lconn)); err != nil {
			l.closeClient(cc) // and bc, ending the attempt
			return
		}
	}
	cc.lbc = nil
	l.handOver(cc, be, func() bool {
		status, err := f()
		if be != nil {
			be.done()
		}
		return cc.settle(st, status, err)
	})
}

// handOver gives cc to a goroutine that runs f, then gives it back to the
// loop if f reports the connection may serve another request. be, if not
// nil, has an attempt in flight to end should that fail.
func (l *loop) handOver(cc *clientConn, be *backend, f func() bool) {
	lc := cc.c.(*lconn)
	delete(l.clients, cc)
	cc.phase = phAway
	if err := l.release(lc); err != nil {
		if be != nil {
			be.done()
		}
		cc.finish()
		return
	}
	cc.deadline.at = time.Time{}
	cc.looped.Store(false)
	go func() {
		if f() && !l.b.shutting.Load() && l.post(func() { l.adopt(cc) }) {
			return
		}
		cc.finish()
	}()
}

// flush writes what lc has pending; once all is written, the client it
// is waits for its next request, or closes.
func (l *loop) flush(lc *lconn) {
	if err := lc.flush(); err != nil {
		if lc.bc == nil {
			l.closeClient(lc.cc)
		} else if cc := lc.cc; cc != nil && cc.lbc == lc.bc {
			l.sendFailed(cc, lc.bc, err) // the request did not all go out
		}
		return
	}
	if lc.waiting() || lc.bc != nil {
		return
	}
	switch cc := lc.cc; cc.phase {
	case phFlush:
		l.next(cc)
	case phClose:
		l.closeClient(cc)
	}
}

// closeWhenFlushed closes cc once what it has pending is written.
func (l *loop) closeWhenFlushed(cc *clientConn) {
	if !cc.c.(*lconn).waiting() {
		l.closeClient(cc)
		return
	}
	cc.phase = phClose
	cc.due = 0
}

// closeClient closes cc, ending the attempt it has in flight.
func (l *loop) closeClient(cc *clientConn) {
	if bc := cc.lbc; bc != nil {
		cc.lbc = nil
		bc.close()
		bc.be.done()
	}
	delete(l.clients, cc)
	cc.phase = phAway
	cc.looped.Store(false)
	cc.finish()
}

// dueIn returns when a phase that may last t times out, in unix
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
		if cc.due == 0 || now < cc.due {
			continue
		}
		switch cc.phase {
		case phRead: // the client idle timeout
			l.closeClient(cc)
		case phConnect: // the connect timeout
			bc := cc.lbc
			l.dialFailed(cc, bc, bc.be, &net.OpError{Op: "dial", Net: "tcp", Addr: bc.c.RemoteAddr(), Err: os.ErrDeadlineExceeded})
		case phAwait: // the response header timeout
			bc := cc.lbc
			err := cc.backendFailed(bc.be, bc, &net.OpError{Op: "read", Net: "tcp", Addr: bc.c.RemoteAddr(), Err: os.ErrDeadlineExceeded})
			l.abandon(cc, bc, func() (int, error) { return 0, err })
		}
	}
	for be, pool := range l.idle {
		kept := pool[:0]
		for _, bc := range pool {
			if be.retired.Load() || now-bc.idleSince.UnixNano() >= int64(be.idleTimeout) {
				bc.close()
				continue
			}
			kept = append(kept, bc)
		}
		clear(pool[len(kept):])
		if len(kept) == 0 {
			delete(l.idle, be)
		} else {
			l.idle[be] = kept
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
	drained      bool        // the last read took all there was, and no event came since
	cc           *clientConn // the client connection it is, or serves
	bc           *bconn      // set for a backend connection
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
	n, e := rawCall(syscall.SYS_READ, uintptr(c.fd), p)
	switch {
	case e == syscall.EAGAIN:
		c.drained = true
		return 0, errAgain
	case e != 0:
		c.err = c.opError("read", os.NewSyscallError("read", e))
	case n == 0:
		c.err = io.EOF
	default:
		// A read that did not fill p took all there was: more data will
		// come with an event (edge-triggered), so the loop need not read
		// again, only to be told to try later.
		c.drained = n < len(p)
		return n, nil
	}
	return 0, c.err
}

func (c *lconn) Write(p []byte) (int, error) {
	if c.gc != nil {
		return c.gc.Write(p)
	}
	if c.closed.Load() {
		return 0, c.opError("write", net.ErrClosed)
	}
	if c.waiting() || c.l != nil && c.l.corked {
		c.pending = append(c.pending, p...)
		if c.l != nil && c.l.corked && !c.dirty {
			c.dirty = true
			c.l.dirty = append(c.l.dirty, c)
		}
		return len(p), nil
	}
	switch n, e := rawWrite(uintptr(c.fd), p); e {
	case 0:
	case syscall.EAGAIN:
		c.pending = append(c.pending[:0], p[n:]...)
	default:
		return n, c.opError("write", os.NewSyscallError("write", e))
	}
	return len(p), nil
}

// waiting reports whether written bytes wait to be flushed.
func (c *lconn) waiting() bool { return c.sent < len(c.pending) }

// flush writes what is pending, as far as the socket takes it.
func (c *lconn) flush() error {
	n, e := rawWrite(uintptr(c.fd), c.pending[c.sent:])
	c.sent += n
	switch e {
	case 0:
	case syscall.EAGAIN:
		return nil
	default:
		return c.opError("write", os.NewSyscallError("write", e))
	}
	c.sent = 0
	if cap(c.pending) > 4<<10 {
		c.pending = nil // a large answer's buffer is not kept
	} else {
		c.pending = c.pending[:0]
	}
	return nil
}

// quiet reports whether the peer has neither closed the connection nor
// sent anything unread.
func (c *lconn) quiet() bool {
	if c.gc != nil {
		q, ok := c.gc.(quieter)
		return !ok || q.quiet()
	}
	return quietFd(c.fd)
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
		c.l.fds[c.fd] = nil // closing the descriptor takes it out of epoll
	}
	return syscall.Close(c.fd)
}

func (c *lconn) CloseWrite() error {
	if cw, ok := c.gc.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return syscall.Shutdown(c.fd, syscall.SHUT_WR)
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

func sockaddrToTCP(sa syscall.Sockaddr) net.Addr {
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		return &net.TCPAddr{IP: sa.Addr[:], Port: sa.Port}
	case *syscall.SockaddrInet6:
		return &net.TCPAddr{IP: sa.Addr[:], Port: sa.Port}
	}
	return nil
}

const epollET = 1 << 31 // syscall.EPOLLET is negative
