package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/herd-cluster/herd/examples/predictor-grpc/scoring"
	"github.com/herd-cluster/herd/internal/testutil"
)

var buildGRPCOnce sync.Once

// startGRPCAgent starts an agent running the gRPC predictor at version.
func startGRPCAgent(t *testing.T, g *gatewayProc, node, ip string, replicas int, version string) *agentProc {
	t.Helper()
	buildAll(t)
	buildGRPCOnce.Do(func() {
		testutil.BuildExampleImages(t, filepath.Join(binDir, "images"), "predictor-grpc", "1.0.0", "1.1.0", "1.2.0-broken")
	})
	return startAgent(t, g, node, ip, replicas, "--service", "scoring", "--protocol", "grpc",
		"--image", "predictor-grpc:"+version)
}

// startGRPCCluster starts a gateway with --h2c and two agents, named
// prefix-a and prefix-b, of the gRPC predictor 1.0.0, waits until it routes
// to their replicas, and returns it with a client.
func startGRPCCluster(t *testing.T, prefix string, replicas int) (*gatewayProc, *scoring.Client) {
	t.Helper()
	g := startGateway(t, "--h2c", "--health-interval", "200ms", "--health-timeout", "200ms")
	startGRPCAgent(t, g, prefix+"-a", "127.0.0.2", replicas, "1.0.0")
	startGRPCAgent(t, g, prefix+"-b", "127.0.0.3", replicas, "1.0.0")
	g.waitBackends(t, 2*replicas, 30*time.Second)
	return g, grpcClient(t, g)
}

// grpcClient is a gRPC client of the gateway's plain listener (h2c).
func grpcClient(t *testing.T, g *gatewayProc) *scoring.Client {
	t.Helper()
	cc, err := grpc.NewClient(strings.TrimPrefix(g.url, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { cc.Close() })
	return scoring.NewClient(cc)
}

// TestGRPC: a gRPC service on two agents behind a gateway with --h2c:
// unary calls reach both backends, a bidirectional stream is answered
// message by message, the caller's deadline reaches the backend and a slow
// call ends DeadlineExceeded; an HTTP/1.1 request gets 505.
func TestGRPC(t *testing.T) {
	g, c := startGRPCCluster(t, "rpc", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	seen := map[string]int{}
	for range 10 {
		r, err := c.Score(ctx, &scoring.ScoreRequest{Text: "what a wonderful day"})
		require.NoError(t, err)
		assert.Equal(t, "joy", r.Label)
		assert.Equal(t, "1.0.0", r.Version)
		assert.Greater(t, r.DeadlineMs, int64(10_000), "the deadline reached the backend")
		seen[strings.SplitN(r.Instance, "/", 2)[0]]++
	}
	assert.Equal(t, map[string]int{"rpc-a": 5, "rpc-b": 5}, seen, "both backends reached, in turn")

	s, err := c.ScoreStream(ctx)
	require.NoError(t, err)
	for _, text := range []string{"so angry", "so sad", "I am afraid", "great"} {
		require.NoError(t, s.Send(&scoring.ScoreRequest{Text: text}))
		r, err := s.Recv()
		require.NoError(t, err, "each message answered before the next is sent")
		assert.NotEmpty(t, r.Label)
	}
	require.NoError(t, s.CloseSend())
	_, err = s.Recv()
	assert.ErrorIs(t, err, io.EOF, "the stream ends with the backend's status OK, in trailers")

	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	began := time.Now()
	_, err = c.Score(short, &scoring.ScoreRequest{Text: "slow", DelayMs: 5000})
	cancelShort()
	took := time.Since(began)
	assert.Equal(t, codes.DeadlineExceeded, status.Code(err), "%v", err)
	assert.Less(t, took, 2*time.Second)
	t.Logf("MEASURE gRPC call with a 300 ms deadline against a 5 s method: ended %s after %s", status.Code(err), took.Round(time.Millisecond))

	_, err = c.Score(ctx, &scoring.ScoreRequest{DelayMs: -1})
	assert.Equal(t, codes.InvalidArgument, status.Code(err), "a trailers-only answer: %v", err)

	resp, err := http.Post(g.url+"/"+scoring.ServiceName+"/Score", "application/grpc", strings.NewReader(""))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusHTTPVersionNotSupported, resp.StatusCode, "HTTP/1.1 to a gRPC service")
}

// grpcLoad calls the service at a constant rate until stopped, one call in
// ten a short bidirectional stream.
type grpcLoad struct {
	sent, failed atomic.Int64
	mu           sync.Mutex
	errs         []string
	versions     map[string]int
	stop         chan struct{}
	wg           sync.WaitGroup
}

func startGRPCLoad(c *scoring.Client, rate int) *grpcLoad {
	l := &grpcLoad{stop: make(chan struct{}), versions: map[string]int{}}
	l.wg.Go(func() {
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			l.sent.Add(1)
			l.wg.Go(func() { l.record(l.one(c, i%10 == 9)) })
		}
	})
	return l
}

