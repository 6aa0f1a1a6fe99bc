package admin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/herd-cluster/herd/pkg/api"
	"github.com/herd-cluster/herd/pkg/membership"
	"github.com/herd-cluster/herd/pkg/scale"
)

// Scaler is what the scale endpoints need; *scale.Scaler has it.
type Scaler interface {
	Scale(context.Context, scale.Request) (scale.Result, error)
	Status(service string) scale.Status
}

// HandleScale serves the scale orchestration:
//
//	POST /v1/services/{service}/scale  the service's total (api.ScaleRequest) → api.ScaleResult
//	POST /v1/nodes/{node}/scale        one agent's count
//	GET  /v1/services/{service}/scale  where the count stands → api.ScaleStatus
//
// A scale answers 200 once every agent was asked (an agent that did not
// take its count has an error in the result), 202 when queued behind a
// rollout, 400 refused (nothing changed), 409 a rollout of the service
// runs. The status answers 404 for a service with no agents.
func (s *Server) HandleScale(sc Scaler) {
	post := func(req func(*http.Request) scale.Request) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			var body api.ScaleRequest
			if err := decodeBody(r, &body); err != nil {
				writeError(w, http.StatusBadRequest, err.Error())
				return
			}
			sr := req(r)
			sr.Replicas, sr.AllowZero, sr.AfterRollout = body.Replicas, body.AllowZero, body.AfterRollout
			sr.Reason = reasonOf(body.Reason, r)
			res, err := sc.Scale(r.Context(), sr)
			switch {
			case errors.Is(err, scale.ErrRolloutRunning):
				writeError(w, http.StatusConflict, err.Error())
			case errors.Is(err, scale.ErrRefused):
				writeError(w, http.StatusBadRequest, err.Error())
			case err != nil:
				writeError(w, http.StatusServiceUnavailable, err.Error())
			case res.Queued:
				writeJSON(w, http.StatusAccepted, scaleResultOf(res))
			default:
				writeJSON(w, http.StatusOK, scaleResultOf(res))
			}
		}
	}
	s.mux.HandleFunc("POST /v1/services/{service}/scale", post(func(r *http.Request) scale.Request {
		return scale.Request{Service: r.PathValue("service")}
	}))
	s.mux.HandleFunc("POST /v1/nodes/{node}/scale", post(func(r *http.Request) scale.Request {
		return scale.Request{Node: r.PathValue("node")}
	}))
	s.mux.HandleFunc("GET /v1/services/{service}/scale", func(w http.ResponseWriter, r *http.Request) {
		st := sc.Status(r.PathValue("service"))
		if len(st.Agents) == 0 && st.Queued == nil {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no agents of service %q in the cluster", st.Service))
			return
		}
		writeJSON(w, http.StatusOK, scaleStatusOf(st))
	})
}

// reasonOf is who asks, for the logs: the client's reason and address.
func reasonOf(reason string, r *http.Request) string {
	if reason == "" {
		reason = "admin API"
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		reason += " from " + host
	}
	return reason
}

// scaleResultOf converts a scale's result.
func scaleResultOf(r scale.Result) api.ScaleResult {
	out := api.ScaleResult{Service: r.Service, Node: r.Node, Replicas: r.Replicas, Queued: r.Queued,
		Agents: make([]api.ScaleAgent, 0, len(r.Agents))}
	for _, a := range r.Agents {
		sa := api.ScaleAgent{Node: a.Node, Previous: a.Previous, Replicas: a.Replicas}
		if a.Err != nil {
			sa.Error, sa.NoAnswer = a.Err.Error(), errors.Is(a.Err, membership.ErrNoAnswer)
		}
		out.Agents = append(out.Agents, sa)
	}
	return out
}

// scaleStatusOf converts a service's scale status.
func scaleStatusOf(st scale.Status) api.ScaleStatus {
	out := api.ScaleStatus{Service: st.Service, Replicas: st.Replicas, Healthy: st.Healthy, Routed: st.Routed,
		Rollout: st.Rollout, Agents: make([]api.ScaleAgentStatus, 0, len(st.Agents))}
	for _, a := range st.Agents {
		out.Agents = append(out.Agents, api.ScaleAgentStatus{Node: a.Node, Status: string(a.Status), Replicas: a.Replicas,
			Healthy: a.Healthy, Routed: a.Routed, Problem: a.Problem})
	}
	if q := st.Queued; q != nil {
		out.Queued = &api.QueuedScale{Node: q.Request.Node, Replicas: q.Request.Replicas, Rollout: q.Rollout, Since: q.Since.UTC()}
	}
	if o := st.LastQueued; o != nil {
		out.LastQueued = &api.QueuedScaleOutcome{Node: o.Request.Node, Replicas: o.Request.Replicas, Done: o.Done.UTC(), Error: o.Error}
	}
	return out
}
