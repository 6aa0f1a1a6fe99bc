package admin

import (
	"bytes"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/api"
)

// FuzzDecodeRolloutBody: the rollout API's body decoder takes only one
// JSON object of known fields within 64 KiB, and never panics.
func FuzzDecodeRolloutBody(f *testing.F) {
	f.Add([]byte(`{"image":"predictor:1.1.0","batch":2,"min_healthy":"5s","deadline":"2m"}`))
	f.Add([]byte(`{"image":"predictor:1.1.0","unknown":1}`))
	f.Add([]byte(`{"image":"x"} {"image":"y"}`))
	f.Add([]byte(`{"min_healthy":5}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, b []byte) {
		var o api.RolloutOptions
		err := decodeBody(httptest.NewRequest("POST", "/v1/rollouts", bytes.NewReader(b)), &o)
		if err == nil {
			require.LessOrEqual(t, len(bytes.TrimSpace(b)), maxBody)
		}
	})
}