func (l *grpcLoad) one(c *scoring.Client, stream bool) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !stream {
		r, err := c.Score(ctx, &scoring.ScoreRequest{Text: "fine"})
		if err != nil {
			return "", err
		}
		return r.Version, nil
	}
	s, err := c.ScoreStream(ctx)
	if err != nil {
		return "", err
	}
	var version string
	for range 3 {
		if err := s.Send(&scoring.ScoreRequest{Text: "fine"}); err != nil {
			return "", err
		}
		r, err := s.Recv()
		if err != nil {
			return "", err
		}
		version = r.Version
	}
	if err := s.CloseSend(); err != nil {
		return "", err
	}
	if _, err := s.Recv(); !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("stream end: %v", err)
	}
	return version, nil
}

func (l *grpcLoad) record(version string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.failed.Add(1)
		if len(l.errs) < 10 {
			l.errs = append(l.errs, err.Error())
		}
		return
	}
	l.versions[version]++
}

func (l *grpcLoad) finish() {
	close(l.stop)
	l.wg.Wait()
}

// TestGRPCRollout: the gRPC service on two agents × 2 replicas rolled from
// 1.0.0 to 1.1.0 under a constant gRPC load (unary calls and short
// bidirectional streams): 0 failed calls, and only 1.1.0 answers after. A
// rollout to a build whose health says NOT_SERVING is reverted, still with
// 0 failed calls.
func TestGRPCRollout(t *testing.T) {
	g, c := startGRPCCluster(t, "rpcroll", 2)
	l := startGRPCLoad(c, 200)
	time.Sleep(time.Second)

	began := time.Now()
	out, code := g.clusterctl(t, "rollout", "--min-healthy", "1s", "--deadline", "30s", "predictor-grpc:1.1.0")
	took := time.Since(began)
	time.Sleep(time.Second)
	l.finish()
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "succeeded")
	t.Logf("MEASURE gRPC rollout 2×2 1.0.0→1.1.0: took %s, calls sent=%d failed=%d (by version answering: %v)",
		took.Round(time.Millisecond), l.sent.Load(), l.failed.Load(), l.versions)
	require.Zero(t, l.failed.Load(), "failed calls: %v", l.errs)
	assert.Greater(t, l.sent.Load(), int64(1000))

	assertVersion := func(want string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for range 8 {
			r, err := c.Score(ctx, &scoring.ScoreRequest{Text: "after"})
			require.NoError(t, err)
			assert.Equal(t, want, r.Version)
		}
	}
	assertVersion("1.1.0")

	l = startGRPCLoad(c, 200)
	out, code = g.clusterctl(t, "rollout", "--min-healthy", "1s", "--deadline", "4s", "predictor-grpc:1.2.0-broken")
	time.Sleep(500 * time.Millisecond)
	l.finish()
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "reverted to predictor-grpc:1.1.0")
	t.Logf("MEASURE gRPC rollout to a NOT_SERVING build, reverted: calls sent=%d failed=%d", l.sent.Load(), l.failed.Load())
	require.Zero(t, l.failed.Load(), "failed calls: %v", l.errs)
	g.waitBackends(t, 4, 10*time.Second)
	assertVersion("1.1.0")
}
