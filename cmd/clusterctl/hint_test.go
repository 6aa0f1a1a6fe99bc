package main

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/herd-cluster/herd/pkg/api"
)

// The gateway's refusals say what is wrong; clusterctl adds the command
// that helps.
func TestRefusalHint(t *testing.T) {
	busy := &api.StatusError{Status: 409, Msg: "a rollout is already running: 20261201-1 to predictor:1.1.0"}
	assert.Equal(t, "; wait for it, or `clusterctl rollout abort`", refusalHint(busy))
	busy.Msg = `a rollout is already running: service "tone" is being rolled out to predictor:1.1.0 (20261201-1, started …)`
	assert.Equal(t, "; wait for it, or `clusterctl rollout abort --service tone`", refusalHint(busy))
	failed := &api.StatusError{Status: 400, Msg: "rollout refused: host-2, host-3 are failed and did not come back within 10s: …"}
	assert.Equal(t, "; wait until `clusterctl members` shows it alive, or remove it for good with `clusterctl force-leave host-2`",
		refusalHint(failed))
	assert.Empty(t, refusalHint(&api.StatusError{Status: 400, Msg: "rollout refused: no agents"}))
	assert.Empty(t, refusalHint(errors.New("unreachable")))
}
