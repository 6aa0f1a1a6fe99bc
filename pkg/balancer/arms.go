package balancer

import (
	"fmt"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herd-cluster/herd/pkg/canary"
)

// Canary rollouts: a service's backends belong to an arm, the stable one
// (what SetNode announces) or, while a rollout runs a canary, the canary
// arm (the new version) and the baseline arm (the old version, started
// with the canary). SetSplit gives each arm its share of the requests, by
// count, whatever the number of backends in each. Within an arm the
// service's selector chooses as it does without arms (round robin or least
// request, slow start, ejection, caps); an arm with no backend in rotation
// gives its requests to the stable arm.
//
// While a split is set, every attempt of a request the split chose the arm
// of is measured in the arm of its backend (canary.Recorder: requests,
// errors — 5xx answers and failed exchanges — and the latency to the
// response head of the others), for the rollout's judgement (ArmCounts).
// Requests pinned by X-Herd-Canary (Config.CanaryPinning) are not: they are
// not a random sample.
//
// A request that may be sent again (Config.Retries' rule: nothing of it was
// sent, or its body was read whole and it is idempotent or carries an
// Idempotency-Key) and fails on a canary or baseline backend — a failed
// exchange, or a 5xx answer, which is then discarded — goes to the stable
// arm instead of being answered, one more attempt than Config.Retries
// allows; the failure still counts against its arm. The two measured arms
// are treated alike, so that their comparison is fair. A request that may
// not be sent again gets its arm's answer.

// Arm is one arm of a service during a canary.
type Arm uint8

// The arms.
const (
	ArmStable   Arm = iota // the service's own backends (SetNode)
	ArmCanary              // the new version's, under test
	ArmBaseline            // the old version's, started with the canary, its comparison
	numArms
)

var armNames = [numArms]string{"stable", "canary", "baseline"}

func (a Arm) String() string {
	if a < numArms {
		return armNames[a]
	}
	return "arm(" + strconv.Itoa(int(a)) + ")"
}

// Split is how a service's requests are shared among its arms: Canary and
// Baseline percent to those arms, the rest to the stable arm; and the
// version each arm runs, for the metrics' version label. The zero Split is
// no canary: every request goes to the stable arm and nothing is measured.
type Split struct {
	Canary, Baseline                              int
	CanaryVersion, BaselineVersion, StableVersion string
}

// Stable is the stable arm's share, in percent.
func (sp Split) Stable() int { return 100 - sp.Canary - sp.Baseline }

// clamped brings sp's shares within 0-100 and their sum within 100, the
// canary's share first.
func (sp Split) clamped() Split {
	sp.Canary = min(max(sp.Canary, 0), 100)
	sp.Baseline = min(max(sp.Baseline, 0), 100-sp.Canary)
	return sp
}

func (sp Split) version(a Arm) string {
	v := [numArms]string{sp.StableVersion, sp.CanaryVersion, sp.BaselineVersion}[a]
	if v == "" {
		return "unknown"
	}
	return v
}

// splitState is a split in effect: the arm of request n is the one whose
// band of 0-99 holds n·splitStride mod 100. The stride is prime to 100, so
// any 100 consecutive requests take each value once: every arm gets its
// share exactly over each 100 requests, and the stride (100/φ, rounded)
// spreads a small share evenly over them instead of in a burst. One atomic
// add per request; no lock.
type splitState struct {
	n           atomic.Uint64
	canary, cum uint64 // the canary band is [0, canary), the baseline's [canary, cum)
	split       Split
}

const splitStride = 61

func newSplitState(sp Split) *splitState {
	return &splitState{canary: uint64(sp.Canary), cum: uint64(sp.Canary + sp.Baseline), split: sp}
}

// pick is the arm of the next request.
func (t *splitState) pick() Arm {
	switch slot := t.n.Add(1) * splitStride % 100; {
	case slot < t.canary:
		return ArmCanary
	case slot < t.cum:
		return ArmBaseline
	}
	return ArmStable
}

// pin is what a request's X-Herd-Canary asks for.
type pin uint8

