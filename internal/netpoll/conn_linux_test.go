package netpoll

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// connPair is a connected pair of loopback TCP connections, the first one
// wrapped.
func connPair(t *testing.T) (*conn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	peer, err := ln.Accept()
	require.NoError(t, err)
	s, ok := Wrap(c).(*conn)
	require.True(t, ok, "a TCP connection is wrapped")
	t.Cleanup(func() { s.Close(); peer.Close() })
	return s, peer.(*net.TCPConn)
}

func TestConnReadWrite(t *testing.T) {
	s, peer := connPair(t)

	// Both ways at once, 8 MiB each: writes larger than the socket buffer
	// finish after waiting for the peer to read.
	big := make([]byte, 8<<20)
	_, _ = rand.Read(big)
	got := make(chan []byte, 2)
	go func() { b, _ := io.ReadAll(io.LimitReader(peer, int64(len(big)))); got <- b }()
	go func() { b, _ := io.ReadAll(io.LimitReader(s, int64(len(big)))); got <- b }()
	go func() { _, _ = peer.Write(big) }()
	n, err := s.Write(big)
	require.NoError(t, err)
	require.Equal(t, len(big), n)
	assert.True(t, bytes.Equal(big, <-got))
	assert.True(t, bytes.Equal(big, <-got))

	n, err = s.Read(nil)
	assert.Zero(t, n)
	assert.NoError(t, err)

	// The read deadline is honoured and reported as a timeout.
	require.NoError(t, s.SetReadDeadline(time.Now().Add(50*time.Millisecond)))
	_, err = s.Read(make([]byte, 10))
	var ne net.Error
	assert.True(t, errors.As(err, &ne) && ne.Timeout(), "%v", err)
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.NoError(t, s.SetReadDeadline(time.Time{}))

	// The peer shuts its side: EOF after what it sent.
	_, _ = peer.Write([]byte("last"))
	require.NoError(t, peer.CloseWrite())
	b, err := io.ReadAll(s)
	require.NoError(t, err)
	assert.Equal(t, "last", string(b))

	// Shutting ours: the peer reads EOF.
	require.NoError(t, s.CloseWrite())
	n, err = peer.Read(make([]byte, 1))
	assert.Zero(t, n)
	assert.ErrorIs(t, err, io.EOF)
}

func TestConnErrors(t *testing.T) {
	s, peer := connPair(t)

	// A reset is ECONNRESET, as net.Conn reports it.
	require.NoError(t, peer.SetLinger(0))
	require.NoError(t, peer.Close())
	_, err := s.Read(make([]byte, 10))
	assert.ErrorIs(t, err, syscall.ECONNRESET)
	var oe *net.OpError
	require.True(t, errors.As(err, &oe))
	assert.Equal(t, "read", oe.Op)

	// Writing to the reset connection fails too.
	_, err = s.Write([]byte("x"))
	assert.True(t, errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE), "%v", err)

	// After Close, both fail with net.ErrClosed.
	require.NoError(t, s.Close())
	_, err = s.Read(make([]byte, 10))
	assert.ErrorIs(t, err, net.ErrClosed)
	_, err = s.Write([]byte("x"))
	assert.ErrorIs(t, err, net.ErrClosed)

	// A connection without a socket is left as it is.
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	assert.Same(t, a, Wrap(a))
}

// BenchmarkConnReadWrite is one small exchange over loopback, with the
// raw-syscall conn and with the plain net.Conn.
func BenchmarkConnReadWrite(b *testing.B) {
	for _, wrap := range []bool{false, true} {
		name := "net.Conn"
		if wrap {
			name = "raw"
		}
		b.Run(name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(b, err)
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_, _ = io.Copy(c, c)
				c.Close()
			}()
			c, err := net.Dial("tcp", ln.Addr().String())
			require.NoError(b, err)
			defer c.Close()
			if wrap {
				c = Wrap(c)
			}
			msg, buf := make([]byte, 128), make([]byte, 128)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A Poller reports a registered socket's input once per arrival (edge
// triggered), its peer's half-close, and wake-ups; an idle Wait ends at its
// timeout.
func TestPoller(t *testing.T) {
	p, err := New(16)
	require.NoError(t, err)
	defer p.Close()
	_, peer := connPair(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	fd, pending, err := Dial(netip.MustParseAddrPort(ln.Addr().String()))
	require.NoError(t, err)
	defer Close(fd)
	srv, err := ln.Accept()
	require.NoError(t, err)
	defer srv.Close()
	require.NoError(t, p.Add(fd, 7))
	if pending {
		waitFor(t, p, func(ev Event) bool { return ev.Out })
		require.NoError(t, ConnectResult(fd))
	}
	_ = peer

	began := time.Now()
	events, woken := p.Wait(30 * time.Millisecond)
	assert.Empty(t, events)
	assert.False(t, woken)
	assert.GreaterOrEqual(t, time.Since(began), 25*time.Millisecond, "an idle Wait lasts its timeout")

	_, err = srv.Write([]byte("hello"))
	require.NoError(t, err)
	ev := waitFor(t, p, func(ev Event) bool { return ev.In })
	assert.Equal(t, int32(7), ev.Tag)
	buf := make([]byte, 64)
	n, err := Read(fd, buf)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(buf[:n]))
	_, err = Read(fd, buf)
	assert.ErrorIs(t, err, ErrAgain)
	events, _ = p.Wait(0)
	assert.Empty(t, events, "edge triggered: no second event for the same input")

	p.Wake()
	p.Wake()
	_, woken = p.Wait(time.Second)
	assert.True(t, woken)
	_, woken = p.Wait(0)
	assert.False(t, woken, "wake-ups before a Wait collapse into one")

	require.NoError(t, srv.(*net.TCPConn).CloseWrite())
	ev = waitFor(t, p, func(ev Event) bool { return ev.Hup })
	assert.True(t, ev.In)
	_, err = Read(fd, buf)
	assert.ErrorIs(t, err, io.EOF)
	assert.True(t, Quiet(fd) == false, "a closed peer is not quiet")
}

func waitFor(t *testing.T, p *Poller, ok func(Event) bool) Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		events, _ := p.Wait(100 * time.Millisecond)
		for _, ev := range events {
			if ok(ev) {
				return ev
			}
		}
	}
	t.Fatal("no such event within 5s")
	return Event{}
}
