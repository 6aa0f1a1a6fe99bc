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
	return b.serve(ln, func(cc *clientConn, c net.Conn) {
		b.m.conns[protoHTTP].Inc()
		if l := b.loops.next(); l != nil && l.accept(cc, c) {
			return
		}
		cc.c = netpoll.Wrap(c)
		go cc.serve()
	})
}

// serve accepts connections on ln, registers each, and hands it to start.
func (b *Balancer) serve(ln net.Listener, start func(*clientConn, net.Conn)) error {
	s := b.srv
	s.mu.Lock()
	if b.closing.Load() {
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
			if b.closing.Load() {
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
		if !s.track(cc, &b.closing) {
			c.Close()
			return ErrServerClosed
		}
		start(cc, c)
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

// StopAccepting stops accepting new connections and makes every answer from
// now on close its connection (Connection: close), but leaves idle
// connections open: a client about to send a request on one gets its
// answer rather than a closed connection (a POST it could not send again).
// Shutdown closes them.
func (b *Balancer) StopAccepting() {
	s := b.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	b.closingSince.CompareAndSwap(0, time.Now().UnixNano())
	b.closing.Store(true)
	for ln := range s.listeners {
		ln.Close()
	}
	b.h2.goAway()
}

// Shutdown stops accepting, and waits until the requests in flight have
// been answered (each connection is closed after its answer) or ctx ends,
// when the remaining connections are closed. An idle connection is closed
// once it has been idle for Config.DrainIdleDelay, counted from
// StopAccepting or Shutdown, whichever came first. The event loops stop once
// they have nothing left.
func (b *Balancer) Shutdown(ctx context.Context) error {
	s := b.srv
	b.StopAccepting()
	b.shutting.Store(true)
	began := time.Unix(0, b.closingSince.Load())
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		// Closed: connections idle since before the delay's start.
		before := min(time.Now().Add(-b.cfg.DrainIdleDelay).UnixNano(), began.UnixNano())
		if time.Since(began) >= b.cfg.DrainIdleDelay {
			before = time.Now().UnixNano()
		}
		s.mu.Lock()
		n := len(s.conns)
		for cc := range s.conns {
			if since := cc.idleSince.Load(); since != 0 && since <= before && !cc.looped.Load() {
				cc.c.Close()
			}
		}
		s.mu.Unlock()
		if n == 0 {
			b.loops.stop()
			return nil
		}
		b.loops.each(func(l *loop) { l.shutdown(before) })
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
