package balancer

import (
	"errors"
	"time"
)

// An exchange is one request and its answer, relayed on a client
// connection. It moves through named states, as HTTP/2's streams and
// Envoy's active streams do, whichever relay (the event loop or a
// goroutine) drives it; either can take it up where the other left it.
//
//	readingHead ─▶ connecting ─▶ sending ─▶ awaitingHead ─▶ streaming ─▶ done
//	                   ▲   │          │            │             │
//	                   │   └──────────┴────┬───────┘             │
//	                   │                   ▼                     │
//	                   └──── (retry) ── failed ── (answer) ──▶ done
//
// A failed attempt is a state, not a status code: settle decides from its
// failure whether the request goes to another backend (or to the same one
// on a new connection, when a pooled one turned out stale) or is answered
// with an error. Every exchange ends in done with an outcome.
type exchangeState uint8

const (
	stateReadingHead  exchangeState = iota // waiting for, or reading, a request head
	stateConnecting                        // a backend is chosen or to be chosen; getting a connection to it
	stateSending                           // the request goes out: its head, then its body
	stateAwaitingHead                      // sent; waiting for the backend's response head
	stateStreaming                         // relaying the answer (or a tunnel) to the client
	stateFailed                            // the attempt failed before any answer reached the client
	stateDone                              // over: outcome says how
)

var stateNames = [...]string{"reading-head", "connecting", "sending", "awaiting-head", "streaming", "failed", "done"}

func (s exchangeState) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "state(?)"
}

// outcome is how an exchange ended.
type outcome uint8

const (
	outcomeNone          outcome = iota // not over
	outcomeServed                       // the backend's answer was relayed whole
	outcomeUpgraded                     // switched protocols (101); the tunnel has ended
	outcomeClientGone                   // the client went away before its answer was written
	outcomeBadRequest                   // the request's body was malformed: answered by the gateway
	outcomeCutShort                     // the answer began, then the backend failed: the client connection was cut
	outcomeNoBackend                    // no backend to send it to: 503
	outcomeBusy                         // every backend at its cap for the queue timeout: 503
	outcomeTimedOut                     // the backend did not connect or answer in time: 504
	outcomeBackendFailed                // refused, reset or garbled, with no retry left or allowed: 502
	outcomeNoRoute                      // no route matches its host and path: 404
	outcomeHTTP2Only                    // an HTTP/1 request for a service that speaks HTTP/2 only (h2c, gRPC): 505
)

var outcomeNames = [...]string{"none", "served", "upgraded", "client-gone", "bad-request", "cut-short",
	"no-backend", "busy", "timed-out", "backend-failed", "no-route", "http2-only"}

func (o outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "outcome(?)"
}

// closes reports whether the client connection cannot carry another
// exchange after one that ended with o: the client is gone, the answer was
// cut, the connection was a tunnel, or the request was not read whole.
func (o outcome) closes() bool {
	switch o {
	case outcomeUpgraded, outcomeClientGone, outcomeBadRequest, outcomeCutShort:
		return true
	}
	return false
}

// statusClientGone is the status an exchange whose client went away is
// counted under (metrics, access log), as nginx's 499.
const statusClientGone = 499

// reach is how far a failed attempt's request got, which decides whether
// it may be sent again.
type reach uint8

const (
	reachedNothing reach = iota // not sent (the connection failed): any request may go elsewhere
	reachedMaybe                // sent, perhaps processed: only a replayable request may go again
	reachedAll                  // its body was consumed: it cannot be sent again
)

// failure is why an attempt failed before any of its answer reached the
// client.
type failure struct {
	err   error
	reach reach
	// stale: a reused keep-alive connection turned out closed before the
	// request could have been processed: the same backend again on a new
	// connection, which is neither the backend's failure nor a retry.
	stale bool
	// answered: the backend answered (a canary or baseline backend's 5xx,
	// discarded for the stable arm's answer; err is an *armAnswer).
	answered bool
}

