package rollout

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/membership"
)

// FuzzStateFile: any rollouts.json loads or fails with an error naming the
// file; a loaded one answers Get and History without panicking.
func FuzzStateFile(f *testing.F) {
	f.Add([]byte(`{"history":[]}`))
	f.Add([]byte(`{"current":{"id":"1","image":"predictor:1.1.0","state":"succeeded","hosts":[{"node":"a","state":"healthy","batch":1}]},"history":[]}`))
	f.Add([]byte(`{"current":{"id":"x","hosts":[`))
	f.Add([]byte(`{"history":[{"id":"1","min_healthy":"5s","deadline":"bogus"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), "rollouts.json")
		require.NoError(t, os.WriteFile(path, b, 0o600))
		c, err := New(Config{StatePath: path, Members: noMembers{}})
		if err != nil {
			require.Contains(t, err.Error(), path)
			return
		}
		defer c.Close()
		_, _ = c.Get("current")
		_ = c.History()
	})
}

// noMembers is an empty cluster: a resumed rollout finds no one to deploy to.
type noMembers struct{}

func (noMembers) Members() []membership.Node { return nil }

func (noMembers) Deploy(_ context.Context, nodes []string, _ membership.DeployRequest, _ time.Duration) map[string]error {
	out := map[string]error{}
	for _, n := range nodes {
		out[n] = errors.New(n + " is not in the cluster")
	}
	return out
}
