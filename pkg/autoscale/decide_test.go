package autoscale

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

func settings() Settings {
	s := DefaultSettings()
	s.Min, s.Max, s.TargetInFlight = 1, 48, 8
	return s
}

// sim drives Decide as a gateway would: a sample of load(t) every 100 ms,
// a decision every second, the count changed at once when it changes.
type sim struct {
	s       Settings
	st      State
	samples []Sample
	current int
	now     time.Time
	changes []time.Time
	last    Decision
	reasons string // every decision's reason, a line each
	counts  []int  // the count, then after each change
}

func newSim(s Settings, current int) *sim {
	return &sim{s: s, current: current, now: t0, counts: []int{current}}
}

// run advances the simulation by d under load (requests in flight, as a
// function of the time since t0).
func (m *sim) run(d time.Duration, load func(time.Duration) float64) {
	end := m.now.Add(d)
	for m.now.Before(end) {
		m.now = m.now.Add(100 * time.Millisecond)
		m.samples = append(m.samples, Sample{At: m.now, InFlight: load(m.now.Sub(t0))})
		for len(m.samples) > 0 && m.now.Sub(m.samples[0].At) > m.s.StableWindow+time.Second {
			m.samples = m.samples[1:]
		}
		if m.now.Sub(t0)%time.Second == 0 {
			m.last = Decide(m.s, &m.st, m.samples, m.current, m.now)
			m.reasons += m.last.Reason + "\n"
			if m.last.Desired != m.current {
				m.changes = append(m.changes, m.now)
				m.current = m.last.Desired
				m.counts = append(m.counts, m.current)
			}
		}
	}
}

func constant(v float64) func(time.Duration) float64 { return func(time.Duration) float64 { return v } }

func TestDecideWindowsAndBounds(t *testing.T) {
	type step struct {
		d      time.Duration
		load   float64
		expect int // the count after the step
	}
	cases := []struct {
		name    string
		tweak   func(*Settings)
		current int
		steps   []step
	}{
		{"steady load within the band holds", nil, 4, []step{{3 * time.Minute, 33, 4}}},
		{"a load that needs more, below the panic threshold, rises with the stable window", nil, 4,
			[]step{{60 * time.Second, 32, 4}, {5 * time.Second, 40, 4}, {70 * time.Second, 40, 5}}},
		{"load doubling scales up within the panic window", nil, 4, []step{{60 * time.Second, 32, 4}, {6 * time.Second, 96, 12}}},
		{"the way down waits for the stabilization", nil, 12, []step{{60 * time.Second, 96, 12}, {4 * time.Minute, 16, 12}, {150 * time.Second, 16, 2}}},
		{"max bounds a rise", func(s *Settings) { s.Max = 6 }, 4, []step{{10 * time.Second, 200, 6}}},
		{"min bounds a fall", func(s *Settings) { s.Min = 3 }, 6, []step{{8 * time.Minute, 0, 3}}},
		{"the count starts within bounds without samples", func(s *Settings) { s.Min = 5 }, 2, []step{{0, 0, 5}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := settings()
			if tc.tweak != nil {
				tc.tweak(&s)
			}
			require.NoError(t, s.Validate())
			m := newSim(s, tc.current)
			for i, st := range tc.steps {
				if st.d == 0 {
					m.last = Decide(s, &m.st, nil, m.current, m.now)
					m.current = m.last.Desired
				}
				m.run(st.d, constant(st.load))
				assert.Equal(t, st.expect, m.current, "after step %d: %s", i, m.last.Reason)
			}
		})
	}
}

// TestDecidePanicTiming: after a step from 8 to 96 in flight on 1
// replica, the count rises within the panic window, and never falls while
// the panic lasts.
func TestDecidePanicTiming(t *testing.T) {
	m := newSim(settings(), 1)
	m.run(60*time.Second, constant(8))
	require.Equal(t, 1, m.current)
	step := m.now
	m.run(20*time.Second, constant(96))
	require.NotEmpty(t, m.changes)
	assert.LessOrEqual(t, m.changes[0].Sub(step), 6*time.Second, "up within the panic window")
	assert.Equal(t, 12, m.current)
	assert.True(t, m.last.Panicking)
	m.run(30*time.Second, constant(8)) // back down inside the panic: held
	assert.Equal(t, 12, m.current, m.last.Reason)
}