const (
	pinNone   pin = iota
	pinAlways     // "always": the canary arm
	pinNever      // "never": the stable arm
)

// SetSplit sets the arms' shares of the service's requests and their
// versions (the zero Split: no canary). Shares out of range are clamped.
// The measurements (ArmCounts) go on across splits. Setting the split in
// effect again changes nothing. Safe from any goroutine.
func (s *Service) SetSplit(sp Split) {
	sp = sp.clamped()
	s.splitMu.Lock()
	defer s.splitMu.Unlock()
	cur := s.split.Load()
	if cur != nil && cur.split == sp || cur == nil && sp.Canary == 0 && sp.Baseline == 0 {
		return // a service that never had a canary exports no weights
	}
	m := s.b.m
	for a := range numArms {
		share := [numArms]int{sp.Stable(), sp.Canary, sp.Baseline}[a]
		m.canaryWeight.WithLabelValues(s.name, a.String()).Set(float64(share))
	}
	if sp.Canary == 0 && sp.Baseline == 0 {
		// No canary: nothing measured from now on. The series of the last
		// versions stay until another split or the service's end.
		s.split.Store(nil)
		return
	}
	for a := range numArms {
		s.arms[a].label(m, s.name, a, sp.version(a))
	}
	s.split.Store(newSplitState(sp))
}

// Split is the split in effect (the zero Split: none).
func (s *Service) Split() Split {
	if t := s.split.Load(); t != nil {
		return t.split
	}
	return Split{}
}

// SetNodeArm replaces the backends a member announces for this service in
// arm, as SetNode does for the stable arm (SetNode(node, addrs) is
// SetNodeArm(node, ArmStable, addrs)). An address the member announced in
// another arm moves to this one, with a fresh state. Safe from any
// goroutine.
func (s *Service) SetNodeArm(node string, arm Arm, addrs []netip.AddrPort) {
	if arm >= numArms {
		s.b.logger.Error("backends announced in no known arm: ignored", "service", s.name, "node", node, "arm", arm)
		return
	}
	b := s.b
	s.reg.setNode(node, arm, addrs, func(addr netip.AddrPort) *host {
		return newHost(addr, node, arm, &b.cfg, &s.queue)
	}, hostEvents{
		added: func(h *host) {
			b.m.added(s.name, h)
			if s.health != nil && !s.closed.Load() {
				s.health.watch(h)
			}
		},
		removed: func(h *host) {
			h.retire()
			b.m.removed(s.name, h)
		},
		taken: func(addr netip.AddrPort, node, owner string) {
			b.logger.Warn("address announced by two nodes; keeping the first", "service", s.name, "addr", addr,
				"node", owner, "other", node)
		},
	})
}

// ArmCounts are each arm's measurements (by Arm) since the service was
// made: cumulative, for a caller to diff between two snapshots.
func (s *Service) ArmCounts() [3]canary.Counts {
	var out [3]canary.Counts
	for a := range numArms {
		out[a] = s.arms[a].rec.Snapshot()
	}
	return out
}

// ArmCounts are the measurements of service's arms (Service.ArmCounts);
// zero counts for a service the balancer does not have, which it does not
// add.
func (b *Balancer) ArmCounts(service string) [3]canary.Counts {
	if s := (*b.services.Load())[service]; s != nil {
		return s.ArmCounts()
	}
	return [3]canary.Counts{}
}

// armStats are one arm's measurements and the metric series of the version
// it runs.
type armStats struct {
	rec    canary.Recorder
	series atomic.Pointer[armSeries] // nil until a split names the arm's version
}

// armSeries are herd_gateway_canary_requests_total's series of one arm and
// version, by code.
type armSeries struct {
	version string
	codes   [len(canaryCodes)]prometheus.Counter
}

// canaryCodes label the canary request counters: the status class, or
// "failed" for an exchange that got no answer. Kept to these few, as the
// arms and the versions of a rollout are, so that the series stay bounded.
var canaryCodes = [7]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx", "failed"}

const codeFailed = 6

