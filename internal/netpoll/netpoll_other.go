//go:build !linux

package netpoll

import (
	"net"
	"net/netip"
	"time"
)

// Poller: no event loop on this system; New fails with ErrUnsupported.
type Poller struct{}

// New fails: the event loop is Linux only.
func New(int) (*Poller, error) { return nil, ErrUnsupported }

func (*Poller) Add(int, int32) error               { return ErrUnsupported }
func (*Poller) Remove(int) error                   { return ErrUnsupported }
func (*Poller) Wake()                              {}
func (*Poller) Wait(time.Duration) ([]Event, bool) { return nil, false }
func (*Poller) Close() error                       { return nil }
func Read(int, []byte) (int, error)                { return 0, ErrUnsupported }
func Write(int, []byte) (int, error)               { return 0, ErrUnsupported }
func Quiet(int) bool                               { return false }
func Dup(int) (int, error)                         { return -1, ErrUnsupported }
func Close(int) error                              { return ErrUnsupported }
func CloseWrite(int) error                         { return ErrUnsupported }
func Dial(netip.AddrPort) (int, bool, error)       { return -1, false, ErrUnsupported }
func ConnectResult(int) error                      { return ErrUnsupported }
func LocalAddr(int) net.Addr                       { return nil }
func DupConn(net.Conn) (int, error)                { return -1, ErrUnsupported }
func FileConn(int) (net.Conn, error)               { return nil, ErrUnsupported }

// Wrap returns c: raw system calls are used on Linux only.
func Wrap(c net.Conn) net.Conn { return c }
