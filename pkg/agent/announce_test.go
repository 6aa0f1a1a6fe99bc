package agent

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/membership"
)

// announcerCluster is a real gossip member, alone, with tags of
// generation 1.
func announcerCluster(t *testing.T) (*membership.Cluster, membership.Tags) {
	t.Helper()
	tags := membership.Tags{Role: membership.RoleGateway, Gen: 1}
	mc := memberConfig()
	mc.NodeName, mc.Tags = "announcer", tags
	c, err := membership.New(mc)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Shutdown() })
	return c, tags
}

func waitCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestAnnouncerAppliesTheLatestTags(t *testing.T) {
	c, tags := announcerCluster(t)
	an := newAnnouncer(c, quietLogger("an"))
	t.Cleanup(an.close)
	for range 50 {
		tags.Gen++
		an.set(tags)
	}
	require.NoError(t, an.wait(waitCtx(t, 5*time.Second), tags.Gen), "generation %d in effect", tags.Gen)
	assert.Equal(t, tags.Gen, c.Tags().Gen)
	assert.NoError(t, an.wait(waitCtx(t, time.Second), 10), "an earlier generation is covered by a later one")

	err := an.wait(waitCtx(t, 100*time.Millisecond), tags.Gen+1)
	assert.ErrorIs(t, err, context.DeadlineExceeded, "a generation never set is not in effect")
}

func TestAnnouncerCloseAppliesWhatIsPending(t *testing.T) {
	c, tags := announcerCluster(t)
	an := newAnnouncer(c, quietLogger("an"))
	tags.Gen = 7
	an.set(tags)
	an.close()
	assert.Equal(t, uint64(7), c.Tags().Gen, "tags set before close are in effect once it returns")
	assert.NoError(t, an.wait(waitCtx(t, time.Second), 7))
	an.close() // twice: no effect

	tags.Gen = 8
	an.set(tags)
	assert.ErrorIs(t, an.wait(waitCtx(t, time.Second), 8), errAnnouncerClosed, "tags set after close are never applied")
	assert.Equal(t, uint64(7), c.Tags().Gen)
}

func TestAnnouncerReportsTagsItCannotApply(t *testing.T) {
	c, tags := announcerCluster(t)
	an := newAnnouncer(c, quietLogger("an"))
	t.Cleanup(an.close)
	bad := tags
	bad.Gen, bad.Role = 2, "" // fails validation in SetTags
	an.set(bad)
	err := an.wait(waitCtx(t, 5*time.Second), 2)
	require.Error(t, err)
	assert.NotErrorIs(t, err, context.DeadlineExceeded, "the failure is reported, not waited out")
	assert.Equal(t, uint64(1), c.Tags().Gen)

	tags.Gen = 3
	an.set(tags)
	assert.NoError(t, an.wait(waitCtx(t, 5*time.Second), 2), "a later generation in effect covers the failed one")
}
