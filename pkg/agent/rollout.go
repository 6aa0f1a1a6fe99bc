package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/herd-cluster/herd/pkg/membership"
	"github.com/herd-cluster/herd/pkg/runtime"
)

// answer handles a query addressed to this agent: a deploy request from the
// rollout coordinator, a scale request (scale.go), or a gateway's request
// for the routes. Anything else is ignored.
func (a *Agent) answer(ctx context.Context, q *membership.Query) {
	switch q.Name() {
	case membership.QueryDeploy:
		a.answerDeploy(ctx, q)
	case membership.QueryScale:
		a.answerScale(q)
	case membership.QueryRoutes:
		if err := membership.AnswerRoutes(q, a.cfg.Routes); err != nil {
			a.logger.Warn("could not answer a routes request", "from", q.From(), "error", err)
		}
	}
}

// answerDeploy answers a deploy request: whether the agent can run, or
// took, the image (or the canary).
func (a *Agent) answerDeploy(ctx context.Context, q *membership.Query) {
	var resp membership.DeployResponse
	req, err := membership.DecodeDeployRequest(q.Payload())
	if err != nil {
		a.logger.Warn("refusing malformed deploy request", "from", q.From(), "error", err)
		resp.Error = err.Error()
	} else if err := a.deploy(ctx, req); err != nil {
		resp.Error = err.Error()
	}
	b, err := json.Marshal(resp)
	if err == nil {
		err = q.Respond(b)
	}
	if err != nil {
		a.logger.Warn("could not answer deploy request", "from", q.From(), "error", err)
	}
}

// deploy checks that req's image can run here and, unless it is only a
// check, records it as the desired image; converge does the rest. A
// request with a canary part is canary.go's.
func (a *Agent) deploy(ctx context.Context, req membership.DeployRequest) error {
	img, err := runtime.ParseImage(req.Image)
	if err != nil {
		return fmt.Errorf("%s: %w", a.cfg.Node, err)
	}
	if req.Canary != nil {
		return a.deployCanary(ctx, req, img)
	}
	// The image must fit in the tags beside the one running (a member's
	// tags have 512 bytes in all): an agent that cannot announce cannot
	// withdraw a replica either.
	next := a.tags
	next.Want = img.String()
	if err := a.canTake(ctx, next, img, "image "+img.String()); err != nil {
		return err
	}
	if req.CheckOnly {
		return nil
	}
	if err := a.refuseForCanary(img); err != nil {
		return err
	}
	if a.failed != nil {
		// Asked again: the coordinator reverts, or the operator retries.
		a.logger.Info("clearing the failed deploy", "image", a.failed.want, "reason", a.failed.reason)
		a.failed = nil
	}
	a.scaleFail = "" // asked again: a rollout would otherwise fail at once on it
	if img == a.want {
		return nil
	}
	if err := a.saveDesired(img, a.count); err != nil {
		return fmt.Errorf("%s: record desired image: %w", a.cfg.Node, err)
	}
	a.logger.Info("desired image changed", "from", a.want, "to", img, "rollout", req.Rollout)
	a.want = img
	for _, s := range a.slots {
		if s.state == stateBackoff { // failures of the previous image do not count against this one
			s.retryAt, s.failures = time.Now(), 0
		}
	}
	a.converge()
	if err := a.announce(); err != nil {
		a.logger.Error("announce desired image", "error", err)
	}
	return nil
}

// converge moves the replicas to the desired image one at a time: withdraw
// one from the gateways, wait for their acknowledgement, stop it (in-flight
// requests finish), start its successor on the same port, announce it once
// healthy, and only then take the next. Starts of an image no longer wanted
// are cancelled and redone.
func (a *Agent) converge() {
	a.convergeCount()
	if a.failed != nil && a.failed.want == a.want {
		return // given up on this image until asked again
	}
	for _, s := range a.slots {
		if s.cancel != nil && s.starting != a.want {
			s.cancel()
		}
	}
	for _, s := range a.slots {
		if s.state == stateStarting || s.state == stateDraining {
			return
		}
	}
	for _, s := range a.slots {
		if s.state != stateHealthy || s.replica == nil || s.replica.Image == a.want {
			continue
		}
		a.logger.Info("replacing replica", "index", s.index, "from", s.replica.Image, "to", a.want)
		old := s.replica
		s.replica, s.state = nil, stateDraining
		if err := a.announce(); err != nil {
			// Not withdrawn: it serves on; tried again next round.
			a.logger.Error("announce withdrawal", "index", s.index, "error", err)
			s.replica, s.state = old, stateHealthy
			return
		}
		a.launch(s, old, true)
		return
	}
}

// resolveTimeout bounds the check that a deploy's image is here: the
// answer waits on it, and the coordinator's query has a deadline of its own.
const resolveTimeout = 3 * time.Second

// deployFailure is why the agent gave up converging to want; its tags say
// so (membership.Tags.Fail) until the next deploy request.
type deployFailure struct {
	want   runtime.Image
	reason string
}

func truncateReason(s string) string {
	if len(s) > membership.MaxFailLen {
		return s[:membership.MaxFailLen]
	}
	return s
}

// canTake checks what a deploy request needs before the agent says yes:
// the tags it will announce (next) fit the gossip budget, and the runtime
// has img. what names the request in the error.
func (a *Agent) canTake(ctx context.Context, next membership.Tags, img runtime.Image, what string) error {
	if _, err := next.Encode(); err != nil {
		return fmt.Errorf("%s: %s: %w", a.cfg.Node, what, err)
	}
	rctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	if err := a.rt.Resolve(rctx, img); err != nil {
		return fmt.Errorf("%s: %w", a.cfg.Node, err)
	}
	return nil
}
