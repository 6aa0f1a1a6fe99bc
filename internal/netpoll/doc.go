// Package netpoll is the only place in Herd that talks to the kernel's
// readiness API and makes raw socket system calls: an edge-triggered epoll
// instance (Poller), non-blocking socket operations on descriptors the
// gateway's event loop owns (Read, Write, Dial, …), and a net.Conn wrapper
// (Wrap) whose reads and writes are raw system calls that still wait in Go's
// network poller.
//
// # Edge triggering
//
// Every descriptor is registered edge-triggered (EPOLLET) for input, output
// and the peer's half-close, once, for its whole life. An edge-triggered
// descriptor reports a readiness change once: after an input event its owner
// must read until Read returns ErrAgain, or until a read returns less than
// it asked for (then the kernel buffer was emptied by that read, and the next
// data brings a new event, so a further read would only return ErrAgain: the
// event loop skips it and saves a system call per request). Likewise a
// write that returns ErrAgain (the socket buffer is full) is followed by one
// output event once there is room again, and not before: its owner keeps
// what was not written and writes it on that event. A peer's half-close or
// an error (Event.Hup) is also reported once.
//
// # Why raw system calls
//
// A raw system call (unix.RawSyscall) does not tell the Go scheduler that the
// thread is in a system call. Reads and writes of a non-blocking socket never
// block, so nothing is lost; what is gained shows on a busy machine: when
// the kernel preempts a thread in the middle of one, the runtime does not
// hand the thread's P to another thread (waking it, and later putting the
// first back to sleep), churn that cost the gateway CPU and tail latency
// (docs/http.md, Performance).
//
// The event loop is Linux only; elsewhere New returns ErrUnsupported and
// Wrap returns its connection unchanged.
package netpoll

import "errors"

// ErrAgain: the descriptor is not ready; wait for its next event.
var ErrAgain = errors.New("netpoll: not ready, try again on the next event")

// ErrUnsupported: this system has no event loop (not Linux).
var ErrUnsupported = errors.New("netpoll: no event loop on this system")

// Event is one ready descriptor, as Poller.Wait reports it.
type Event struct {
	Fd int
	// Tag is the value the descriptor was added with: it tells this
	// registration's events from those of an earlier one that used the same
	// descriptor number.
	Tag int32
	// In: there is input to read (or an error or end of input to read).
	// Out: there is room to write. Hup: the peer closed its side (it may
	// still read) or the socket failed; reported once.
	In, Out, Hup bool
}
