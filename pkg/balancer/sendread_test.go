package balancer

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The send-then-read path of bconn (write inside RawConn.Read, wait, read
// once) must behave as a write followed by a read in every case: an answer,
// a stale connection the backend closed while idle, a send buffer too small
// for the request, a backend that never answers.

// tcpPair returns a bconn dialled to a listener on loopback and the
// server side of the connection.
func tcpPair(t *testing.T) (*bconn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	be := newBackend(Backend{Addr: netip.MustParseAddrPort(ln.Addr().String())}, DefaultConfig())
	bc, err := be.get(true)
	require.NoError(t, err)
	t.Cleanup(bc.close)
	srv, err := ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { srv.Close() })
	return bc, srv
}

func TestSendThenReadAnswer(t *testing.T) {
	bc, srv := tcpPair(t)
	go func() {
		buf := make([]byte, 5)
		if _, err := io.ReadFull(srv, buf); err == nil && string(buf) == "hello" {
			_, _ = io.WriteString(srv, "world")
		}
	}()
	require.True(t, bc.sendThenRead([]byte("hello")))
	got, err := bc.br.Peek(5)
	require.NoError(t, err)
	assert.Equal(t, "world", string(got))
	assert.Nil(t, bc.unsent)
}

// A request larger than the socket's send buffer: the rest goes out through
// a blocking write once the backend reads, then the answer is read.
func TestSendThenReadFullSendBuffer(t *testing.T) {
	bc, srv := tcpPair(t)
	require.NoError(t, bc.c.(*net.TCPConn).SetWriteBuffer(4096))
	require.NoError(t, srv.(*net.TCPConn).SetReadBuffer(4096))
	req := bytes.Repeat([]byte("x"), 64<<10)
	go func() {
		time.Sleep(100 * time.Millisecond) // let the send buffer fill
		if n, err := io.CopyN(io.Discard, srv, int64(len(req))); err == nil && n == int64(len(req)) {
			_, _ = io.WriteString(srv, "got it")
		}
	}()
	require.True(t, bc.sendThenRead(req))
	got, err := bc.br.Peek(6)
	require.NoError(t, err)
	assert.Equal(t, "got it", string(got))
}

// The backend closed the connection while it was idle in the pool: the
// write or the read fails at once instead of waiting for a deadline.
func TestSendThenReadStaleConnection(t *testing.T) {
	bc, srv := tcpPair(t)
	require.NoError(t, srv.Close())
	time.Sleep(50 * time.Millisecond) // the FIN arrives while nobody reads
	require.NoError(t, bc.c.SetReadDeadline(time.Now().Add(time.Minute)))
	require.True(t, bc.sendThenRead([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")))
	done := make(chan error, 1)
	go func() {
		_, err := bc.br.Peek(1)
		done <- err
	}()
	select {
	case err := <-done:
		require.Error(t, err)
		assert.False(t, isTimeout(err), "%v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("a read on a connection the backend had closed waited for its deadline")
	}
}

func TestSendThenReadDeadline(t *testing.T) {
	bc, _ := tcpPair(t) // the server side never answers
	require.NoError(t, bc.c.SetReadDeadline(time.Now().Add(200*time.Millisecond)))
	require.True(t, bc.sendThenRead([]byte("ping")))
	_, err := bc.br.Peek(1)
	require.Error(t, err)
	assert.True(t, isTimeout(err), "%v", err)
}

// Through the gateway: a backend that closes idle keep-alive connections
// soon after answering leaves stale connections in the pool. Every request
// still gets its answer, from a new connection: a GET after the stale one
// failed, a POST before it is sent (it must not be sent twice).
func TestStalePooledConnections(t *testing.T) {
	b, f := newTestBalancer(t)
	var served atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		_, _ = io.WriteString(w, "ok")
	}))
	srv.Config.IdleTimeout = 20 * time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)
	b.Update([]Backend{{Addr: netip.MustParseAddrPort(srv.Listener.Addr().String()), Node: "n"}})
	c, err := net.Dial("tcp", f.Addr)
	require.NoError(t, err)
	defer c.Close()
	br := bufio.NewReader(c)
	for i := range 6 {
		start := time.Now()
		req := "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
		if i%2 == 1 { // not idempotent: must not go out on a closed connection at all
			req = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody"
		}
		_, err := io.WriteString(c, req)
		require.NoError(t, err)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, 200, resp.StatusCode, "request %d", i)
		assert.Equal(t, "ok", strings.TrimSpace(string(body)))
		assert.Less(t, time.Since(start), 5*time.Second, "request %d waited for a timeout", i)
		time.Sleep(60 * time.Millisecond) // the backend closes the idle connection
	}
	assert.Equal(t, int32(6), served.Load())
	assert.Zero(t, b.Backends()[0].Failures, "a stale pooled connection is not the backend's failure")
	assert.Zero(t, b.retries.Load(), "nor a retry")
}
