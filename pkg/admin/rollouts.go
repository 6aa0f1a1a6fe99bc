package admin

import (
	"context"
	"errors"
	"net/http"

	"github.com/herd-cluster/herd/pkg/api"
	"github.com/herd-cluster/herd/pkg/rollout"
)

// Rollouts is what the rollout endpoints need of the coordinator;
// *rollout.Coordinator has it.
type Rollouts interface {
	Start(context.Context, rollout.Options) (rollout.Rollout, error)
	Rollback(context.Context, rollout.Options) (rollout.Rollout, error)
	Get(id string) (rollout.Rollout, error)
	History() []rollout.Rollout
	Abort() (rollout.Rollout, error)
}

// HandleRollouts serves the rollout coordinator, answering api.Rollout:
//
//	POST /v1/rollouts         start one (api.RolloutOptions) → 201, 400 refused, 409 busy
//	GET  /v1/rollouts         history, newest first
//	GET  /v1/rollouts/{id}    one; "current" is the running or last one
//	POST /v1/rollouts/abort   stop the running one, reverting its batch
//	POST /v1/rollback         roll back to the previous image (options without image)
func (s *Server) HandleRollouts(c Rollouts) {
	start := func(fn func(context.Context, rollout.Options) (rollout.Rollout, error)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			var o api.RolloutOptions
			if err := decodeBody(r, &o); err != nil {
				writeError(w, http.StatusBadRequest, err.Error())
				return
			}
			ro, err := fn(r.Context(), optionsFrom(o))
			switch {
			case errors.Is(err, rollout.ErrBusy):
				writeError(w, http.StatusConflict, err.Error())
			case err != nil:
				writeError(w, http.StatusBadRequest, err.Error())
			default:
				writeJSON(w, http.StatusCreated, rolloutOf(ro))
			}
		}
	}
	s.mux.HandleFunc("POST /v1/rollouts", start(c.Start))
	s.mux.HandleFunc("POST /v1/rollback", start(c.Rollback))
	s.handleJSON("/v1/rollouts", func(*http.Request) (any, error) { return convertAll(c.History(), rolloutOf), nil })
	s.mux.HandleFunc("GET /v1/rollouts/{id}", func(w http.ResponseWriter, r *http.Request) {
		ro, err := c.Get(r.PathValue("id"))
		if err != nil {
			writeError(w, http.StatusNotFound, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, rolloutOf(ro))
	})
	s.mux.HandleFunc("POST /v1/rollouts/abort", func(w http.ResponseWriter, r *http.Request) {
		ro, err := c.Abort()
		if err != nil {
			writeError(w, http.StatusConflict, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, rolloutOf(ro))
	})
}
