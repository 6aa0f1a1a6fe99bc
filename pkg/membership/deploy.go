package membership

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/herd-cluster/herd/pkg/runtime"
)

// QueryDeploy asks agents to run an image: the rollout coordinator's one
// command. An agent answers at once (after checking that it has the image
// and, unless CheckOnly, recording it as its desired image); it converges in
// the background and shows progress in its tags (Want, Image, Ports).
const QueryDeploy = "herd-deploy"

const maxDeployPayload = 1024

// deployAttempts: how many times Deploy asks an agent that does not answer.
const deployAttempts = 2

// DeployRequest is QueryDeploy's payload.
type DeployRequest struct {
	// Rollout names the rollout asking, for the agent's log.
	Rollout string `json:"rollout"`
	Image   string `json:"image"`
	// CheckOnly asks only whether the agent can run Image.
	CheckOnly bool `json:"check_only,omitempty"`
	// Canary, if set, asks for a canary of Image beside the agent's
	// replicas instead of replacing them (canary.go).
	Canary *CanaryRequest `json:"canary,omitempty"`
}

// DeployResponse is an agent's answer. Error is empty on success.
type DeployResponse struct {
	Error string `json:"error,omitempty"`
}

// DecodeDeployRequest parses a deploy payload strictly: size-limited, known
// fields only, a valid image reference.
func DecodeDeployRequest(b []byte) (DeployRequest, error) {
	var r DeployRequest
	if err := decodeStrict(b, maxDeployPayload, &r); err != nil {
		return r, fmt.Errorf("deploy request: %w", err)
	}
	if _, err := runtime.ParseImage(r.Image); err != nil {
		return r, fmt.Errorf("deploy request: %w", err)
	}
	if r.Canary != nil {
		if err := r.Canary.Validate(); err != nil {
			return r, fmt.Errorf("deploy request: %w", err)
		}
	}
	return r, nil
}

// decodeStrict decodes one JSON value of at most max bytes with no unknown
// fields.
func decodeStrict(b []byte, max int, v any) error {
	if len(b) > max {
		return fmt.Errorf("%d bytes, more than %d", len(b), max)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// Deploy sends req to the given agents, in as many queries as their names
// need, and returns each one's error (nil for success). A deploy request
// may be received twice (the same image again changes nothing), so agents
// that did not answer within timeout (a lost datagram, an agent busy for a
// moment) are asked once more; one that still did not answer gets an error
// saying so.
func (c *Cluster) Deploy(ctx context.Context, nodes []string, req DeployRequest, timeout time.Duration) map[string]error {
	out := make(map[string]error, len(nodes))
	payload, err := json.Marshal(req)
	if err != nil {
		for _, n := range nodes {
			out[n] = err
		}
		return out
	}
	answers := c.askAgents(ctx, QueryDeploy, payload, nodes, timeout, deployAttempts)
	for _, n := range nodes {
		b, ok := answers[n]
		if !ok {
			out[n] = fmt.Errorf("%s did not answer within %s, asked %d times", n, timeout, deployAttempts)
			continue
		}
		var resp DeployResponse
		if err := decodeStrict(b, maxDeployPayload, &resp); err != nil {
			out[n] = fmt.Errorf("%s: malformed answer: %w", n, err)
			continue
		}
		if resp.Error != "" {
			out[n] = errors.New(resp.Error)
		} else {
			out[n] = nil
		}
	}
	return out
}
