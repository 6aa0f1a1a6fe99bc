package scoring

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/herd-cluster/herd/internal/h2health"
)

func serve(t *testing.T, broken bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv, _ := NewServer(&Model{Version: "1.0.0", Instance: "r0"}, broken)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) *Client {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { cc.Close() })
	return NewClient(cc)
}

func TestScore(t *testing.T) {
	addr := serve(t, false)
	c := dial(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.Score(ctx, &ScoreRequest{Text: "I love this, what a wonderful day"})
	require.NoError(t, err)
	assert.Equal(t, "joy", r.Label)
	assert.Equal(t, "1.0.0", r.Version)
	assert.Equal(t, "r0", r.Instance)
	assert.InDelta(t, 5000, r.DeadlineMs, 1000, "the caller's deadline reached the server")

	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelShort()
	_, err = c.Score(short, &ScoreRequest{Text: "slow", DelayMs: 5000})
	assert.Equal(t, codes.DeadlineExceeded, status.Code(err))
	_, err = c.Score(ctx, &ScoreRequest{DelayMs: -1})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))

	s, err := c.ScoreStream(ctx)
	require.NoError(t, err)
	for _, text := range []string{"I am so angry", "this is sad"} {
		require.NoError(t, s.Send(&ScoreRequest{Text: text}))
		r, err := s.Recv()
		require.NoError(t, err, "each answered before the next is sent")
		assert.NotEmpty(t, r.Label)
	}
	require.NoError(t, s.CloseSend())
	_, err = s.Recv()
	assert.Equal(t, "EOF", err.Error())

	assert.NoError(t, h2health.GRPC(ctx, addr, ""))
	assert.NoError(t, h2health.GRPC(ctx, addr, ServiceName))
}

func TestBrokenIsNotServing(t *testing.T) {
	addr := serve(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	assert.ErrorIs(t, h2health.GRPC(ctx, addr, ""), h2health.ErrNotServing)
	_, err := dial(t, addr).Score(ctx, &ScoreRequest{Text: "still scores"})
	assert.NoError(t, err)
}
