package balancer

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// rawH2 is an HTTP/2 client connection driven frame by frame, as an
// abusive client would: it opens streams without waiting for answers and
// resets them at will.
type rawH2 struct {
	c   net.Conn
	fr  *http2.Framer
	hb  bytes.Buffer
	enc *hpack.Encoder
}

func dialRawH2(t testing.TB, addr string) *rawH2 {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	r := &rawH2{c: c, fr: http2.NewFramer(c, c)}
	r.enc = hpack.NewEncoder(&r.hb)
	_, err = io.WriteString(c, http2.ClientPreface)
	require.NoError(t, err)
	require.NoError(t, r.fr.WriteSettings())
	return r
}

// open sends the HEADERS of a GET on stream id, ending the stream.
func (r *rawH2) open(id uint32, authority, path string) error {
	r.hb.Reset()
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", authority}, {":path", path}} {
		_ = r.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	return r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: r.hb.Bytes(), EndStream: true, EndHeaders: true})
}

// drain reads frames until the connection ends, until streams have been
// refused or answered (0: no such end), or within passes, and counts what
// the server sent.
func (r *rawH2) drain(within time.Duration, streams int) (refused, answered int, goAway http2.ErrCode, sawGoAway bool) {
	_ = r.c.SetReadDeadline(time.Now().Add(within))
	for streams == 0 || refused+answered < streams {
		f, err := r.fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			refused++
		case *http2.HeadersFrame:
			answered++
		case *http2.GoAwayFrame:
			goAway, sawGoAway = f.ErrCode, true
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = r.fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				_ = r.fr.WritePing(true, f.Data)
			}
		}
	}
	return
}

// slowBackend answers after hold, and records the most requests it held
// at once.
func slowBackend(t *testing.T, hold time.Duration) (backends []testBackend, total, peak *atomic.Int64) {
	var now atomic.Int64
	total, peak = new(atomic.Int64), new(atomic.Int64)
	backends = startBackends(t, 1, func(int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			total.Add(1)
			n := now.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			defer now.Add(-1)
			select {
			case <-time.After(hold):
			case <-r.Context().Done():
			}
			fmt.Fprint(w, "ok")
		}
	})
	return backends, total, peak
}

// h2cOverSlowBackend serves h2c in front of a slowBackend holding each
// request hold.
func h2cOverSlowBackend(t *testing.T, hold time.Duration) (cfg Config, f *front, total, peak *atomic.Int64) {
	backends, total, peak := slowBackend(t, hold)
	cfg = testConfig()
	cfg.H2C = true
	b, f := serveBalancer(t, relays[0], cfg)
	setBackends(b, backends)
	return cfg, f, total, peak
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestH2StreamFloodBounded: a client that opens 10,000 streams at once on
// one HTTP/2 connection, past the 250 it was allowed, gets the excess
// refused; no more than the limit reach the backends at a time, memory
// stays bounded, and the gateway serves others meanwhile and after.
func TestH2StreamFloodBounded(t *testing.T) {
	cfg, f, total, peak := h2cOverSlowBackend(t, 300*time.Millisecond)
	before := heapInUse()

	r := dialRawH2(t, f.Addr)
	var sendErr error
	for i := range 10_000 {
		if sendErr = r.open(uint32(2*i+1), f.Addr, "/flood"); sendErr != nil {
			break // the server closed the connection on us: bounded too
		}
	}
	refused, answered, code, sawGoAway := r.drain(15*time.Second, 10_000)
	t.Logf("10,000 streams opened (send error: %v): %d refused, %d answered, GOAWAY %v (%s); the backend got %d, at most %d at once",
		sendErr, refused, answered, sawGoAway, code, total.Load(), peak.Load())
	assert.LessOrEqual(t, peak.Load(), int64(cfg.MaxConcurrentStreams), "streams in flight at once are bounded")
	assert.Less(t, total.Load(), int64(10_000), "the excess never reached a backend")
	assert.True(t, refused > 0 || sawGoAway, "the excess was refused")
	grown := int64(heapInUse()) - int64(before)
	assert.Less(t, grown, int64(64<<20), "heap grew %d bytes", grown)

	code2, body := get(t, f.URL+"/after")
	assert.Equal(t, http.StatusOK, code2)
	assert.Equal(t, "ok", body)
}

// TestH2RapidResetBounded: CVE-2023-44487. A client that opens and at once
// resets 10,000 streams cannot make the gateway run more than
// MaxConcurrentStreams requests at a time (x/net/http2 queues handlers past
// the limit and ends a connection whose queue overflows); memory stays
// bounded, and other clients are served.
func TestH2RapidResetBounded(t *testing.T) {
	cfg, f, total, peak := h2cOverSlowBackend(t, 2*time.Second)
	before := heapInUse()

	r := dialRawH2(t, f.Addr)
	began := time.Now()
	sent := 0
	for i := range 10_000 {
		id := uint32(2*i + 1)
		if r.open(id, f.Addr, "/reset") != nil || r.fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
			break
		}
		sent++
	}
	_, _, code, sawGoAway := r.drain(15*time.Second, 0)
	t.Logf("%d streams opened and reset in %s; GOAWAY %v (%s); the backend got %d, at most %d at once",
		sent, time.Since(began).Round(time.Millisecond), sawGoAway, code, total.Load(), peak.Load())
	assert.LessOrEqual(t, peak.Load(), int64(cfg.MaxConcurrentStreams), "requests in flight at once are bounded")
	assert.True(t, sawGoAway, "the flooding connection is sent away")
	assert.Equal(t, http2.ErrCodeEnhanceYourCalm, code)
	grown := int64(heapInUse()) - int64(before)
	assert.Less(t, grown, int64(64<<20), "heap grew %d bytes", grown)

	code2, body := get(t, f.URL+"/after")
	assert.Equal(t, http.StatusOK, code2)
	assert.Equal(t, "ok", body)
}

