package tone

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestPredict(t *testing.T) {
	cases := map[string]string{
		"I love this, it is wonderful!":           Joy,
		"This is unacceptable, I am furious.":     Anger,
		"I feel so lonely and sad today":          Sadness,
		"I'm terrified and worried about tonight": Fear,
		"The meeting is at noon.":                 Neutral,
		"":                                        Neutral,
		"I am not happy with this":                Sadness,
		"I'm not sad at all":                      Joy,
		"not afraid":                              Neutral,
		"slightly annoyed":                        Neutral,
		"extremely annoyed":                       Anger,
	}
	for text, want := range cases {
		t.Run(text, func(t *testing.T) {
			res := Predict(text)
			assert.Equal(t, want, res.Label)
			sum := 0.0
			for _, l := range Labels {
				sum += res.Scores[l]
			}
			assert.InDelta(t, 1.0, sum, 0.01, "scores are probabilities")
		})
	}
}
