package balancer

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// sock is a TCP connection whose reads and writes are made with raw system
// calls on its non-blocking socket, still waiting on Go's network poller
// (and so honouring deadlines) when the socket is not ready.
//
// A raw system call does not tell the Go scheduler that the thread is in a
// system call. Reads and writes of a non-blocking socket never block, so
// nothing is lost; what is gained is on a busy machine: when the kernel
// preempts a thread in the middle of one, the runtime no longer hands the
// thread's P to another thread (waking it, and later putting the first one
// back to sleep), churn that cost the gateway CPU and added to its tail
// latency (docs/http.md, Performance).
type sock struct {
	net.Conn
	rc syscall.RawConn

	// One read and one write may be under way at once; each has its own
	// state, and a callback made once so that no call allocates.
	rbuf   []byte
	rn     int
	rerrno syscall.Errno
	readFn func(fd uintptr) bool

	wbuf    []byte
	wn      int
	werrno  syscall.Errno
	writeFn func(fd uintptr) bool
}

// newSock wraps c, or returns c itself when it has no socket to reach.
func newSock(c net.Conn) net.Conn {
	rc, ok := rawConnOf(c)
	if !ok {
		return c
	}
	s := &sock{Conn: c, rc: rc}
	s.readFn, s.writeFn = s.read, s.write
	return s
}

// rawConnOf returns c's socket, when it has one to reach.
func rawConnOf(c net.Conn) (syscall.RawConn, bool) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, false
	}
	rc, err := sc.SyscallConn()
	return rc, err == nil
}

// rawCall makes one read or write system call on fd, again after EINTR.
func rawCall(trap, fd uintptr, b []byte) (int, syscall.Errno) {
	for {
		n, _, e := syscall.RawSyscall(trap, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		if e != syscall.EINTR {
			return int(n), e
		}
	}
}

func (s *sock) read(fd uintptr) bool {
	n, e := rawCall(syscall.SYS_READ, fd, s.rbuf)
	switch e {
	case 0:
		s.rn = n
	case syscall.EAGAIN:
		return false // wait until readable
	default:
		s.rerrno = e
	}
	return true
}

func (s *sock) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.rbuf, s.rn, s.rerrno = p, 0, 0
	err := s.result("read", s.rc.Read(s.readFn), s.rerrno)
	s.rbuf = nil
	switch {
	case err != nil:
		return 0, err
	case s.rn == 0:
		return 0, io.EOF
	}
	return s.rn, nil
}

// rawWrite writes b to fd until all of it is written, the socket is full
// (syscall.EAGAIN) or the write fails; n is how much was written.
func rawWrite(fd uintptr, b []byte) (n int, e syscall.Errno) {
	for n < len(b) {
		m, e := rawCall(syscall.SYS_WRITE, fd, b[n:])
		if e != 0 {
			return n, e
		}
		n += m
	}
	return n, 0
}

func (s *sock) write(fd uintptr) bool {
	n, e := rawWrite(fd, s.wbuf[s.wn:])
	s.wn += n
	if e == syscall.EAGAIN {
		return false // wait until writable
	}
	s.werrno = e
	return true
}

func (s *sock) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.wbuf, s.wn, s.werrno = p, 0, 0
	err := s.result("write", s.rc.Write(s.writeFn), s.werrno)
	s.wbuf = nil
	return s.wn, err
}

// result reports a call's failure as the net package would for the same
// call, or nil: err is the poller's (a deadline, a closed connection),
// errno the system call's (a reset is a syscall.ECONNRESET inside).
func (s *sock) result(op string, err error, errno syscall.Errno) error {
	switch {
	case err != nil:
		if oe, ok := err.(*net.OpError); ok {
			err = oe.Err
		}
	case errno != 0:
		err = os.NewSyscallError(op, errno)
	default:
		return nil
	}
	return &net.OpError{Op: op, Net: "tcp", Source: s.LocalAddr(), Addr: s.RemoteAddr(), Err: err}
}

// quiet reports whether the peer has neither closed the connection nor
// sent anything unread: one non-blocking peek.
func (s *sock) quiet() bool {
	q := false
	if err := s.rc.Read(func(fd uintptr) bool {
		q = quietFd(int(fd))
		return true
	}); err != nil {
		return false
	}
	return q
}

// quietFd is quiet's peek on a socket descriptor.
func quietFd(fd int) bool {
	var b [1]byte
	n, _, err := syscall.Recvfrom(fd, b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return n < 0 && err == syscall.EAGAIN
}

// quieter is a connection that can tell whether its peer is quiet.
type quieter interface{ quiet() bool }

// CloseWrite shuts down the writing side, as net.TCPConn's does.
func (s *sock) CloseWrite() error {
	if cw, ok := s.Conn.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return nil
}