// TestDecideNewDeciderWaitsToScaleDown: a decider that took over has no
// recommendations of the stabilization window before it: it scales up at
// once, but down only once a stabilization has passed since it began.
func TestDecideNewDeciderWaitsToScaleDown(t *testing.T) {
	m := newSim(settings(), 12)
	m.st.Started = t0
	m.run(2*time.Minute, constant(16))
	assert.Equal(t, 12, m.current, m.last.Reason)
	assert.Equal(t, "stabilization", m.last.Held)
	m.run(3*time.Minute+time.Second, constant(16))
	assert.Equal(t, 2, m.current, m.last.Reason)
}

func TestDecideCooldowns(t *testing.T) {
	s := settings()
	s.UpCooldown = 30 * time.Second
	m := newSim(s, 2)
	m.run(10*time.Second, constant(48)) // panic: 2 → 6
	require.Equal(t, 6, m.current)
	m.run(5*time.Second, constant(200)) // wants 25 at once, but the up cooldown holds
	assert.Equal(t, 6, m.current)
	assert.Contains(t, m.last.Reason, "cooldown after the scale-up")
	m.run(30*time.Second, constant(200))
	assert.Equal(t, 25, m.current)
}

// TestDecideFlapBudget: a load swinging between two levels every few
// minutes changes direction twice within the flap window, then holds and
// says so.
func TestDecideFlapBudget(t *testing.T) {
	s := settings()
	s.ScaleDownStabilization, s.DownCooldown = 10*time.Second, 0
	s.PanicThreshold = 100 // the stable window alone
	m := newSim(s, 2)
	swing := func(d time.Duration) float64 {
		if int(d/(90*time.Second))%2 == 0 {
			return 16
		}
		return 40
	}
	m.run(9*time.Minute, swing)
	assert.Contains(t, m.reasons, "flap budget spent")
	assert.Len(t, m.st.Turns, s.FlapBudget, "changes of direction within the window: the budget, no more")
	turns, dir := 0, 0
	for i := 1; i < len(m.counts); i++ {
		d := 1
		if m.counts[i] < m.counts[i-1] {
			d = -1
		}
		if dir != 0 && d != dir {
			turns++
		}
		dir = d
	}
	assert.Equal(t, s.FlapBudget, turns, "a swing every 90 s is followed until the budget runs out: counts %v", m.counts)
}

// TestDecideNoFlapUnderNoisyLoad: 2 minutes of steady load with ±25 %
// noise, after a rise to it, make no more than one change.
func TestDecideNoFlapUnderNoisyLoad(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	m := newSim(settings(), 3)
	m.run(90*time.Second, func(time.Duration) float64 { return 64 * (0.75 + 0.5*rng.Float64()) })
	settled := len(m.changes)
	m.run(2*time.Minute, func(time.Duration) float64 { return 64 * (0.75 + 0.5*rng.Float64()) })
	assert.LessOrEqual(t, len(m.changes)-settled, 1, "changes in 2 minutes of steady load: %v", m.changes[settled:])
	assert.InDelta(t, 8, m.current, 1)
}

func TestAverageIsTimeWeighted(t *testing.T) {
	// 0 for 9 s, then 100 for 1 s: 10 over 10 s, whatever the sample count.
	var samples []Sample
	for i := 1; i <= 90; i++ {
		samples = append(samples, Sample{At: t0.Add(time.Duration(i) * 100 * time.Millisecond)})
	}
	samples = append(samples, Sample{At: t0.Add(10 * time.Second), InFlight: 100})
	avg, ok := average(samples, t0.Add(10*time.Second), 10*time.Second)
	require.True(t, ok)
	assert.InDelta(t, 10, avg, 0.01)
	_, ok = average(samples, t0.Add(time.Hour), time.Minute)
	assert.False(t, ok, "no sample in the window")
}

func TestSettingsValidate(t *testing.T) {
	for want, tweak := range map[string]func(*Settings){
		"min -1: must not be negative":                              func(s *Settings) { s.Min = -1 },
		"max 2: want at least 1 and at least min 3":                 func(s *Settings) { s.Min, s.Max = 3, 2 },
		"target in flight 0: want more than 0":                      func(s *Settings) { s.TargetInFlight = 0 },
		"windows: panic 1m0s, stable 1m0s: want 0 < panic < stable": func(s *Settings) { s.PanicWindow = time.Minute },
		"tolerance 1: want 0 to less than 1":                        func(s *Settings) { s.Tolerance = 1 },
		"flap budget -1: must not be negative":                      func(s *Settings) { s.FlapBudget = -1 },
	} {
		s := settings()
		tweak(&s)
		err := s.Validate()
		if assert.Error(t, err, want) {
			assert.Equal(t, want, err.Error())
		}
	}
	s := settings()
	s.TargetInFlight = math.NaN()
	assert.Error(t, s.Validate())
	assert.NoError(t, settings().Validate())
}
