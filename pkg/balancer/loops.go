package balancer

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// loopSet is the event loops of a Balancer, started by the first
// connection that needs one (Config.EventLoop), stopped by Shutdown or
// Close.
type loopSet struct {
	b       *Balancer
	mu      sync.Mutex
	running atomic.Pointer[[]*loop]
	failed  atomic.Bool // the loops could not start: goroutines serve everything
	turn    atomic.Uint32
}

// next returns the event loop to take the next connection (in turn),
// starting them on first use, or nil when connections are served by
// goroutines alone.
func (s *loopSet) next() *loop {
	loops := s.running.Load()
	if loops == nil {
		cfg := &s.b.cfg
		if !cfg.EventLoop || cfg.BackendMaxConns > 0 || s.failed.Load() {
			return nil
		}
		if loops = s.start(); loops == nil {
			return nil
		}
	}
	return (*loops)[int(s.turn.Add(1))%len(*loops)]
}

func (s *loopSet) start() *[]*loop {
	s.mu.Lock()
	defer s.mu.Unlock()
	if loops := s.running.Load(); loops != nil || s.b.shutting.Load() || s.b.closed.Load() || s.failed.Load() {
		return loops
	}
	n := s.b.cfg.EventLoopThreads
	if n <= 0 {
		n = max(1, runtime.GOMAXPROCS(0)/2)
	}
	loops := make([]*loop, 0, n)
	for range n {
		l, err := newLoop(s.b)
		if err != nil {
			s.b.logger.Warn("no event loop: a goroutine serves each connection", "error", err)
			for _, l := range loops {
				l.stop()
			}
			s.failed.Store(true)
			return nil
		}
		loops = append(loops, l)
	}
	s.running.Store(&loops)
	return &loops
}

// each calls f on every running event loop.
func (s *loopSet) each(f func(*loop)) {
	if loops := s.running.Load(); loops != nil {
		for _, l := range *loops {
			f(l)
		}
	}
}

// stop stops the event loops: each closes what it still owns, and its
// goroutine ends. Safe to call more than once.
func (s *loopSet) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if loops := s.running.Swap(nil); loops != nil {
		for _, l := range *loops {
			l.stop()
		}
	}
}
