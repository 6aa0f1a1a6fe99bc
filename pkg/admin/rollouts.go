package admin

import (
	"context"
	"errors"
	"net/http"

	"github.com/herd-cluster/herd/pkg/api"
	"github.com/herd-cluster/herd/pkg/rollout"
)

// Rollouts is what the rollout endpoints need of the coordinators, one per
// service; *rollout.Set has it. A service "" is the only one there is.
type Rollouts interface {
	Start(ctx context.Context, service string, o rollout.Options) (rollout.Rollout, error)
	Rollback(ctx context.Context, service string, o rollout.Options) (rollout.Rollout, error)
	Get(service, id string) (rollout.Rollout, error)
	History(service string) ([]rollout.Rollout, error)
	Abort(service string) (rollout.Rollout, error)
	Promote(service string) (rollout.Rollout, error)
}

// HandleRollouts serves the rollout coordinators, answering api.Rollout.
// Each endpoint takes the service in ?service= (or the body's "service");
// without it, the only service there is, and 400 if there are several:
//
//	POST /v1/rollouts         start one (api.RolloutOptions) → 201, 400 refused, 409 busy
//	GET  /v1/rollouts         history, newest first (every service's without ?service=)
//	GET  /v1/rollouts/{id}    one; "current" is the service's running or last one
//	POST /v1/rollouts/abort   stop the service's running one, reverting its batch (or removing its canary)
//	POST /v1/rollouts/promote skip the running canary's remaining steps → 200, 409 no canary running
//	POST /v1/rollback         roll the service back to its previous image (options without image)
func (s *Server) HandleRollouts(c Rollouts) {
	start := func(fn func(context.Context, string, rollout.Options) (rollout.Rollout, error)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			var o api.RolloutOptions
			if err := decodeBody(r, &o); err != nil {
				writeError(w, http.StatusBadRequest, err.Error())
				return
			}
			service := o.Service
			if service == "" {
				service = r.URL.Query().Get("service")
			}
			ro, err := fn(r.Context(), service, optionsFrom(o))
			writeRollout(w, http.StatusCreated, ro, err)
		}
	}
	s.mux.HandleFunc("POST /v1/rollouts", start(c.Start))
	s.mux.HandleFunc("POST /v1/rollback", start(c.Rollback))
	s.mux.HandleFunc("GET /v1/rollouts", func(w http.ResponseWriter, r *http.Request) {
		all, err := c.History(r.URL.Query().Get("service"))
		if err != nil {
			writeError(w, statusOfRolloutError(err), err.Error())
			return
		}
		writeJSON(w, http.StatusOK, convertAll(all, rolloutOf))
	})
	s.mux.HandleFunc("GET /v1/rollouts/{id}", func(w http.ResponseWriter, r *http.Request) {
		ro, err := c.Get(r.URL.Query().Get("service"), r.PathValue("id"))
		writeRollout(w, http.StatusOK, ro, err)
	})
	s.mux.HandleFunc("POST /v1/rollouts/abort", serviceAction(c.Abort))
	s.mux.HandleFunc("POST /v1/rollouts/promote", serviceAction(c.Promote))
}

// serviceAction serves an action on a service's running rollout: the
// service in an optional {"service": …} body or in ?service=.
func serviceAction(fn func(service string) (rollout.Rollout, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Service string `json:"service"`
		}
		if r.ContentLength != 0 { // the body is optional
			if err := decodeBody(r, &body); err != nil {
				writeError(w, http.StatusBadRequest, err.Error())
				return
			}
		}
		if body.Service == "" {
			body.Service = r.URL.Query().Get("service")
		}
		ro, err := fn(body.Service)
		writeRollout(w, http.StatusOK, ro, err)
	}
}

func writeRollout(w http.ResponseWriter, status int, ro rollout.Rollout, err error) {
	if err != nil {
		writeError(w, statusOfRolloutError(err), err.Error())
		return
	}
	writeJSON(w, status, rolloutOf(ro))
}

func statusOfRolloutError(err error) int {
	switch {
	case errors.Is(err, rollout.ErrBusy), errors.Is(err, rollout.ErrNotRunning), errors.Is(err, rollout.ErrNoCanary):
		return http.StatusConflict
	case errors.Is(err, rollout.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, rollout.ErrClosed):
		return http.StatusServiceUnavailable
	}
	return http.StatusBadRequest
}
