package autoscale

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cluster is a Cluster whose load is a function of time, and whose count
// changes as soon as it is asked to.
type cluster struct {
	deciding atomic.Bool
	rolling  atomic.Bool
	load     func(time.Time) float64

	mu       sync.Mutex
	replicas int
	scales   []int
	since    []time.Time // what each Load asked for
}

func (c *cluster) Deciding() bool         { return c.deciding.Load() }
func (c *cluster) RollingOut(string) bool { return c.rolling.Load() }
func (c *cluster) Replicas(string) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.replicas, nil
}
func (c *cluster) Scale(_ context.Context, _ string, n int, _ string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.replicas = n
	c.scales = append(c.scales, n)
	return nil
}

// Load is one bucket per second since since, up to now, as gateways keep.
func (c *cluster) Load(_ context.Context, _ string, since time.Time) ([]Sample, error) {
	c.mu.Lock()
	c.since = append(c.since, since)
	c.mu.Unlock()
	var out []Sample
	now := time.Now().Truncate(time.Second)
	for at := since.Truncate(time.Second).Add(time.Second); !at.After(now); at = at.Add(time.Second) {
		out = append(out, Sample{At: at, InFlight: c.load(at)})
	}
	return out, nil
}

func (c *cluster) count() int { n, _ := c.Replicas(""); return n }
func (c *cluster) asked() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Time(nil), c.since...)
}
func (c *cluster) scaled() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.scales...)
}

func testSettings() Settings {
	s := settings()
	s.StableWindow, s.PanicWindow, s.ScaleDownStabilization = 20*time.Second, 3*time.Second, 30*time.Second
	return s
}

// TestControllerFollowsTheLoad: the deciding gateway's controller scales
// up fast after a step, down after the stabilization, and records each
// change with its reason; a gateway that does not decide never scales.
func TestControllerFollowsTheLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		step := func(at time.Time) float64 {
			if d := at.Sub(start); d > 30*time.Second && d <= 60*time.Second {
				return 80
			}
			return 16
		}
		a := &cluster{replicas: 2, load: step}
		a.deciding.Store(true)
		b := &cluster{replicas: 2, load: step}
		var cb *Controller
		ca, err := NewController(ControllerConfig{OnEvent: func(svc string, e Event) { cb.Record(svc, e) }}, a)
		require.NoError(t, err)
		cb, err = NewController(ControllerConfig{}, b)
		require.NoError(t, err)
		_, err = ca.Set("predictor", testSettings())
		require.NoError(t, err)
		_, err = cb.Set("predictor", testSettings())
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go ca.Run(ctx)
		go cb.Run(ctx)

		synctestSleep(30 * time.Second)
		assert.Equal(t, 2, a.count(), "steady at 16 in flight for 2 × 8")
		synctestSleep(5 * time.Second)
		up := a.scaled()
		require.NotEmpty(t, up)
		assert.Equal(t, 10, up[len(up)-1], "up to 80/8 within the panic window after the step (as it fills: %v)", up)
		assert.IsIncreasing(t, up)
		synctestSleep(25 * time.Second) // the load falls at 60 s
		synctestSleep(20 * time.Second)
		assert.Equal(t, 10, a.count(), "still up within the stabilization")
		synctestSleep(40 * time.Second)
		assert.Equal(t, 2, a.count(), "down after the stabilization")
		assert.Empty(t, b.scaled(), "the gateway that does not decide never scales")

		st := ca.Status()
		require.Len(t, st, 1)
		assert.True(t, st[0].Deciding)
		assert.Equal(t, 2, st[0].Current)
		require.NotEmpty(t, st[0].Events)
		assert.Contains(t, st[0].Events[0].Reason, "2 → ")
		assert.Contains(t, st[0].Events[0].Reason, ": panic")
		last := st[0].Events[len(st[0].Events)-1]
		assert.Equal(t, 2, last.To, "the last event is the way down")
		assert.False(t, cb.Status()[0].Deciding)
		assert.Equal(t, st[0].Events, cb.Status()[0].Events, "the decider's events are shared with the other gateways")
	})
}