// label makes the arm's series those of version, deleting the previous
// version's.
func (a *armStats) label(m *metrics, service string, arm Arm, version string) {
	old := a.series.Load()
	if old != nil && old.version == version {
		return
	}
	ser := &armSeries{version: version}
	for i, c := range canaryCodes {
		ser.codes[i] = m.canaryRequests.WithLabelValues(service, arm.String(), version, c)
	}
	a.series.Store(ser)
	if old != nil {
		for _, c := range canaryCodes {
			m.canaryRequests.DeleteLabelValues(service, arm.String(), old.version, c)
		}
	}
}

// recordUnavailable counts a measured request arm could not take.
func (s *Service) recordUnavailable(arm Arm) {
	a := &s.arms[arm]
	a.rec.Record(0, true)
	if ser := a.series.Load(); ser != nil {
		ser.codes[codeFailed].Inc()
	}
}

// record counts one measured attempt on h: answered status after took, or
// failed without an answer (status 0).
func (s *Service) record(h *host, took time.Duration, status int) {
	a := &s.arms[h.arm]
	a.rec.Record(took, status == 0 || status >= 500)
	if ser := a.series.Load(); ser != nil {
		c := codeFailed
		if status != 0 {
			c = classOf(status)
		}
		ser.codes[c].Inc()
	}
}

// chooseArm decides the arm of a new request's first attempt: the one its
// pin asks for, or the split's choice (then it is measured), or the stable
// arm when there is no canary.
// Inlined: without a canary or a pin it costs the request one atomic
// load.
func (x *exchange) chooseArm(p pin) {
	if p != pinNone || x.svc.split.Load() != nil {
		x.chooseIn(p)
	}
}

func (x *exchange) chooseIn(p pin) {
	switch t := x.svc.split.Load(); {
	case p == pinAlways:
		x.arm, x.pinned = ArmCanary, true
	case p == pinNever:
		x.arm, x.pinned = ArmStable, true
	case t != nil: // the split may have ended since chooseArm looked
		x.arm, x.measured = t.pick(), true
	}
}

// selectIn chooses a backend for an attempt in arm among hosts not tried;
// a canary or baseline arm with none in rotation and with room gives way
// to the stable arm. A measured request its arm has backends for, all out
// of rotation (crashed, failing their checks, ejected), counts as a failure
// of that arm: the arm could not take its share, and a canary that crashed
// must not pass its step on the requests it served before.
func (s *Service) selectIn(arm Arm, measured bool, tried []*host, now int64) (*host, bool) {
	set := s.reg.set.Load()
	if arm != ArmStable {
		h, full := s.sel[arm].Select(set.arms[arm], tried, now)
		if h != nil && !h.out(now) {
			return h, false
		}
		if measured && !full && len(tried) == 0 && len(set.arms[arm]) > 0 {
			s.recordUnavailable(arm)
		}
	}
	return s.sel[ArmStable].Select(set.arms[ArmStable], tried, now)
}

// attemptArm is the arm of the next attempt: the request's for its first,
// the stable arm for a retry.
func (x *exchange) attemptArm() Arm {
	if x.nTried > 0 {
		return ArmStable
	}
	return x.arm
}

// rejects reports whether an answer of status from the attempt's backend
// is to be discarded and the request sent to the stable arm: a 5xx from a
// canary or baseline backend, to a request that is not pinned, may be sent
// again, and has a stable backend to go to.
func (x *exchange) rejects(status int) bool {
	return status >= 500 && x.h.arm != ArmStable && !x.pinned && x.replayable && x.nTried < len(x.tried) &&
		len(x.svc.reg.set.Load().arms[ArmStable]) > 0
}

// answered records the attempt's response head, when the request is
// measured.
func (x *exchange) answered(status int) {
	if x.measured { // inlined: this test is all a request pays without a canary
		x.recordHead(status)
	}
}

func (x *exchange) recordHead(status int) {
	x.svc.record(x.h, time.Since(x.started)-x.attemptAt, status)
}

// armAnswer is the failure of an attempt whose answer was discarded for
// the stable arm's (rejects).
type armAnswer struct {
	status int
	arm    Arm
}

func (e *armAnswer) Error() string {
	return fmt.Sprintf("answered %d on the %s arm", e.status, e.arm)
}
