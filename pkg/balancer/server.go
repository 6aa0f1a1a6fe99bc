package balancer

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/herd-cluster/herd/internal/netpoll"
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("balancer: server closed")

// server is the client side of a Balancer: its listeners and the client
// connections it serves, for Shutdown.
type server struct {
	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*clientConn]struct{}
	wg        sync.WaitGroup // one per connection in conns
}

func newServer() *server {
	return &server{listeners: make(map[net.Listener]struct{}), conns: make(map[*clientConn]struct{})}
}

// Serve accepts client connections on ln and relays their requests until
// Shutdown, or until ln fails. Each new connection goes to an event loop,
// in turn, or to a goroutine of its own.
func (b *Balancer) Serve(ln net.Listener) error {
	s := b.srv
	s.mu.Lock()
	if b.shutting.Load() {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if b.shutting.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				b.logger.Warn("accept failed; retrying", "error", err, "in", delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		cc := b.newClientConn(c)
		if !s.track(cc, &b.shutting) {
			c.Close()
			return ErrServerClosed
		}
		if l := b.loops.next(); l != nil && l.accept(cc, c) {
			continue
		}
		cc.c = netpoll.Wrap(c)
		go cc.serve()
	}
}

// track registers cc, unless the server is shutting down.
func (s *server) track(cc *clientConn, shutting interface{ Load() bool }) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if shutting.Load() {
		return false
	}
	s.conns[cc] = struct{}{}
	s.wg.Add(1)
	return true
}

// forget closes cc and deregisters it.
func (s *server) forget(cc *clientConn) {
	cc.c.Close()
	if cc.br != nil {
		cc.br.Reset(nil) // what is buffered is dropped
	}
	cc.rest()
	s.mu.Lock()
	delete(s.conns, cc)
	s.mu.Unlock()
	s.wg.Done()
}

// Shutdown stops accepting, closes idle client connections, and waits until
// the requests in flight have been answered (each connection is closed
// after its answer) or ctx ends, when the remaining connections are closed.
// The event loops stop once they have nothing left.
func (b *Balancer) Shutdown(ctx context.Context) error {
	s := b.srv
	s.mu.Lock()
	b.shutting.Store(true)
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		n := len(s.conns)
		for cc := range s.conns {
			if cc.idle.Load() && !cc.looped.Load() {
				cc.c.Close()
			}
		}
		s.mu.Unlock()
		if n == 0 {
			b.loops.stop()
			return nil
		}
		b.loops.each((*loop).shutdown)
		select {
		case <-ctx.Done():
			b.loops.each((*loop).closeAll)
			s.mu.Lock()
			for cc := range s.conns {
				if !cc.looped.Load() {
					cc.c.Close()
				}
			}
			s.mu.Unlock()
			s.wg.Wait()
			b.loops.stop()
			return ctx.Err()
		case <-tick.C:
		}
	}
}
