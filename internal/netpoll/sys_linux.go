//go:build linux

package netpoll

import (
	"io"
	"net"
	"net/netip"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawCall makes one read or write system call on fd, again after EINTR.
func rawCall(trap uintptr, fd int, b []byte) (int, unix.Errno) {
	for {
		n, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		if e != unix.EINTR {
			return int(n), e
		}
	}
}

// Read reads into p from the non-blocking descriptor fd with one raw system
// call: n > 0 bytes, or io.EOF at the end of input, ErrAgain when nothing is
// there yet, or the call's error.
func Read(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, e := rawCall(unix.SYS_READ, fd, p)
	switch {
	case e == unix.EAGAIN:
		return 0, ErrAgain
	case e != 0:
		return 0, os.NewSyscallError("read", e)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes p to the non-blocking descriptor fd until all of it is
// written (nil), the socket is full (ErrAgain), or a call fails; n is how
// much was written.
func Write(fd int, p []byte) (n int, err error) {
	for n < len(p) {
		m, e := rawCall(unix.SYS_WRITE, fd, p[n:])
		switch e {
		case 0:
			n += m
		case unix.EAGAIN:
			return n, ErrAgain
		default:
			return n, os.NewSyscallError("write", e)
		}
	}
	return n, nil
}

// Quiet reports whether the peer of the socket fd has neither closed the
// connection nor sent anything unread: one non-blocking peek.
func Quiet(fd int) bool {
	var b [1]byte
	n, _, err := unix.Recvfrom(fd, b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	return n < 0 && err == unix.EAGAIN
}

// Dup returns a close-on-exec duplicate of fd.
func Dup(fd int) (int, error) {
	d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("fcntl", err)
	}
	return d, nil
}

// Close closes fd (and so takes it out of any Poller).
func Close(fd int) error { return unix.Close(fd) }

// CloseWrite shuts down the writing side of the socket fd.
func CloseWrite(fd int) error { return unix.Shutdown(fd, unix.SHUT_WR) }

// Dial starts connecting a new non-blocking TCP socket to ap, with the
// options Go's dialer sets (no Nagle, keep-alive probes after 30 s). With
// pending, the connection completes later: the socket's first output event
// says so, and ConnectResult tells how it went.
func Dial(ap netip.AddrPort) (fd int, pending bool, err error) {
	family, addr := unix.AF_INET, ap.Addr().Unmap()
	var sa unix.Sockaddr = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: addr.As4()}
	if !addr.Is4() {
		family, sa = unix.AF_INET6, &unix.SockaddrInet6{Port: int(ap.Port()), Addr: addr.As16()}
	}
	fd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, false, os.NewSyscallError("socket", err)
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 30)
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 30)
	switch err = unix.Connect(fd, sa); err {
	case nil:
		return fd, false, nil
	case unix.EINPROGRESS:
		return fd, true, nil
	}
	unix.Close(fd)
	return -1, false, os.NewSyscallError("connect", err)
}

// ConnectResult reports how a connection Dial left pending ended: nil when
// it is up.
func ConnectResult(fd int) error {
	errno, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	switch {
	case err != nil:
		return os.NewSyscallError("getsockopt", err)
	case errno != 0:
		return os.NewSyscallError("connect", unix.Errno(errno))
	}
	return nil
}

// LocalAddr is the local address of the socket fd, or nil.
func LocalAddr(fd int) net.Addr {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return nil
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: sa.Addr[:], Port: sa.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: sa.Addr[:], Port: sa.Port}
	}
	return nil
}
