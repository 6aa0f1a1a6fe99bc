//go:build !linux

package balancer

import (
	"errors"
	"net"
)

// loop: the event loop is Linux only (loop_linux.go); elsewhere a
// goroutine serves each connection.
type loop struct{}

func newLoop(*Balancer) (*loop, error) { return nil, errors.New("no event loop on this system") }

func (*loop) accept(*clientConn, net.Conn) bool { return false }
func (*loop) shutdown()                         {}
func (*loop) closeAll()                         {}
func (*loop) closeIdle()                        {}
func (*loop) stop()                             {}
func (*loop) put(*bconn)                        {}
