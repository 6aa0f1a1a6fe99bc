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

// FuzzStateFile: any rollouts.json, with any progress file beside it, loads
// or fails with an error naming one of them; a loaded state answers Get and
// History without panicking, and a resumed rollout's loop neither.
func FuzzStateFile(f *testing.F) {
	running := `{"current":{"id":"r1","image":"predictor:1.1.0","batch":1,"min_healthy":"1s","deadline":"10s",` +
		`"previous":"predictor:1.0.0","state":"running","hosts":[{"node":"a","state":"pending","batch":1}]},"history":[]}`
	f.Add([]byte(`{"history":[]}`), []byte(nil))
	f.Add([]byte(`{"current":{"id":"1","image":"predictor:1.1.0","state":"succeeded","hosts":[{"node":"a","state":"healthy","batch":1}]},"history":[]}`), []byte(nil))
	f.Add([]byte(`{"current":{"id":"x","hosts":[`), []byte(nil))
	f.Add([]byte(`{"history":[{"id":"1","min_healthy":"5s","deadline":"bogus"}]}`), []byte(nil))
	f.Add([]byte(running), []byte(`{"rollout":{"id":"r1","image":"predictor:1.1.0","batch":1,"min_healthy":"1s",`+
		`"deadline":"10s","previous":"predictor:1.0.0","state":"running","hosts":[{"node":"a","state":"reverting",`+
		`"batch":1,"started":"2026-11-24T10:00:00Z"}]},"revert":{"final":"aborted","reason":"aborted by the operator"}}`))
	f.Add([]byte(running), []byte(`{"rollout":{"id":"r1","state":"running","hosts":[]},"revert":{"final":"running"}}`))
	f.Fuzz(func(t *testing.T, state, progress []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "rollouts.json")
		require.NoError(t, os.WriteFile(path, state, 0o600))
		if progress != nil {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "rollouts.progress.json"), progress, 0o600))
		}
		c, err := New(Config{StatePath: path, Members: noMembers{}, MembersChanged: never})
		if err != nil {
			require.Contains(t, err.Error(), dir)
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

// never is a membership that never changes.
func never() <-chan struct{} { return nil }
