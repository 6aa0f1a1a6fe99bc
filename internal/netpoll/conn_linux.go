//go:build linux

package netpoll

import (
	"io"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// conn is a TCP connection whose reads and writes are raw system calls on
// its non-blocking socket, still waiting in Go's network poller (and so
// honouring deadlines) when the socket is not ready. See the package
// documentation for why.
type conn struct {
	net.Conn
	rc syscall.RawConn

	// One read and one write may be under way at once; each has its own
	// state, and a callback made once, so that no call allocates.
	rbuf   []byte
	rn     int
	rerr   error
	readFn func(fd uintptr) bool

	wbuf    []byte
	wn      int
	werr    error
	writeFn func(fd uintptr) bool

	peekFn func(fd uintptr) bool
}

// Wrap returns c reading and writing with raw system calls, or c itself when
// it has no socket to reach. The result also has Quiet() bool and
// CloseWrite() error.
func Wrap(c net.Conn) net.Conn {
	rc, ok := rawConnOf(c)
	if !ok {
		return c
	}
	s := &conn{Conn: c, rc: rc}
	s.readFn, s.writeFn, s.peekFn = s.read, s.write, s.peek
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

// DupConn returns a close-on-exec duplicate of c's socket, for a Poller.
func DupConn(c net.Conn) (int, error) {
	rc, ok := rawConnOf(c)
	if !ok {
		return -1, ErrUnsupported
	}
	fd, err := -1, error(nil)
	if cerr := rc.Control(func(s uintptr) { fd, err = Dup(int(s)) }); cerr != nil {
		return -1, cerr
	}
	return fd, err
}

// FileConn returns a Go connection to a duplicate of the socket fd, as Wrap
// makes them; fd itself stays open.
func FileConn(fd int) (net.Conn, error) {
	d, err := Dup(fd)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(d), "")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}

func (s *conn) read(fd uintptr) bool {
	s.rn, s.rerr = Read(int(fd), s.rbuf)
	return s.rerr != ErrAgain // ErrAgain: wait until readable
}

func (s *conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.rbuf, s.rn, s.rerr = p, 0, nil
	err := s.rc.Read(s.readFn)
	s.rbuf = nil
	if err == nil && s.rerr == io.EOF {
		return 0, io.EOF
	}
	if err = s.result("read", err, s.rerr); err != nil {
		return 0, err
	}
	return s.rn, nil
}

func (s *conn) write(fd uintptr) bool {
	n, err := Write(int(fd), s.wbuf[s.wn:])
	s.wn += n
	s.werr = err
	return err != ErrAgain // ErrAgain: wait until writable
}

func (s *conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.wbuf, s.wn, s.werr = p, 0, nil
	err := s.result("write", s.rc.Write(s.writeFn), s.werr)
	s.wbuf = nil
	return s.wn, err
}

// result reports a call's failure as the net package would for the same
// call, or nil: err is the poller's (a deadline, a closed connection),
// callErr the system call's (a reset is a syscall.ECONNRESET inside).
func (s *conn) result(op string, err, callErr error) error {
	switch {
	case err != nil:
		if oe, ok := err.(*net.OpError); ok {
			err = oe.Err
		}
	case callErr != nil:
		err = callErr
	default:
		return nil
	}
	return &net.OpError{Op: op, Net: "tcp", Source: s.LocalAddr(), Addr: s.RemoteAddr(), Err: err}
}

func (s *conn) peek(fd uintptr) bool {
	var b [1]byte
	_, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	return err != unix.EAGAIN // data, the end, or an error: Read will tell
}

// WaitRead waits until the connection has something to read (or its peer
// closed it, or it failed), without reading it, or until the read deadline
// passes: a caller can wait for a request with no buffer.
func (s *conn) WaitRead() error {
	return s.result("read", s.rc.Read(s.peekFn), nil)
}

// Quiet reports whether the peer has neither closed the connection nor sent
// anything unread: one non-blocking peek.
func (s *conn) Quiet() bool {
	q := false
	if err := s.rc.Read(func(fd uintptr) bool {
		q = Quiet(int(fd))
		return true
	}); err != nil {
		return false
	}
	return q
}

// CloseWrite shuts down the writing side, as net.TCPConn's does.
func (s *conn) CloseWrite() error {
	if cw, ok := s.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
