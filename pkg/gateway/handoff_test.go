package gateway

import (
	"context"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/membership"
)

// socketPair is a connected pair of unix sockets, as an upgrade passes one
// end to the new process.
func socketPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	require.NoError(t, err)
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "handoff")
		c, err := net.FileConn(f)
		f.Close()
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		conns[i] = c
	}
	return conns[0], conns[1]
}

// The new process starts from the old one's view and applies every later
// event before the old one's Apply returns (so before it acknowledges any
// sync); then the old one hands gossip over.
func TestHandoff(t *testing.T) {
	ctx := context.Background()
	old := runGateway(t, DefaultConfig())
	require.NoError(t, old.Apply(ctx, membership.Event{Type: membership.EventJoin, Nodes: []membership.Node{
		agentNode("a", 1, membership.StateActive, 9001, 9002), agentNode("b", 1, membership.StateActive, 9101)}}))
	c1, c2 := socketPair(t)
	leader, err := Lead(ctx, old, c1)
	require.NoError(t, err)

	view, succ, err := ReadView(c2)
	require.NoError(t, err)
	cfg := DefaultConfig()
	cfg.Logger = quiet()
	cfg.Balancer.HealthInterval = 0
	next, err := New(cfg)
	require.NoError(t, err)
	assert.Equal(t, 2, next.Restore(view))
	assert.Equal(t, 3, next.Balancer().Len(), "routes from the old one's view")
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { next.Run(runCtx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	go succ.Run(runCtx, next)

	require.NoError(t, old.Apply(ctx, membership.Event{Type: membership.EventUpdate, Nodes: []membership.Node{
		agentNode("a", 2, membership.StateDraining, 9001, 9002)}}))
	assert.Equal(t, 1, next.Balancer().Len(), "applied in the new process before the old one's Apply returned")
	require.NoError(t, old.Apply(ctx, membership.Event{Type: membership.EventLeave, Nodes: []membership.Node{agentNode("b", 1, membership.StateActive)}}))
	assert.Zero(t, next.Balancer().Len())

	require.NoError(t, leader.HandOver())
	select {
	case <-succ.Taken:
		assert.NoError(t, succ.Err())
	case <-time.After(5 * time.Second):
		t.Fatal("gossip not handed over")
	}
}

// A new process that goes away is dropped: the old one goes on alone, and
// does not wait for it.
func TestHandoffFollowerGone(t *testing.T) {
	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.FollowTimeout = 300 * time.Millisecond
	old := runGateway(t, cfg)
	c1, c2 := socketPair(t)
	_, err := Lead(ctx, old, c1)
	require.NoError(t, err)
	_, _, err = ReadView(c2)
	require.NoError(t, err)
	c2.Close()
	require.NoError(t, old.Apply(ctx, membership.Event{Type: membership.EventJoin, Nodes: []membership.Node{
		agentNode("a", 1, membership.StateActive, 9001)}}))
	assert.Equal(t, 1, old.Balancer().Len())
	old.mu.Lock()
	assert.Nil(t, old.follower, "dropped")
	old.mu.Unlock()
}
