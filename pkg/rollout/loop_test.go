package rollout

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/membership"
)

// These tests run the coordinator's loop under testing/synctest's fake
// clock, so that minutes of rollout take no time and every instant is exact.
// Serf's real sockets cannot run inside a synctest bubble, so membership is
// fakeCluster: its agents keep the deploy contract as simAgent does (answer
// at once, converge after a while, never on a broken image). The real
// cluster is in coordinator_test.go and test/e2e.

// fakeCluster is an in-memory membership of agents a, b, c….
type fakeCluster struct {
	converge time.Duration
	broken   map[string]bool

	mu      sync.Mutex
	nodes   map[string]membership.Node
	changed chan struct{}
	reads   int                 // Members calls
	deploys map[string][]string // node → images asked, in order (not check-only)
}

func newFakeCluster(n int, converge time.Duration) *fakeCluster {
	f := &fakeCluster{converge: converge, broken: map[string]bool{"predictor:1.1.0-broken": true},
		nodes: map[string]membership.Node{}, changed: make(chan struct{}), deploys: map[string][]string{}}
	for i := range n {
		node := on(v10)
		node.Name = string(rune('a' + i))
		f.nodes[node.Name] = node
	}
	return f
}

func (f *fakeCluster) Members() []membership.Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	out := make([]membership.Node, 0, len(f.nodes))
	for _, n := range f.nodes {
		out = append(out, n)
	}
	return out
}

func (f *fakeCluster) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

// update changes a node and tells who waits for a change.
func (f *fakeCluster) update(name string, fn func(*membership.Node)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.nodes[name]
	fn(&n)
	f.nodes[name] = n
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeCluster) Deploy(_ context.Context, nodes []string, req membership.DeployRequest, timeout time.Duration) map[string]error {
	out := map[string]error{}
	for _, name := range nodes {
		f.mu.Lock()
		n, ok := f.nodes[name]
		if ok && !req.CheckOnly {
			f.deploys[name] = append(f.deploys[name], req.Image)
		}
		f.mu.Unlock()
		if !ok || n.Status != membership.StatusAlive {
			out[name] = fmt.Errorf("%s did not answer within %s, asked 2 times", name, timeout)
			continue
		}
		out[name] = nil
		if req.CheckOnly || n.Tags.Want == req.Image {
			continue
		}
		image := req.Image
		f.update(name, func(n *membership.Node) { n.Tags.Want, n.Tags.Ports = image, []uint16{8000} })
		time.AfterFunc(f.converge, func() {
			if f.broken[image] {
				return
			}
			f.update(name, func(n *membership.Node) {
				if n.Tags.Want == image {
					n.Tags.Image, n.Tags.Ports = image, []uint16{8000, 8001}
				}
			})
		})
	}
	return out
}

func (f *fakeCluster) image(name string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nodes[name].Tags.Image
}

func (f *fakeCluster) asked(name string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.deploys[name])
}

func (f *fakeCluster) memberReads() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}

func fakeCoordinator(t *testing.T, f *fakeCluster, statePath string) *Coordinator {
	t.Helper()
	c, err := New(Config{Members: f, MembersChanged: f.Changed, Service: "predictor", StatePath: statePath})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

// TestLoopWakesOnEventsAndDeadlines: a rollout of 3 hosts that converge in
// 30 s with a min healthy of 10 min takes exactly 3 × 10 min 30 s: each
// batch starts the instant the one before has been healthy for 10 min, each
// host is seen healthy the instant its tags say so. Over those 31 min 30 s
// membership is read a few dozen times: there is no poll (a 100 ms one
// would read it about 19,000 times).
func TestLoopWakesOnEventsAndDeadlines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeCluster(3, 30*time.Second)
		c := fakeCoordinator(t, f, "")
		began := time.Now()
		_, err := c.Start(context.Background(), Options{Image: v11, MinHealthy: Duration(10 * time.Minute),
			Deadline: Duration(time.Hour)})
		require.NoError(t, err)
		time.Sleep(time.Hour)

		r, err := c.Get("current")
		require.NoError(t, err)
		require.Equal(t, StateSucceeded, r.State, r.Message)
		assert.Equal(t, 3*(10*time.Minute+30*time.Second), r.Finished.Sub(r.Created))
		for i, h := range r.Hosts {
			start := began.Add(time.Duration(i) * (10*time.Minute + 30*time.Second))
			assert.True(t, start.Equal(h.Started), "%s started at %s, want %s", h.Node, h.Started, start)
			assert.Equal(t, 30*time.Second, h.HealthySince.Sub(h.Started), h.Node)
			assert.Equal(t, 10*time.Minute, h.Finished.Sub(h.HealthySince), h.Node)
			assert.Equal(t, []string{v11}, f.asked(h.Node), "%s asked once", h.Node)
			assert.Equal(t, v11, f.image(h.Node))
		}
		assert.Less(t, f.memberReads(), 50, "membership read on events only")
	})
}

