package membership

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSetTagsDoesNotWaitForTheBroadcast: each SetTags returns with its tags
// in effect here, without waiting for the previous ones to spread: ten in a
// row take less time than Serf takes to finish one broadcast, and the
// gateway gets the last.
func TestSetTagsDoesNotWaitForTheBroadcast(t *testing.T) {
	gw := startMember(t, "gw", Tags{Role: RoleGateway, Gen: 1})
	a := startMember(t, "a", agentTagsOn(8000))
	joinAll(t, gw, a)
	gw.waitEvent(t, EventJoin, "a", 5*time.Second)

	// What one broadcast takes: Serf's own SetTags waits for it (several
	// gossip rounds, however fast the machine).
	tags := agentTagsOn(8000)
	tags.Gen++
	m, err := tags.Encode()
	require.NoError(t, err)
	began := time.Now()
	require.NoError(t, a.serf.SetTags(m))
	a.tags = tags
	broadcast := time.Since(began)

	began = time.Now()
	for i := range 10 {
		tags.Gen++
		tags.Ports = append(tags.Ports, uint16(8001+i))
		require.NoError(t, a.SetTags(tags))
		assert.Equal(t, tags.Gen, a.LocalNode().Tags.Gen, "in effect here once SetTags returns")
	}
	took := time.Since(began)
	assert.Less(t, took, broadcast, "10 SetTags in %s, one broadcast %s", took, broadcast)

	require.Eventually(t, func() bool {
		n, ok := gw.Member("a")
		return ok && n.Tags.Gen == tags.Gen && len(n.Tags.Ports) == 11
	}, 5*time.Second, 10*time.Millisecond, "the gateway gets generation %d", tags.Gen)
}

// TestSetTagsUnchangedAndAlone: tags that do not change (Serf reports no
// update) and tags set with nobody to send them to both return.
func TestSetTagsUnchangedAndAlone(t *testing.T) {
	alone := startMember(t, "alone", agentTagsOn(8000))
	tags := agentTagsOn(8000, 8001)
	tags.Gen++
	require.NoError(t, alone.SetTags(tags))
	require.NoError(t, alone.SetTags(tags), "unchanged")
	assert.Equal(t, tags, alone.Tags())
	assert.Equal(t, tags.Gen, alone.LocalNode().Tags.Gen)

	gw := startMember(t, "gw", Tags{Role: RoleGateway, Gen: 1})
	joinAll(t, gw, alone)
	gw.waitEvent(t, EventJoin, "alone", 5*time.Second)
	require.NoError(t, alone.SetTags(tags), "unchanged, with a member to send them to")
}

// TestSetTagsConcurrent: callers on several goroutines are serialized, the
// race detector sees Serf's tags written by one at a time, and the tags
// last set are those in effect.
func TestSetTagsConcurrent(t *testing.T) {
	gw := startMember(t, "gw", Tags{Role: RoleGateway, Gen: 1})
	a := startMember(t, "a", agentTagsOn(8000))
	joinAll(t, gw, a)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			tags := agentTagsOn(uint16(9000 + i))
			for j := range 10 {
				tags.Gen = uint64(100 + 10*i + j)
				assert.NoError(t, a.SetTags(tags))
			}
		})
	}
	wg.Wait()
	last := a.Tags()
	assert.Equal(t, last.Gen, a.LocalNode().Tags.Gen)
	require.Eventually(t, func() bool {
		n, ok := gw.Member("a")
		return ok && n.Tags.Gen == last.Gen
	}, 5*time.Second, 10*time.Millisecond, "the gateway gets the tags set last (generation %d)", last.Gen)
}
