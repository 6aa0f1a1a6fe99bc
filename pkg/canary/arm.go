package canary

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Arm is one arm's measurements for a step, as Judge reads them: request and
// error counts and a sorted sample of the latencies of the requests that did
// not fail. It is immutable; the zero Arm has no requests.
type Arm struct {
	requests, errors uint64
	latencies        []time.Duration // sorted ascending, never modified
}

// NewArm returns an Arm of the given counts and latencies (copied and
// sorted), for measurements made elsewhere than in Counts. It refuses more
// errors than requests and negative latencies.
func NewArm(requests, errors uint64, latencies []time.Duration) (Arm, error) {
	if errors > requests {
		return Arm{}, fmt.Errorf("arm: %d errors out of %d requests", errors, requests)
	}
	lat := slices.Clone(latencies)
	slices.Sort(lat)
	if len(lat) > 0 && lat[0] < 0 {
		return Arm{}, fmt.Errorf("arm: negative latency %v", lat[0])
	}
	return Arm{requests: requests, errors: errors, latencies: lat}, nil
}

// Requests is how many requests the arm answered or failed.
func (a Arm) Requests() uint64 { return a.requests }

// Errors is how many of them failed (5xx answers and failed exchanges).
func (a Arm) Errors() uint64 { return a.errors }

// Latencies returns a sorted copy of the sampled latencies.
func (a Arm) Latencies() []time.Duration { return slices.Clone(a.latencies) }

// ErrorRate is Errors/Requests, between 0 and 1; false when there were no
// requests (never NaN).
func (a Arm) ErrorRate() (float64, bool) {
	if a.requests == 0 {
		return 0, false
	}
	return float64(a.errors) / float64(a.requests), true
}

// Quantile is the q-quantile (0 <= q <= 1) of the sampled latencies,
// interpolated linearly between the two nearest ranks (numpy's default
// "linear" method, Hyndman and Fan's type 7) and rounded to the nanosecond;
// false when there are no latencies or q is out of range.
func (a Arm) Quantile(q float64) (time.Duration, bool) {
	return quantile(a.latencies, q)
}

func quantile(sorted []time.Duration, q float64) (time.Duration, bool) {
	if len(sorted) == 0 || !(q >= 0 && q <= 1) {
		return 0, false
	}
	h := q * float64(len(sorted)-1)
	lo := int(h)
	if lo >= len(sorted)-1 {
		return sorted[len(sorted)-1], true
	}
	gap := sorted[lo+1] - sorted[lo]
	// Clamped, so that float rounding of a huge gap cannot overflow.
	off := math.Round((h - float64(lo)) * float64(gap))
	if off >= float64(gap) {
		return sorted[lo+1], true
	}
	return sorted[lo] + time.Duration(off), true
}
