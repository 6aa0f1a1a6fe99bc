package rollout

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/membership"
)

func (tc *testCluster) set(t *testing.T, dir, only string) *Set {
	t.Helper()
	s, err := NewSet(SetConfig{Dir: dir, Only: only, Config: Config{
		Members: tc.gw, MembersChanged: tc.changes.Changed, QueryTimeout: 2 * time.Second,
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Warn}),
	}})
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

// Rollouts are per service: two services roll out at the same time, a
// second rollout of one is refused naming it, and each keeps its history
// in its own file.
func TestSetRollsServicesApart(t *testing.T) {
	tc := startCluster(t, 4, 100*time.Millisecond)
	for _, a := range tc.agents[2:] {
		a.setTags(func(t *membership.Tags) { t.Service = "tone" })
	}
	require.Eventually(t, func() bool {
		n, _ := tc.gw.Member("d")
		return n.Tags.Service == "tone"
	}, 5*time.Second, 10*time.Millisecond)
	dir := t.TempDir()
	s := tc.set(t, dir, "")
	ctx := context.Background()

	_, err := s.Start(ctx, "", opts("predictor:1.1.0", 1, 200*time.Millisecond, 10*time.Second))
	require.ErrorIs(t, err, ErrRefused)
	assert.ErrorContains(t, err, "several services (predictor, tone): name one (--service)")

	p, err := s.Start(ctx, "predictor", opts("predictor:1.1.0", 1, 200*time.Millisecond, 10*time.Second))
	require.NoError(t, err)
	tone, err := s.Start(ctx, "tone", opts("predictor:1.1.0", 1, 200*time.Millisecond, 10*time.Second))
	require.NoError(t, err, "another service's rollout may run at once")
	assert.Equal(t, []string{"a", "b"}, nodes(p.Hosts))
	assert.Equal(t, []string{"c", "d"}, nodes(tone.Hosts))
	_, err = s.Start(ctx, "tone", opts("predictor:1.0.0", 1, 0, 10*time.Second))
	require.ErrorIs(t, err, ErrBusy)
	assert.ErrorContains(t, err, `service "tone" is being rolled out to predictor:1.1.0`)

	for _, svc := range []string{"predictor", "tone"} {
		c, err := s.For(svc)
		require.NoError(t, err)
		r := wait(t, c, 20*time.Second)
		assert.True(t, r.Succeeded(), r.Message)
		assert.Equal(t, svc, r.Service)
	}
	all, err := s.History("")
	require.NoError(t, err)
	require.Len(t, all, 2)
	assert.ElementsMatch(t, []string{"predictor", "tone"}, []string{all[0].Service, all[1].Service})
	toneOnly, err := s.History("tone")
	require.NoError(t, err)
	require.Len(t, toneOnly, 1)
	assert.Equal(t, tone.ID, toneOnly[0].ID)
	for _, f := range []string{"predictor.json", "tone.json"} {
		assert.FileExists(t, filepath.Join(dir, "rollouts", f))
	}
	s.Close()

	// A restarted gateway has both histories, and rolls one service back.
	s2 := tc.set(t, dir, "")
	got, err := s2.Get("tone", "current")
	require.NoError(t, err)
	assert.Equal(t, tone.ID, got.ID)
	back, err := s2.Rollback(ctx, "tone", opts("", 1, 0, 10*time.Second))
	require.NoError(t, err)
	assert.Equal(t, "predictor:1.0.0", back.Image)

	_, err = s2.Start(ctx, "Bad Name", opts("predictor:1.1.0", 1, 0, time.Second))
	assert.ErrorContains(t, err, `"Bad Name" is not a service name`)
}

func nodes(hosts []Host) []string {
	var out []string
	for _, h := range hosts {
		out = append(out, h.Node)
	}
	return out
}

// A gateway of one service keeps rollouts.json as before; routing every
// service, the same data dir's history becomes LegacyService's.
func TestSetAdoptsTheSingleServiceState(t *testing.T) {
	tc := startCluster(t, 2, 50*time.Millisecond)
	dir := t.TempDir()
	one := tc.set(t, dir, "predictor")
	_, err := one.Start(context.Background(), "tone", opts("predictor:1.1.0", 1, 0, 10*time.Second))
	assert.ErrorContains(t, err, `this gateway rolls out service "predictor" only, not "tone"`)
	r, err := one.Start(context.Background(), "", opts("predictor:1.1.0", 2, 0, 10*time.Second))
	require.NoError(t, err)
	c, err := one.For("")
	require.NoError(t, err)
	wait(t, c, 10*time.Second)
	one.Close()
	require.FileExists(t, filepath.Join(dir, "rollouts.json"))

	all := tc.set(t, dir, "")
	got, err := all.Get(LegacyService, "current")
	require.NoError(t, err)
	assert.Equal(t, r.ID, got.ID)
	assert.Equal(t, LegacyService, got.Service)
	_, err = os.Stat(filepath.Join(dir, "rollouts.json"))
	assert.ErrorIs(t, err, os.ErrNotExist, "moved")
}
