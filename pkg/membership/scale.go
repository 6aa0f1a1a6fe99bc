package membership

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// QueryScale asks agents for their replica count: what it is and how far it
// may go (Check), or to change it. An agent answers at once, after checking
// that it can; it converges in the background and shows progress in its
// tags (Count, Ports). A request received twice changes nothing more.
const QueryScale = "herd-scale"

// maxScalePayload bounds a scale request and an agent's answer; anything
// larger is rogue. Both must fit one gossip packet with their header.
const maxScalePayload = 512

// MaxScaleReason bounds ScaleRequest.Reason.
const MaxScaleReason = 160

// scaleAttempts: how many times Scale asks an agent that does not answer.
const scaleAttempts = 2

// ErrNoAnswer is wrapped by the error Scale reports for an agent that did
// not answer, even when asked again.
var ErrNoAnswer = errors.New("no answer")

// ScaleRequest is QueryScale's payload.
type ScaleRequest struct {
	// Service is the service the agent must serve: one of another service
	// refuses, so that a request meant for one service never scales another.
	Service string `json:"service"`
	// Replicas is the count the agent is to run, 0 to MaxPorts; ignored
	// with Check.
	Replicas int `json:"replicas"`
	// Check asks only for the agent's count and room: nothing changes.
	Check bool `json:"check,omitempty"`
	// Reason says who asks and why, for the agent's log ("clusterctl scale
	// predictor 24 via gw-1"). Printable ASCII, at most MaxScaleReason bytes.
	Reason string `json:"reason,omitempty"`
}

// ScaleResponse is an agent's answer. Error is empty when the agent took
// the request (or, with Check, could take one).
type ScaleResponse struct {
	Error string `json:"error,omitempty"`
	// Replicas is the agent's count before the request: how many replicas
	// it runs when all is well.
	Replicas int `json:"replicas"`
	// Room is the most replicas the agent can run: its maximum, or fewer
	// when a port of its range is taken by something else.
	Room int `json:"room"`
	// Limit says what bounds Room ("its maximum is 1000", "port 8013 in use").
	Limit string `json:"limit,omitempty"`
}

// DecodeScaleRequest parses a scale payload strictly: size-limited, known
// fields only, a valid service name, a count in range, a printable reason.
func DecodeScaleRequest(b []byte) (ScaleRequest, error) {
	var r ScaleRequest
	if err := decodeStrict(b, maxScalePayload, &r); err != nil {
		return r, fmt.Errorf("scale request: %w", err)
	}
	if err := r.Validate(); err != nil {
		return r, fmt.Errorf("scale request: %w", err)
	}
	return r, nil
}

// Validate reports the first problem with r.
func (r ScaleRequest) Validate() error {
	switch {
	case !serviceRe.MatchString(r.Service):
		return fmt.Errorf("invalid service name %q", truncate(r.Service, 40))
	case r.Replicas < 0 || r.Replicas > MaxPorts:
		return fmt.Errorf("replica count %d out of range 0-%d", r.Replicas, MaxPorts)
	case !printable(r.Reason, MaxScaleReason):
		return fmt.Errorf("reason %q: want at most %d printable ASCII bytes", truncate(r.Reason, 40), MaxScaleReason)
	}
	return nil
}

// DecodeScaleResponse parses an agent's answer as strictly as a request.
func DecodeScaleResponse(b []byte) (ScaleResponse, error) {
	var r ScaleResponse
	if err := decodeStrict(b, maxScalePayload, &r); err != nil {
		return r, err
	}
	switch {
	case r.Replicas < 0 || r.Replicas > MaxPorts:
		return r, fmt.Errorf("replica count %d out of range 0-%d", r.Replicas, MaxPorts)
	case r.Room < 0 || r.Room > MaxPorts:
		return r, fmt.Errorf("room %d out of range 0-%d", r.Room, MaxPorts)
	case !printable(r.Error, maxScalePayload) || !printable(r.Limit, MaxFailLen):
		return r, errors.New("not printable ASCII")
	}
	return r, nil
}

// EncodeScaleResponse is an agent's answer as it travels, its Error cut to
// fit: an answer that does not fit a gossip packet would never arrive.
func EncodeScaleResponse(r ScaleResponse) ([]byte, error) {
	r.Error, r.Limit = asciiOnly(r.Error), asciiOnly(r.Limit)
	r.Limit = r.Limit[:min(len(r.Limit), MaxFailLen)]
	for {
		b, err := marshalPlain(r)
		if err != nil || len(b) <= maxScalePayload || r.Error == "" {
			return b, err
		}
		// Each round makes the error shorter by half the excess: a
		// printable ASCII byte takes one or two (\" \\) encoded.
		cut := (len(b)-maxScalePayload+1)/2 + len("...")
		if cut >= len(r.Error) {
			r.Error = ""
			continue
		}
		r.Error = r.Error[:len(r.Error)-cut] + "..."
	}
}

// marshalPlain is json.Marshal without escaping <, > and & (six bytes
// each): the answer is never HTML.
func marshalPlain(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// asciiOnly replaces whatever is not printable ASCII with '?'.
func asciiOnly(s string) string {
	return strings.Map(func(c rune) rune {
		if c < ' ' || c > '~' {
			return '?'
		}
		return c
	}, s)
}

// printable: at most max bytes, each printable ASCII.
func printable(s string, max int) bool {
	return len(s) <= max && !strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r > '~' })
}

// ScaleAnswer is one agent's answer to Scale: Err is set when the agent
// refused (its message), did not answer (wrapping ErrNoAnswer) or answered
// something malformed; Response holds what it said otherwise.
type ScaleAnswer struct {
	Response ScaleResponse
	Err      error
}

// Scale sends req to each of nodes, as many queries as their names need,
// and returns every node's answer. An agent that did not answer within
// timeout is asked once more (a request received twice changes nothing);
// one still silent gets an error wrapping ErrNoAnswer.
func (c *Cluster) Scale(ctx context.Context, nodes []string, req ScaleRequest, timeout time.Duration) map[string]ScaleAnswer {
	out := make(map[string]ScaleAnswer, len(nodes))
	payload, err := json.Marshal(req)
	if err == nil {
		err = req.Validate()
	}
	if err != nil {
		for _, n := range nodes {
			out[n] = ScaleAnswer{Err: err}
		}
		return out
	}
	answers := c.askAgents(ctx, QueryScale, payload, nodes, timeout, scaleAttempts)
	for _, n := range nodes {
		b, ok := answers[n]
		if !ok {
			out[n] = ScaleAnswer{Err: fmt.Errorf("%s did not answer within %s, asked %d times: %w", n, timeout, scaleAttempts, ErrNoAnswer)}
			continue
		}
		resp, err := DecodeScaleResponse(b)
		switch {
		case err != nil:
			out[n] = ScaleAnswer{Err: fmt.Errorf("%s: malformed answer: %w", n, err)}
		case resp.Error != "":
			out[n] = ScaleAnswer{Response: resp, Err: errors.New(resp.Error)}
		default:
			out[n] = ScaleAnswer{Response: resp}
		}
	}
	return out
}