// TestControllerFrozenDuringRollout: no scale while a rollout of the
// service runs, an event says why, and deciding resumes after it.
func TestControllerFrozenDuringRollout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := &cluster{replicas: 2, load: func(time.Time) float64 { return 80 }}
		c.deciding.Store(true)
		c.rolling.Store(true)
		ctl, err := NewController(ControllerConfig{}, c)
		require.NoError(t, err)
		_, err = ctl.Set("predictor", testSettings())
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go ctl.Run(ctx)
		synctestSleep(10 * time.Second)
		assert.Empty(t, c.scaled())
		st := ctl.Status()[0]
		assert.Equal(t, "a rollout of the service runs", st.Frozen)
		assert.Equal(t, "frozen: a rollout of the service runs", st.Events[0].Reason)
		c.rolling.Store(false)
		synctestSleep(2 * time.Second)
		assert.Equal(t, []int{10}, c.scaled())
	})
}

// TestControllerTakesOverWithHistory: a controller that becomes the
// decider reads the load of the whole stable window at once (the gateways
// keep it), so it decides from the first step, not a window later.
func TestControllerTakesOverWithHistory(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := &cluster{replicas: 4, load: func(time.Time) float64 { return 32 }}
		ctl, err := NewController(ControllerConfig{}, c)
		require.NoError(t, err)
		s := testSettings()
		_, err = ctl.Set("predictor", s)
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go ctl.Run(ctx)
		synctestSleep(30 * time.Second)
		require.Empty(t, c.asked(), "no load read while not deciding")
		c.deciding.Store(true)
		synctestSleep(time.Second + time.Millisecond)
		synctest.Wait()
		asked := c.asked()
		require.NotEmpty(t, asked)
		assert.Equal(t, time.Now().Add(-s.StableWindow).Truncate(time.Second), asked[0].Truncate(time.Second))
		st := ctl.Status()[0]
		assert.InDelta(t, 32, st.Stable, 0.01)
		assert.Contains(t, st.Reason, "steady")
	})
}

func TestControllerSettingsPersist(t *testing.T) {
	dir := t.TempDir()
	c := &cluster{}
	ctl, err := NewController(ControllerConfig{Dir: dir}, c)
	require.NoError(t, err)
	bad := testSettings()
	bad.Min, bad.Max = 5, 3
	_, err = ctl.Set("predictor", bad)
	assert.EqualError(t, err, "max 3: want at least 1 and at least min 5")
	assert.Empty(t, ctl.Settings(), "a refused setting changes nothing")
	_, err = ctl.Set("predictor", testSettings())
	require.NoError(t, err)
	_, err = ctl.Set("tone", testSettings())
	require.NoError(t, err)
	off, err := ctl.Off("tone")
	require.NoError(t, err)
	assert.True(t, off.Off)
	_, err = ctl.Off("tone")
	assert.ErrorIs(t, err, ErrUnknownService)

	// Another gateway's entries: the newest wins; an older one changes
	// nothing; an off entry is kept so the old settings do not come back.
	stale := Entry{Settings: testSettings(), Version: off.Version - 1}
	applied, err := ctl.Apply("tone", stale)
	require.NoError(t, err)
	assert.False(t, applied, "older than the off entry")
	newer := testSettings()
	newer.Max = 7
	applied, err = ctl.Apply("predictor", Entry{Settings: newer, Version: time.Now().Add(time.Hour).UnixNano()})
	require.NoError(t, err)
	assert.True(t, applied)
	_, err = ctl.Apply("x", Entry{Settings: bad, Version: 1})
	assert.Error(t, err)

	again, err := NewController(ControllerConfig{Dir: dir}, c)
	require.NoError(t, err)
	assert.Equal(t, map[string]Settings{"predictor": newer}, again.Settings())
	assert.True(t, again.Entries()["tone"].Off, "the off entry persists")

	require.NoError(t, os.WriteFile(filepath.Join(dir, settingsFile), []byte(`{"predictor":{"Settings":{"Min":5,"Max":3},"Version":1}}`), 0o600))
	_, err = NewController(ControllerConfig{Dir: dir}, c)
	assert.ErrorContains(t, err, "service predictor: max 3: want at least 1 and at least min 5")
}

// synctestSleep sleeps in the bubble, then waits for its goroutines to
// block, so what they did by then is seen.
func synctestSleep(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}