// maxAttempts bounds the backends one request is tried on (Retries + 1).
const maxAttempts = 8

// exchange is the state of the exchange in progress on a client connection.
type exchange struct {
	state   exchangeState
	outcome outcome
	status  int // what the client was answered (statusClientGone when gone)
	started time.Time

	svc   *Service // where the request goes, by its route
	strip int      // bytes of the path the route strips
	// The attempt in progress: h has a request in flight counted for it
	// (released with h.done) from the moment it is chosen until the attempt
	// ends; bc is its connection.
	h      *host
	bc     *bconn
	fresh  bool    // the next connection to h must be a new one (the pooled one was stale)
	fail   failure // in stateFailed
	last   *host   // the backend of the last attempt, for the metrics
	tried  [maxAttempts]*host
	nTried int

	queuedAt   time.Time // when it first waited for a backend with room
	bodyInOut  bool      // the whole request body is in the out buffer: it can be sent again
	skipBody   bool      // the backend answered before the body was sent
	replayable bool      // bodyInOut, and safe to send twice when it may have been processed
	closeAfter bool      // close the client connection after this exchange

	// During a canary (arms.go): the arm of the first attempt; whether the
	// split chose it (its attempts are measured, each from attemptAt, since
	// started: 8 bytes instead of a time.Time's 24, monotonic all the same)
	// or X-Herd-Canary did; whether an attempt on a canary or baseline
	// backend failed (the request gets one more attempt, on the stable arm).
	arm       Arm
	measured  bool
	pinned    bool
	armFailed bool
	attemptAt time.Duration
}

// begin starts an attempt on h, whose request in flight the caller counted.
func (x *exchange) begin(h *host) {
	x.h, x.last = h, h
	x.tried[x.nTried] = h
	x.nTried++
	h.requests.Add(1)
	x.state = stateConnecting
	if x.measured {
		x.attemptAt = time.Since(x.started)
	}
}

// failAttempt ends the attempt in progress with f. Its backend's request in
// flight is released, unless f is stale: the same backend is tried again.
// A failure of a measured attempt counts against its backend's arm.
func (x *exchange) failAttempt(f failure) {
	if x.h != nil && !f.stale {
		if x.measured && !f.answered { // an answer was counted with its head
			x.svc.record(x.h, 0, 0)
		}
		x.armFailed = x.armFailed || x.h.arm != ArmStable
		x.h.done()
		x.h = nil
	}
	x.bc = nil
	x.fail, x.state = f, stateFailed
}

// endAttempt releases the backend of an attempt that ended without failing.
func (x *exchange) endAttempt() {
	if x.h != nil {
		x.h.done()
		x.h = nil
	}
	x.bc = nil
}

// retry reports whether the failed attempt's request may go to another
// backend, with retries left out of max (and one more after a failure on a
// canary or baseline backend: arms.go).
func (x *exchange) retry(max int) bool {
	if x.armFailed {
		max++
	}
	if x.nTried >= len(x.tried) || x.nTried > max {
		return false
	}
	switch x.fail.reach {
	case reachedNothing:
		return true
	case reachedMaybe:
		return x.replayable
	}
	return false
}

// errorOutcome is the outcome of answering the failed attempt's error.
func (x *exchange) errorOutcome() outcome {
	if isTimeout(x.fail.err) {
		return outcomeTimedOut
	}
	return outcomeBackendFailed
}

// statusOf is the status an outcome the gateway answers itself is sent with.
func statusOf(o outcome) int {
	switch o {
	case outcomeNoBackend, outcomeBusy:
		return 503
	case outcomeTimedOut:
		return 504
	case outcomeBackendFailed:
		return 502
	case outcomeNoRoute:
		return 404
	case outcomeHTTP2Only:
		return 505
	}
	return 500
}

// errNoBackends: the set is empty, or every backend in it was tried.
var errNoBackends = errors.New("no backend available")
