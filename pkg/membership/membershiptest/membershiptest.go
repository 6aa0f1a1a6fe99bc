// Package membershiptest starts real gossip members on loopback for the
// tests of the packages built on membership: stand-ins that keep one side
// of a query contract (an agent answering deploy or scale queries) without
// running what the real side runs. It is for tests only.
package membershiptest

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/membership"
)

// Start starts a member with cfg (its QueryCh is set here), joins it to
// join when that is set, and hands each query it receives to answer, one at
// a time, until the test ends; then it shuts the member down.
func Start(t testing.TB, cfg *membership.Config, join string, answer func(*membership.Query)) *membership.Cluster {
	t.Helper()
	queries := make(chan *membership.Query, 16)
	cfg.QueryCh = queries
	c, err := membership.New(cfg)
	require.NoError(t, err)
	stop, done := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() {
		close(stop)
		<-done
		_ = c.Shutdown()
	})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case q := <-queries:
				answer(q)
			}
		}
	}()
	if join != "" {
		_, err = c.Join([]string{join})
		require.NoError(t, err)
	}
	return c
}
