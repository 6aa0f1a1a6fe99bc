// Package tone scores the emotional tone of English text with a small
// weighted lexicon, negation and intensifiers. It is deliberately tiny: the
// example service exists to be deployed, not to win benchmarks.
package tone

import (
	"math"
	"strings"
	"unicode"
)

// Labels the model can give.
const (
	Joy     = "joy"
	Anger   = "anger"
	Sadness = "sadness"
	Fear    = "fear"
	Neutral = "neutral"
)

// Labels lists every label, in a stable order.
var Labels = []string{Joy, Anger, Sadness, Fear, Neutral}

// Result is a prediction: the winning label and a probability per label.
type Result struct {
	Label  string             `json:"label"`
	Scores map[string]float64 `json:"scores"`
}

// neutralPrior is the evidence neutral starts with: text with no lexicon
// word is neutral, and one weak word does not overturn it.
const neutralPrior = 0.6

// negationWindow is how many following words a negator flips.
const negationWindow = 3

// Predict scores text.
func Predict(text string) Result {
	evidence := map[string]float64{Neutral: neutralPrior}
	negated, boost := 0, 1.0
	for _, w := range words(text) {
		if negators[w] {
			negated = negationWindow
			continue
		}
		if f, ok := intensifiers[w]; ok {
			boost *= f
			continue
		}
		if e, ok := lexicon[w]; ok {
			label, weight := e.label, e.weight*boost
			if negated > 0 {
				label, weight = flip(label), weight*0.8
			}
			evidence[label] += weight
		}
		boost = 1.0
		if negated > 0 {
			negated--
		}
	}
	return normalise(evidence)
}

func flip(label string) string {
	switch label {
	case Joy:
		return Sadness
	case Sadness:
		return Joy
	default: // "not angry", "not afraid": calmer, not the opposite emotion
		return Neutral
	}
}

func normalise(evidence map[string]float64) Result {
	total := 0.0
	for _, v := range evidence {
		total += v
	}
	res := Result{Label: Neutral, Scores: make(map[string]float64, len(Labels))}
	best := -1.0
	for _, l := range Labels {
		p := math.Round(evidence[l]/total*1000) / 1000
		res.Scores[l] = p
		if evidence[l] > best {
			best, res.Label = evidence[l], l
		}
	}
	return res
}

// words splits text into lower-case words, keeping apostrophes so that
// "don't" is one word.
func words(text string) []string {
	return strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
		return !unicode.IsLetter(r) && r != '\''
	})
}
