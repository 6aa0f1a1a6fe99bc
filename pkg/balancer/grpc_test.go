package balancer

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/herd-cluster/herd/examples/predictor-grpc/scoring"
)

// startGRPCBackends starts n real gRPC predictors; set(i, serving) flips
// the health of backend i.
func startGRPCBackends(t *testing.T, n int) (list []testBackend, set func(i int, serving bool)) {
	t.Helper()
	var setters []func(bool)
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		srv, hs := scoring.NewServer(&scoring.Model{Version: "1.0.0", Instance: fmt.Sprint(i)}, false)
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(srv.Stop)
		list = append(list, testBackend{Addr: netip.MustParseAddrPort(ln.Addr().String()), Node: fmt.Sprintf("n%d", i)})
		setters = append(setters, func(ok bool) {
			st := healthpb.HealthCheckResponse_NOT_SERVING
			if ok {
				st = healthpb.HealthCheckResponse_SERVING
			}
			hs.SetServingStatus("", st)
		})
	}
	return list, func(i int, ok bool) { setters[i](ok) }
}

// TestGRPCThroughTheBalancer: grpc-go clients reach grpc-go servers through
// the balancer (h2c on both sides): unary calls spread over both backends,
// a bidirectional stream answered message by message, the deadline passed
// through (the server sees it; a slow call ends DeadlineExceeded), and the
// active health checks speak grpc.health.v1: a backend NOT_SERVING is taken
// out, and back in once SERVING.
func TestGRPCThroughTheBalancer(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		cfg := testConfig()
		cfg.H2C = true
		cfg.HealthInterval, cfg.HealthTimeout, cfg.Rise, cfg.Fall = 50*time.Millisecond, 50*time.Millisecond, 1, 1
		b, f := serveBalancer(t, rl, cfg)
		b.Service("predictor").SetProtocol(GRPC)
		backends, setServing := startGRPCBackends(t, 2)
		setBackends(b, backends)

		cc, err := grpc.NewClient(f.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		require.NoError(t, err)
		defer cc.Close()
		c := scoring.NewClient(cc)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()

		seen := map[string]int{}
		for range 20 {
			r, err := c.Score(ctx, &scoring.ScoreRequest{Text: "a wonderful day"})
			require.NoError(t, err)
			seen[r.Instance]++
			assert.Equal(t, "joy", r.Label)
			assert.Greater(t, r.DeadlineMs, int64(5000), "the deadline reached the backend")
		}
		assert.Equal(t, map[string]int{"0": 10, "1": 10}, seen, "round robin over both")

		s, err := c.ScoreStream(ctx)
		require.NoError(t, err)
		for _, text := range []string{"so angry", "so sad", "so happy"} {
			require.NoError(t, s.Send(&scoring.ScoreRequest{Text: text}))
			r, err := s.Recv()
			require.NoError(t, err, "answered before the next message is sent")
			assert.NotEmpty(t, r.Label)
		}
		require.NoError(t, s.CloseSend())
		_, err = s.Recv()
		assert.EqualError(t, err, "EOF")

		short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
		began := time.Now()
		_, err = c.Score(short, &scoring.ScoreRequest{Text: "slow", DelayMs: 5000})
		cancelShort()
		assert.Equal(t, codes.DeadlineExceeded, status.Code(err), "%v", err)
		assert.Less(t, time.Since(began), 2*time.Second)

		setServing(0, false)
		require.Eventually(t, func() bool { return countState(b, StateDown) == 1 }, 5*time.Second, 10*time.Millisecond,
			"a backend NOT_SERVING taken out by the gRPC health check")
		for range 10 {
			r, err := c.Score(ctx, &scoring.ScoreRequest{Text: "x"})
			require.NoError(t, err)
			assert.Equal(t, "1", r.Instance)
		}
		setServing(0, true)
		require.Eventually(t, func() bool { return countState(b, StateDown) == 0 }, 5*time.Second, 10*time.Millisecond,
			"back in once SERVING")
	})
}

func countState(b *Balancer, state string) int {
	n := 0
	for _, st := range b.Backends() {
		if st.State == state {
			n++
		}
	}
	return n
}

// TestH2CServiceHealthCheckedOverH2C: an h2c service's backends (HTTP/2
// only: an HTTP/1.1 check could not pass) are checked with GET HealthPath
// over h2c.
func TestH2CServiceHealthCheckedOverH2C(t *testing.T) {
	cfg := testConfig()
	cfg.HealthInterval, cfg.HealthTimeout, cfg.Rise, cfg.Fall = 50*time.Millisecond, 50*time.Millisecond, 1, 1
	b, _ := serveBalancer(t, relays[0], cfg)
	b.Service("predictor").SetProtocol(H2C)
	var healthy atomic.Bool
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Protocols: new(http.Protocols), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != cfg.HealthPath || r.ProtoMajor != 2 || !healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})}
	srv.Protocols.SetUnencryptedHTTP2(true)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	setBackends(b, []testBackend{{Addr: netip.MustParseAddrPort(ln.Addr().String()), Node: "n0"}})
	require.Eventually(t, func() bool { return countState(b, StateDown) == 1 }, 5*time.Second, 10*time.Millisecond)
	healthy.Store(true)
	require.Eventually(t, func() bool { return countState(b, StateDown) == 0 }, 5*time.Second, 10*time.Millisecond,
		"GET %s over h2c passes", cfg.HealthPath)
}

func TestParseGRPCTimeout(t *testing.T) {
	for in, want := range map[string]time.Duration{"200m": 200 * time.Millisecond, "5S": 5 * time.Second, "1H": time.Hour,
		"3M": 3 * time.Minute, "7u": 7 * time.Microsecond, "99999999n": 99999999} {
		got, ok := parseGRPCTimeout(in)
		assert.True(t, ok, in)
		assert.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "5", "S", "5s", "123456789S", "-1S", "1.5S"} {
		_, ok := parseGRPCTimeout(bad)
		assert.False(t, ok, bad)
	}
}