// FuzzH2Request sends one HTTP/2 request with arbitrary pseudo-header and
// field values through the gateway: whatever they are, the client gets an
// answer or a stream reset, never a crash or a hang, and the backend gets
// only what passed the checks (a well-formed path and Host).
func FuzzH2Request(f *testing.F) {
	var got atomic.Value // the last request's path and Host at the backend
	backends := startBackends(f, 1, func(int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			got.Store(r.URL.RequestURI() + " " + r.Host)
			fmt.Fprint(w, "ok")
		}
	})
	cfg := testConfig()
	cfg.H2C = true
	b, fr := serveBalancer(f, relays[0], cfg)
	setBackends(b, backends)
	for _, seed := range [][5]string{
		{"GET", "a.test", "/x?y=1", "x-a", "b"},
		{"POST", "", "/", "content-length", "5"},
		{"CONNECT", "a.test:443", "", "te", "trailers"},
		{"GET", "a b", "//..%2f", "connection", "close"},
		{"GET", "a.test", "*", "x-forwarded-for", "1.2.3.4, \x00"},
		{"GET", "a.test", "/\xff", "host", "evil.test"},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3], seed[4])
	}
	f.Fuzz(func(t *testing.T, method, authority, path, name, value string) {
		got.Store("")
		r := dialRawH2(t, fr.Addr)
		r.hb.Reset()
		for _, hf := range [][2]string{{":method", method}, {":scheme", "http"}, {":authority", authority}, {":path", path}, {name, value}} {
			_ = r.enc.WriteField(hpack.HeaderField{Name: hf[0], Value: hf[1]})
		}
		require.NoError(t, r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: r.hb.Bytes(), EndStream: true, EndHeaders: true}))
		refused, answered, _, sawGoAway := r.drain(5*time.Second, 1)
		require.True(t, refused+answered == 1 || sawGoAway, "no answer, reset or GOAWAY within 5 s")
		if seen := got.Load().(string); seen != "" {
			uri, host, _ := strings.Cut(seen, " ")
			assert.True(t, strings.HasPrefix(uri, "/") || uri == "*", "the backend got the request target %q", uri)
			assert.NotContains(t, host, " ", "the backend got Host %q", host)
		}
	})
}

// TestH2BodilessRetriedAfterReset: a GET over HTTP/2 that a backend reads,
// then resets, is sent to another backend as an HTTP/1.1 one is (the HTTP/2
// server's request has a Body even when the stream has none); a POST with a
// body is not.
func TestH2BodilessRetriedAfterReset(t *testing.T) {
	cfg := testConfig()
	cfg.H2C = true
	cfg.EjectFor = time.Millisecond // the resetting backend stays in rotation
	b, f := serveBalancer(t, relays[0], cfg)
	var resets atomic.Int64
	backends := startBackends(t, 2, func(i int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			if i == 0 {
				if c, _, err := w.(http.Hijacker).Hijack(); err == nil {
					resets.Add(1)
					c.(*net.TCPConn).SetLinger(0)
					c.Close()
				}
				return
			}
			io.WriteString(w, "ok")
		}
	})
	setBackends(b, backends)
	c := h2cClient()
	for range 10 {
		time.Sleep(2 * time.Millisecond) // past the ejection
		resp, err := c.Get(f.URL + "/predict")
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, "ok", string(body))
	}
	assert.Positive(t, resets.Load(), "the resetting backend had its turns")
	failed := 0
	for range 10 {
		time.Sleep(2 * time.Millisecond)
		resp, err := c.Post(f.URL+"/predict", "text/plain", strings.NewReader("payload"))
		require.NoError(t, err)
		resp.Body.Close()
		if resp.StatusCode == http.StatusBadGateway {
			failed++
		}
	}
	assert.Positive(t, failed, "a POST the backend read is not sent again")
}
