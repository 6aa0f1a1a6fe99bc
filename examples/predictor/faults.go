package main

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Faults make the predictor a bad release whose health checks pass and
// whose traffic gives it away, for testing canary rollouts. They touch
// /predict only (GET and POST); /healthz, /version and the load-test
// endpoints behave as ever. The zero value is no fault.
type Faults struct {
	// ErrorRate is the fraction (0..1) of /predict requests answered 500,
	// spread evenly and deterministically: request n (counting from 1) fails
	// when ⌊n·ErrorRate⌋ grows, so exactly ⌊n·ErrorRate⌋ of the first n
	// fail; 0.05 fails every 20th request. Counted in millionths.
	ErrorRate float64
	// Delay holds every /predict request this long before it is answered
	// (at most maxDelay).
	Delay time.Duration
	// CrashAfter, when not 0, makes the process exit with status 1 once it
	// has answered its first CrashAfter /predict requests; a request beyond
	// those is never answered.
	CrashAfter uint64
}

const (
	maxDelay = time.Minute
	million  = 1_000_000
)

// faultSetting is one fault by its name: "delay" is both the flag
// --fault-delay and the key delay= of the build-time list.
type faultSetting struct {
	name, usage string
	set         func(*Faults, string) error
	get         func(Faults) string // "" when the fault is off
}

func faultSettings() []faultSetting {
	return []faultSetting{
		{"error-rate", "answer this fraction of /predict requests 500 (0.05 or 5%: exactly 1 in 20, every 20th)",
			func(f *Faults, s string) (err error) { f.ErrorRate, err = parseRate(s); return err },
			func(f Faults) string {
				if f.ErrorRate == 0 {
					return ""
				}
				return strconv.FormatFloat(f.ErrorRate, 'g', -1, 64)
			}},
		{"delay", "hold every /predict request this long before answering (like 50ms; at most 1m)",
			func(f *Faults, s string) (err error) { f.Delay, err = parseDelay(s); return err },
			func(f Faults) string {
				if f.Delay == 0 {
					return ""
				}
				return f.Delay.String()
			}},
		{"crash-after", "exit with status 1 after answering this many /predict requests (0: never)",
			func(f *Faults, s string) (err error) { f.CrashAfter, err = parseCount(s); return err },
			func(f Faults) string {
				if f.CrashAfter == 0 {
					return ""
				}
				return strconv.FormatUint(f.CrashAfter, 10)
			}},
	}
}

func parseRate(s string) (float64, error) {
	scale, num := 1.0, s
	if p, ok := strings.CutSuffix(s, "%"); ok {
		scale, num = 100, p
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(v) || v < 0 || v > scale {
		return 0, errors.New("want a fraction 0..1 or a percentage 0%..100%")
	}
	return v / scale, nil
}

func parseDelay(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || d > maxDelay {
		return 0, fmt.Errorf("want a duration 0s..%s, like 50ms", maxDelay)
	}
	return d, nil
}

func parseCount(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, errors.New("want a number of requests, 0 or more")
	}
	return n, nil
}

// parseFaults reads a build-time list: faults by name, comma-separated,
// like "error-rate=0.05,delay=50ms" (-ldflags "-X main.faults=…"). ""
// is no fault.
func parseFaults(list string) (Faults, error) {
	var f Faults
	if list == "" {
		return f, nil
	}
	settings := faultSettings()
	for _, item := range strings.Split(list, ",") {
		name, value, _ := strings.Cut(item, "=")
		i := indexSetting(settings, name)
		if i < 0 {
			return Faults{}, fmt.Errorf("unknown fault %q (want error-rate, delay or crash-after)", name)
		}
		if err := settings[i].set(&f, value); err != nil {
			return Faults{}, fmt.Errorf("%s=%q: %w", name, value, err)
		}
	}
	return f, nil
}

func indexSetting(settings []faultSetting, name string) int {
	for i, s := range settings {
		if s.name == name {
			return i
		}
	}
	return -1
}

// String is f as parseFaults reads it, "" for no fault.
func (f Faults) String() string {
	var items []string
	for _, s := range faultSettings() {
		if v := s.get(f); v != "" {
			items = append(items, s.name+"="+v)
		}
	}
	return strings.Join(items, ",")
}

// addFlags adds --fault-<name> for each fault to fs, each one setting the
// field of f it names: f's values before fs.Parse stay unless a flag is
// given, so the flags win over build-time faults.
func (f *Faults) addFlags(fs *flag.FlagSet) {
	for _, s := range faultSettings() {
		fs.Func("fault-"+s.name, s.usage, func(v string) error { return s.set(f, v) })
	}
}

// faulty applies Faults to the requests of the handlers it wraps. It
// numbers them in the order they arrive, which decides each one's fate.
type faulty struct {
	faults     Faults
	perMillion uint64
	arrived    atomic.Uint64
	finished   atomic.Uint64 // of the first CrashAfter requests
	crashed    chan struct{}
}

func newFaulty(f Faults) *faulty {
	return &faulty{faults: f, perMillion: uint64(math.Round(f.ErrorRate * million)), crashed: make(chan struct{})}
}

// Crashed is closed when the process is to exit: its CrashAfter requests
// are answered.
func (f *faulty) Crashed() <-chan struct{} { return f.crashed }

// fails says whether request n (from 1) is answered 500: when ⌊n·rate⌋
// grows, in integers so that 5 % is exactly every 20th.
func (f *faulty) fails(n uint64) bool {
	return n*f.perMillion/million != (n-1)*f.perMillion/million
}

// wrap is next with the faults. A nil f is next unchanged.
func (f *faulty) wrap(next http.HandlerFunc) http.HandlerFunc {
	if f == nil || f.faults == (Faults{}) {
		return next
	}
	return func(w http.ResponseWriter, r *http.Request) {
		n := f.arrived.Add(1)
		crashAfter := f.faults.CrashAfter
		if crashAfter > 0 && n > crashAfter {
			// Past the last answer: the process exits before this one's.
			<-r.Context().Done()
			return
		}
		if crashAfter > 0 {
			defer f.finish(w)
		}
		if f.faults.Delay > 0 && !sleep(r, f.faults.Delay) {
			return
		}
		if f.fails(n) {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "injected fault: error-rate"})
			return
		}
		next(w, r)
	}
}

// finish counts a request of the first CrashAfter done (answered, or
// given up by its client); at the last it pushes the answer out to the
// client, complete (writeJSON sets its length), before signalling the
// crash.
func (f *faulty) finish(w http.ResponseWriter) {
	if f.finished.Add(1) != f.faults.CrashAfter {
		return
	}
	_ = http.NewResponseController(w).Flush() // the client may be gone: nothing to do then
	close(f.crashed)                          // once: only the first CrashAfter requests count here
}

// sleep waits d, false when the client went away first.
func sleep(r *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}
