package membership

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTagsCanaryRoundTrip(t *testing.T) {
	tags := agentTags()
	tags.Canary = &Canary{Weight: 5, Image: "predictor:1.1.0", Ports: []uint16{8012}, Baseline: []uint16{8013}, Count: 1}
	m, err := tags.Encode()
	require.NoError(t, err)
	assert.Equal(t, "5|predictor:1.1.0|8012|8013|1", m[tagCanary])
	got, err := DecodeTags(m)
	require.NoError(t, err)
	assert.Equal(t, tags, got)
	assert.True(t, got.Canary.Ready(true))

	// Starting: no port healthy yet, no baseline asked for.
	tags.Canary = &Canary{Image: "predictor:1.1.0", Count: 2}
	m, err = tags.Encode()
	require.NoError(t, err)
	got, err = DecodeTags(m)
	require.NoError(t, err)
	assert.Equal(t, tags, got)
	assert.False(t, got.Canary.Ready(false))

	// No canary: no tag, and an older agent's tags decode with none.
	tags.Canary = nil
	m, err = tags.Encode()
	require.NoError(t, err)
	assert.NotContains(t, m, tagCanary)
}

func TestTagsCanaryMalformed(t *testing.T) {
	for name, cy := range map[string]string{
		"fields":      "5|predictor:1.1.0|8012|8013",
		"weight":      "100|predictor:1.1.0|8012|8013|1",
		"negative":    "-1|predictor:1.1.0|8012|8013|1",
		"image":       "5|predictor|8012|8013|1",
		"ports":       "5|predictor:1.1.0|8013,8012||1",
		"count":       "5|predictor:1.1.0|8012||0",
		"too many":    "5|predictor:1.1.0|8012-8014||2",
		"overlap":     "5|predictor:1.1.0|8001||1", // 8001 is a stable replica's
		"arms share":  "5|predictor:1.1.0|8012|8012|1",
		"count words": "5|predictor:1.1.0|8012||one",
	} {
		t.Run(name, func(t *testing.T) {
			m, err := agentTags().Encode()
			require.NoError(t, err)
			m[tagCanary] = cy
			_, err = DecodeTags(m)
			assert.Error(t, err)
		})
	}
}

func TestDeployRequestCanary(t *testing.T) {
	r, err := DecodeDeployRequest([]byte(`{"rollout":"x","image":"predictor:1.1.0","canary":{"replicas":1,"weight":5,"baseline":true}}`))
	require.NoError(t, err)
	assert.Equal(t, &CanaryRequest{Replicas: 1, Weight: 5, Baseline: true}, r.Canary)
	for _, bad := range []string{
		`{"rollout":"x","image":"predictor:1.1.0","canary":{"replicas":17,"weight":5}}`,
		`{"rollout":"x","image":"predictor:1.1.0","canary":{"replicas":1,"weight":100}}`,
		`{"rollout":"x","image":"predictor:1.1.0","canary":{"replicas":0,"weight":5}}`,
		`{"rollout":"x","image":"predictor:1.1.0","canary":{"replicas":1,"weight":5,"extra":1}}`,
	} {
		_, err := DecodeDeployRequest([]byte(bad))
		assert.Error(t, err, bad)
	}
}
