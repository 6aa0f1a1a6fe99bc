package balancer

import (
	"bufio"
	"net"
	"sync"
	"time"

	"github.com/herd-cluster/herd/internal/netpoll"
)

// bconn is a connection to a backend with its read buffer.
type bconn struct {
	h         *host
	c         net.Conn
	br        *bufio.Reader
	reused    bool // it served a request before this one
	idleSince time.Time
	deadline  readDeadline
	// loop is the event loop whose socket this is (nil: a goroutine's):
	// a goroutine that used it gives it back to that loop's pool.
	loop *loop
}

// dial opens a new connection to h, for the goroutine relay.
func (h *host) dial() (*bconn, error) {
	c, err := h.dialer.Dial("tcp", h.hostPort)
	if err != nil {
		return nil, err
	}
	bc := &bconn{h: h, c: netpoll.Wrap(c)}
	bc.br = getReader(bc.c)
	return bc, nil
}

// quieter is a connection that can tell whether its peer is quiet: it has
// neither closed the connection nor sent anything unread.
type quieter interface{ Quiet() bool }

// alive reports whether the backend has neither closed bc nor sent
// anything on it since its last answer: one non-blocking peek.
func (bc *bconn) alive() bool {
	if bc.br.Buffered() > 0 {
		return false // bytes nobody asked for
	}
	q, ok := bc.c.(quieter)
	return !ok || q.Quiet() // not a socket: nothing to peek at
}

func (bc *bconn) close() {
	if bc.c != nil {
		bc.c.Close()
		putReader(bc.br)
		bc.c, bc.br = nil, nil
	}
}

// connPool is the keep-alive pool of one backend's idle connections, most
// recently used last. It is the one pool of both relays: the goroutines
// share one per host (host.pool), and each event loop keeps one per host of
// its own, since its sockets are registered in its own epoll instance.
type connPool struct {
	mu      sync.Mutex
	idle    []*bconn
	max     int           // Config.MaxIdleConnsPerBackend
	timeout time.Duration // Config.IdleConnTimeout
}

// get returns the most recently used idle connection that has not been
// idle for timeout, closing the older ones it passes, or nil.
func (p *connPool) get(now time.Time) *bconn {
	p.mu.Lock()
	defer p.mu.Unlock()
	for n := len(p.idle); n > 0; n = len(p.idle) {
		bc := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		if now.Sub(bc.idleSince) < p.timeout {
			bc.reused = true
			return bc
		}
		bc.close()
	}
	return nil
}

// put keeps bc, whose exchange ended cleanly, for another request; it closes
// it instead when its backend is retired or the pool is full.
func (p *connPool) put(bc *bconn, now time.Time) {
	p.mu.Lock()
	if bc.h.retired.Load() || len(p.idle) >= p.max {
		p.mu.Unlock()
		bc.close()
		return
	}
	bc.idleSince = now
	p.idle = append(p.idle, bc)
	p.mu.Unlock()
}

// remove closes bc, if it is in the pool (the backend closed it).
func (p *connPool) remove(bc *bconn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, x := range p.idle {
		if x == bc {
			copy(p.idle[i:], p.idle[i+1:])
			p.idle[len(p.idle)-1] = nil
			p.idle = p.idle[:len(p.idle)-1]
			bc.close()
			return
		}
	}
}

// expire closes the connections idle for timeout or more, or all of them
// when the backend is retired, and reports whether the pool is empty.
func (p *connPool) expire(now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	kept := p.idle[:0]
	for _, bc := range p.idle {
		if bc.h.retired.Load() || now.Sub(bc.idleSince) >= p.timeout {
			bc.close()
			continue
		}
		kept = append(kept, bc)
	}
	clear(p.idle[len(kept):])
	p.idle = kept
	return len(kept) == 0
}

// closeAll closes every idle connection.
func (p *connPool) closeAll() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, bc := range idle {
		bc.close()
	}
}
