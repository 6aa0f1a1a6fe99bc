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