// TestLoopRevertsAtTheDeadline: a broken image never converges; the batch
// is reverted the instant its deadline passes, and the rollout ends once
// the host is back on the previous image.
func TestLoopRevertsAtTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeCluster(2, 30*time.Second)
		c := fakeCoordinator(t, f, "")
		_, err := c.Start(context.Background(), Options{Image: "predictor:1.1.0-broken", MinHealthy: Duration(time.Minute),
			Deadline: Duration(5 * time.Minute)})
		require.NoError(t, err)
		time.Sleep(time.Hour)

		r, err := c.Get("current")
		require.NoError(t, err)
		assert.Equal(t, StateFailed, r.State)
		assert.True(t, r.Reverted)
		assert.Equal(t, "a not healthy on predictor:1.1.0-broken within 5m0s; batch reverted to predictor:1.0.0", r.Message)
		assert.Equal(t, 5*time.Minute+30*time.Second, r.Finished.Sub(r.Created))
		assert.Equal(t, []HostState{HostReverted, HostPending}, []HostState{r.Hosts[0].State, r.Hosts[1].State})
		assert.Equal(t, []string{"predictor:1.1.0-broken", v10}, f.asked("a"))
		assert.Empty(t, f.asked("b"), "later batches are never touched")
	})
}

// TestLoopAbort: Abort wakes the loop at once; it returns when the batch in
// progress is back on the previous image.
func TestLoopAbort(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeCluster(2, 30*time.Second)
		c := fakeCoordinator(t, f, "")
		_, err := c.Start(context.Background(), Options{Image: v11, MinHealthy: Duration(time.Hour), Deadline: Duration(time.Hour)})
		require.NoError(t, err)
		time.Sleep(time.Minute)
		require.Equal(t, v11, f.image("a"))

		aborted := time.Now()
		r, err := c.Abort()
		require.NoError(t, err)
		assert.Equal(t, 30*time.Second, time.Since(aborted), "Abort returned once the revert converged")
		assert.Equal(t, StateAborted, r.State)
		assert.True(t, r.Reverted)
		assert.Equal(t, "aborted by the operator; batch reverted to predictor:1.0.0", r.Message)
		assert.Equal(t, v10, f.image("a"))
		assert.Empty(t, f.asked("b"))
		_, err = c.Abort()
		assert.ErrorIs(t, err, ErrNotRunning)
	})
}

// TestLoopResumesAfterClose: a coordinator closed mid-batch and started
// again from its state files resumes the rollout where it stood: the host
// keeps the healthy time it had, so the batch completes at once.
func TestLoopResumesAfterClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "rollouts.json")
		f := newFakeCluster(2, 30*time.Second)
		c := fakeCoordinator(t, f, path)
		started, err := c.Start(context.Background(), Options{Image: v11, MinHealthy: Duration(5 * time.Minute),
			Deadline: Duration(time.Hour)})
		require.NoError(t, err)
		time.Sleep(time.Minute)
		c.Close()
		c.Close()
		_, err = c.Start(context.Background(), Options{Image: v11})
		require.Error(t, err, "a closed coordinator starts nothing")
		stopped, err := c.Get("current")
		require.NoError(t, err)
		require.Equal(t, HostVerifying, stopped.Hosts[0].State)

		time.Sleep(10 * time.Minute)
		resumed := time.Now()
		c2 := fakeCoordinator(t, f, path)
		time.Sleep(time.Hour)
		r, err := c2.Get(started.ID)
		require.NoError(t, err)
		require.Equal(t, StateSucceeded, r.State, r.Message)
		assert.True(t, stopped.Hosts[0].HealthySince.Equal(r.Hosts[0].HealthySince), "a kept its healthy time")
		assert.True(t, resumed.Equal(r.Hosts[0].Finished), "a was done the instant the coordinator resumed")
		assert.True(t, resumed.Equal(r.Hosts[1].Started), "b started then")
		assert.Equal(t, []string{v11}, f.asked("a"), "a, done on resuming, is not asked again")
		assert.Equal(t, []string{v11}, f.asked("b"))
	})
}

// TestHistoryBounded: the state keeps the current rollout and the
// MaxHistory before it; a
// step of the running one rewrites only its progress file, never the
// history file.
func TestHistoryBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "rollouts.json")
		f := newFakeCluster(1, time.Second)
		c := fakeCoordinator(t, f, path)
		var ids []string
		for i := range MaxHistory + 10 {
			image := []string{v11, v10}[i%2]
			r, err := c.Start(context.Background(), Options{Image: image, MinHealthy: Duration(time.Second), Deadline: Duration(time.Minute)})
			require.NoError(t, err, "rollout %d", i)
			ids = append(ids, r.ID)
			if i == MaxHistory+9 {
				break
			}
			time.Sleep(time.Minute)
			require.Equal(t, StateSucceeded, c.History()[0].State, "rollout %d", i)
		}
		hist := c.History()
		require.Len(t, hist, MaxHistory+1, "the running rollout and the last MaxHistory")
		assert.Equal(t, ids[len(ids)-1], hist[0].ID, "newest first")
		assert.Equal(t, ids[len(ids)-MaxHistory-1], hist[MaxHistory].ID)

		history, err := os.ReadFile(path)
		require.NoError(t, err)
		time.Sleep(1500 * time.Millisecond) // a converged, verifying: a step saved that
		progress, err := os.ReadFile(filepath.Join(filepath.Dir(path), "rollouts.progress.json"))
		require.NoError(t, err)
		assert.Contains(t, string(progress), `"verifying"`)
		again, err := os.ReadFile(path)
		require.NoError(t, err)
		assert.Equal(t, string(history), string(again), "the history file is written when a rollout starts or ends")
		time.Sleep(time.Minute)
		again, err = os.ReadFile(path)
		require.NoError(t, err)
		assert.NotEqual(t, string(history), string(again), "and when it ends")
	})
}
