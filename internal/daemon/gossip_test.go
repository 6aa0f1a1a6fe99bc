package daemon

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/herd-cluster/herd/pkg/membership"
)

// TestGossipFlagError: membership's errors name no flag; the command line
// appends the one that fixes them, keeping the chain.
func TestGossipFlagError(t *testing.T) {
	wrongKey := fmt.Errorf("join [127.0.0.1:7946]: no installed keys could decrypt the message: %w", membership.ErrWrongKey)
	err := GossipFlagError(wrongKey)
	assert.EqualError(t, err, "join [127.0.0.1:7946]: no installed keys could decrypt the message: "+
		"the gossip key differs from the cluster's (check --encrypt / HERD_ENCRYPT)")
	assert.ErrorIs(t, err, membership.ErrWrongKey)

	err = GossipFlagError(membership.ErrNoAdvertiseAddr)
	assert.ErrorContains(t, err, "(--advertise / HERD_ADVERTISE)")
	assert.ErrorIs(t, err, membership.ErrNoAdvertiseAddr)

	other := errors.New("port in use")
	assert.Equal(t, other, GossipFlagError(other))
	assert.NoError(t, GossipFlagError(nil))
}
