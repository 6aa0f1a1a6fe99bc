//go:build !linux

package balancer

import (
	"net"

	"github.com/herd-cluster/herd/internal/netpoll"
)

// loop: the event loop is Linux only (loop_linux.go); elsewhere a
// goroutine serves each connection.
type loop struct{}

func newLoop(*Balancer) (*loop, error) { return nil, netpoll.ErrUnsupported }

func (*loop) accept(*clientConn, net.Conn) bool { return false }
func (*loop) shutdown(int64)                    {}
func (*loop) closeAll()                         {}
func (*loop) stop()                             {}
func (*loop) put(*bconn)                        {}
