package balancer

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sockPair is a connected pair of loopback TCP connections, the first one
// wrapped in a sock.
func sockPair(t *testing.T) (*sock, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	peer, err := ln.Accept()
	require.NoError(t, err)
	s, ok := newSock(c).(*sock)
	require.True(t, ok, "a TCP connection is wrapped")
	t.Cleanup(func() { s.Close(); peer.Close() })
	return s, peer.(*net.TCPConn)
}

func TestSockReadWrite(t *testing.T) {
	s, peer := sockPair(t)

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
	assert.True(t, isTimeout(err), "%v", err)
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

func TestSockErrors(t *testing.T) {
	s, peer := sockPair(t)

	// A reset is ECONNRESET, as net.Conn reports it.
	require.NoError(t, peer.SetLinger(0))
	require.NoError(t, peer.Close())
	_, err := s.Read(make([]byte, 10))
	assert.ErrorIs(t, err, syscall.ECONNRESET)
	assert.True(t, connDropped(err))
	var oe *net.OpError
	require.True(t, errors.As(err, &oe))
	assert.Equal(t, "read", oe.Op)

	// Writing to the reset connection fails too.
	_, err = s.Write([]byte("x"))
	assert.True(t, connDropped(err), "%v", err)

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
	assert.Same(t, a, newSock(a))
}

// BenchmarkSockReadWrite is one small exchange over loopback, with the
// raw-syscall sock and with the plain net.Conn.
func BenchmarkSockReadWrite(b *testing.B) {
	for _, wrap := range []bool{false, true} {
		name := "net.Conn"
		if wrap {
			name = "sock"
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
				c = newSock(c)
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
