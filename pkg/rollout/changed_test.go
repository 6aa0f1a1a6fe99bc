package rollout

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestChangedClosesUntilTheEnd: a channel taken before any change closes
// when the rollout starts; one taken afterwards closes as it goes, and one
// taken after the last change is closed once the rollout has ended, so a
// waiter never misses the end.
func TestChangedClosesUntilTheEnd(t *testing.T) {
	tc := startCluster(t, 1, 50*time.Millisecond)
	c := tc.coordinator(t, "")
	first := c.Changed()
	_, err := c.Start(context.Background(), opts("predictor:1.1.0", 1, 100*time.Millisecond, 10*time.Second))
	require.NoError(t, err)
	select {
	case <-first:
	case <-time.After(time.Second):
		t.Fatal("Changed not closed by the start")
	}
	deadline := time.After(20 * time.Second)
	for {
		ch := c.Changed()
		r, err := c.Get("current")
		require.NoError(t, err)
		if r.Done() {
			require.Equal(t, StateSucceeded, r.State)
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatal("the rollout did not end, or its end closed no channel")
		}
	}
}

// TestSetRunningAndChangedPerService: a Set reports a service's running
// rollout, and wakes what waits on that service when it ends; a service
// it has no coordinator for runs nothing, starts none by being asked, and
// its channel is closed at once (look again).
func TestSetRunningAndChangedPerService(t *testing.T) {
	tc := startCluster(t, 1, 50*time.Millisecond)
	s := tc.set(t, t.TempDir(), "")
	_, running := s.Running("predictor")
	require.False(t, running)
	select {
	case <-s.Changed("tone"):
	default:
		t.Fatal("the channel of a service without a coordinator is not closed")
	}
	require.Empty(t, s.coords, "asking started no coordinator")

	r, err := s.Start(context.Background(), "predictor", opts("predictor:1.1.0", 1, 100*time.Millisecond, 10*time.Second))
	require.NoError(t, err)
	got, running := s.Running("predictor")
	require.True(t, running)
	require.Equal(t, r.ID, got.ID)
	_, running = s.Running("tone")
	require.False(t, running, "another service runs no rollout")

	deadline := time.After(20 * time.Second)
	for {
		ch := s.Changed("predictor")
		if _, running := s.Running("predictor"); !running {
			break
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatal("the rollout did not end, or its end closed no channel")
		}
	}
	last, err := s.Get("predictor", r.ID)
	require.NoError(t, err)
	require.True(t, last.Succeeded(), last.Message)
}
