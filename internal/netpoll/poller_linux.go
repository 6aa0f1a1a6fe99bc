//go:build linux

package netpoll

import (
	"errors"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Poller is an edge-triggered epoll instance with a wake-up descriptor. One
// goroutine waits on it (Wait); any goroutine may Wake it.
//
// An idle Poller holds no thread: when nothing is ready, Wait parks its
// goroutine in Go's network poller, in which the epoll descriptor itself is
// registered (an epoll descriptor is readable when it has events). Blocked
// in epoll_wait instead, the waiting thread would keep a P inside its system
// call, one P fewer for every other goroutine of the process.
type Poller struct {
	fd     int
	file   *os.File // fd, registered in Go's poller
	rc     syscall.RawConn
	wakeFd int // an eventfd: Wake writes it, Wait drains it
	raw    []unix.EpollEvent
	events []Event
}

// wakeTag marks the wake-up descriptor's events.
const wakeTag = -1

// New returns a Poller that reports up to size events per Wait.
func New(size int) (*Poller, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	p := &Poller{fd: fd, wakeFd: wake, raw: make([]unix.EpollEvent, size), events: make([]Event, 0, size)}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake), Pad: wakeTag}
	if err := unix.EpollCtl(fd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(fd)
		unix.Close(wake)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	_ = unix.SetNonblock(fd, true)
	p.file = os.NewFile(uintptr(fd), "epoll")
	rc, err := p.file.SyscallConn()
	if err != nil || p.file.SetReadDeadline(time.Time{}) != nil {
		p.file.Close()
		unix.Close(wake)
		return nil, errors.New("netpoll: epoll descriptor not pollable")
	}
	p.rc = rc
	return p, nil
}

// Add registers fd, edge-triggered, for input, output and the peer's
// half-close; its events carry tag. A tag of -1 is reserved.
func (p *Poller) Add(fd int, tag int32) error {
	ev := unix.EpollEvent{
		Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET,
		Fd:     int32(fd), Pad: tag,
	}
	if err := unix.EpollCtl(p.fd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

// Remove unregisters fd. Closing a descriptor unregisters it too.
func (p *Poller) Remove(fd int) error {
	if err := unix.EpollCtl(p.fd, unix.EPOLL_CTL_DEL, fd, nil); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

// Wake makes the current or next Wait return with woken set. Safe from any
// goroutine; wake-ups before a Wait collapse into one.
func (p *Poller) Wake() {
	one := uint64(1)
	_, _ = Write(p.wakeFd, (*[8]byte)(unsafe.Pointer(&one))[:])
}

// Wait returns the descriptors that are ready, waiting up to timeout for one
// (0: not at all; negative: without limit), and whether Wake was called. The
// events are valid until the next Wait.
//
// It first looks without waiting, as a raw system call: when the process is
// busy there is always something, and the Go scheduler need not hand the
// thread's P over. Only when nothing is ready does it park.
func (p *Poller) Wait(timeout time.Duration) (events []Event, woken bool) {
	n := p.poll()
	if n == 0 && timeout != 0 {
		deadline := time.Time{}
		if timeout > 0 {
			deadline = time.Now().Add(timeout)
		}
		_ = p.file.SetReadDeadline(deadline)
		_ = p.rc.Read(func(uintptr) bool { // the deadline ends it with an error
			n = p.poll()
			return n > 0
		})
	}
	p.events = p.events[:0]
	for _, ev := range p.raw[:n] {
		if ev.Pad == wakeTag && int(ev.Fd) == p.wakeFd {
			var buf [8]byte
			_, _ = Read(p.wakeFd, buf[:])
			woken = true
			continue
		}
		p.events = append(p.events, Event{
			Fd: int(ev.Fd), Tag: ev.Pad,
			In:  ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0,
			Out: ev.Events&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0,
			Hup: ev.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0,
		})
	}
	return p.events, woken
}

// poll returns how many events are ready, without waiting.
func (p *Poller) poll() int {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(p.fd),
		uintptr(unsafe.Pointer(&p.raw[0])), uintptr(len(p.raw)), 0, 0, 0)
	if e != 0 {
		return 0 // EINTR
	}
	return int(n)
}

// Close closes the epoll instance and its wake-up descriptor.
func (p *Poller) Close() error {
	unix.Close(p.wakeFd)
	return p.file.Close()
}
