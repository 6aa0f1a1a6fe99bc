package balancer

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// liveMemory is the live heap and the goroutine stacks, after a full
// collection.
func liveMemory() (heap, stacks uint64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, ms.StackInuse
}

// An idle keep-alive client connection holds no read buffer and no
// exchange buffers (they come from pools when a request's bytes arrive):
// the heap it takes, client side included, stays under maxHeap. It was
// about 20 KiB with the 16 KiB read buffer kept. The goroutine relay also
// keeps a goroutine per connection, whose stack is logged. `make bench`
// measures the gateway's whole memory at 10,000 connections against
// HAProxy's.
func TestIdleConnectionsHoldNoBuffers(t *testing.T) {
	maxHeap := map[string]int64{"loop": 1536, "goroutines": 2560}
	eachRelay(t, func(t *testing.T, rl relay) {
		b, f := newTestBalancer(t, rl)
		setBackends(b, startBackends(t, 1, nil))
		const n = 1000
		conns := make([]net.Conn, 0, n)
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		// warm up
		for range 20 {
			c, err := net.Dial("tcp", f.Addr)
			require.NoError(t, err)
			_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			require.NoError(t, err)
			_, _ = io.ReadAll(resp.Body)
			c.Close()
		}
		time.Sleep(100 * time.Millisecond)
		heap0, stacks0 := liveMemory()
		for range n {
			c, err := net.Dial("tcp", f.Addr)
			require.NoError(t, err)
			conns = append(conns, c)
			_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			require.NoError(t, err)
			_, _ = io.ReadAll(resp.Body)
		}
		time.Sleep(200 * time.Millisecond)
		heap1, stacks1 := liveMemory()
		perConn := (int64(heap1) - int64(heap0)) / n
		t.Logf("%s: per idle connection, %d bytes of heap (client side included), %d of goroutine stacks",
			rl.name, perConn, (int64(stacks1)-int64(stacks0))/n)
		assert.LessOrEqual(t, perConn, maxHeap[rl.name])
	})
}
