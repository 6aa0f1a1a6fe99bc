package tone

type entry struct {
	label  string
	weight float64
}

// lexicon is this project's own hand-written word list: weight 1 for a
// typical word, more for strong ones.
var lexicon = build(map[string]map[string]float64{
	Joy: {
		"happy": 1, "glad": 1, "joy": 1.5, "joyful": 1.5, "delighted": 1.5, "love": 1.5, "loved": 1.5,
		"great": 1, "wonderful": 1.5, "excellent": 1.5, "fantastic": 1.5, "amazing": 1.5, "awesome": 1.5,
		"pleased": 1, "thanks": 0.8, "thank": 0.8, "grateful": 1.2, "excited": 1.2, "fun": 1, "good": 0.8,
		"nice": 0.8, "enjoy": 1, "enjoyed": 1, "smile": 1, "laugh": 1, "perfect": 1.2, "cheerful": 1.2,
		"celebrate": 1.2, "win": 1, "won": 1, "best": 1, "beautiful": 1, "brilliant": 1.2, "yay": 1.5,
	},
	Anger: {
		"angry": 1.5, "furious": 2, "mad": 1.2, "hate": 1.5, "hated": 1.5, "annoyed": 1, "annoying": 1,
		"outraged": 2, "rage": 2, "irritated": 1, "disgusting": 1.2, "unacceptable": 1.5, "ridiculous": 1,
		"terrible": 1, "awful": 1, "worst": 1.2, "stupid": 1, "useless": 1, "broken": 0.8, "refund": 0.8,
		"scam": 1.5, "liar": 1.5, "fed": 0.5, "sick": 0.5, "complain": 1, "complaint": 1,
	},
	Sadness: {
		"sad": 1.5, "unhappy": 1.5, "miserable": 2, "depressed": 2, "cry": 1.2, "crying": 1.2, "tears": 1.2,
		"lonely": 1.5, "alone": 0.8, "lost": 1, "miss": 1, "missed": 1, "sorry": 0.8, "regret": 1.2,
		"disappointed": 1.2, "disappointing": 1.2, "heartbroken": 2, "grief": 2, "hurt": 1, "gloomy": 1.2,
		"down": 0.5, "bad": 0.8, "unfortunately": 0.8, "died": 1.5, "sorrow": 1.5,
	},
	Fear: {
		"afraid": 1.5, "scared": 1.5, "fear": 1.5, "terrified": 2, "worried": 1.2, "worry": 1.2, "anxious": 1.2,
		"nervous": 1, "panic": 1.5, "frightened": 1.5, "danger": 1.2, "dangerous": 1.2, "risk": 0.8,
		"threat": 1.2, "uneasy": 1, "dread": 1.5, "horror": 1.5, "unsafe": 1.2, "alarmed": 1.2,
	},
})

var negators = map[string]bool{
	"not": true, "no": true, "never": true, "nothing": true, "without": true, "hardly": true,
	"don't": true, "doesn't": true, "didn't": true, "isn't": true, "wasn't": true, "aren't": true,
	"can't": true, "won't": true, "couldn't": true, "shouldn't": true, "nor": true,
}

var intensifiers = map[string]float64{
	"very": 1.5, "really": 1.4, "so": 1.3, "extremely": 2, "incredibly": 1.8, "totally": 1.5,
	"absolutely": 1.8, "super": 1.5, "too": 1.2, "slightly": 0.5, "somewhat": 0.6, "bit": 0.6,
}

func build(m map[string]map[string]float64) map[string]entry {
	out := make(map[string]entry)
	for label, ws := range m {
		for w, weight := range ws {
			out[w] = entry{label: label, weight: weight}
		}
	}
	return out
}
