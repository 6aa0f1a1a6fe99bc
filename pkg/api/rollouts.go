package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/herd-cluster/herd/pkg/rollout"
)

// maxBody bounds every request body the admin API reads.
const maxBody = 64 << 10

// DecodeBody reads a JSON request body strictly: at most maxBody bytes, one
// value, no unknown fields.
func DecodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody+1))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("request body: empty; want a JSON object")
		}
		return fmt.Errorf("request body: %w", err)
	}
	if dec.More() {
		return errors.New("request body: more than one JSON value")
	}
	return nil
}

// HandleRollouts serves the rollout coordinator:
//
//	POST /v1/rollouts         start one (Options) → 201, 400 refused, 409 busy
//	GET  /v1/rollouts         history, newest first
//	GET  /v1/rollouts/{id}    one; "current" is the running or last one
//	POST /v1/rollouts/abort   stop the running one, reverting its batch
//	POST /v1/rollback         roll back to the previous image (Options without image)
func (s *Server) HandleRollouts(c *rollout.Coordinator) {
	start := func(fn func(context.Context, rollout.Options) (rollout.Rollout, error)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			var o rollout.Options
			if err := DecodeBody(r, &o); err != nil {
				WriteError(w, http.StatusBadRequest, err.Error())
				return
			}
			ro, err := fn(r.Context(), o)
			switch {
			case errors.Is(err, rollout.ErrBusy):
				WriteError(w, http.StatusConflict, err.Error())
			case err != nil:
				WriteError(w, http.StatusBadRequest, err.Error())
			default:
				WriteJSON(w, http.StatusCreated, ro)
			}
		}
	}
	s.mux.HandleFunc("POST /v1/rollouts", start(c.Start))
	s.mux.HandleFunc("POST /v1/rollback", start(c.Rollback))
	s.HandleJSON("/v1/rollouts", func(*http.Request) (any, error) { return c.History(), nil })
	s.mux.HandleFunc("GET /v1/rollouts/{id}", func(w http.ResponseWriter, r *http.Request) {
		ro, err := c.Get(r.PathValue("id"))
		if err != nil {
			WriteError(w, http.StatusNotFound, err.Error())
			return
		}
		WriteJSON(w, http.StatusOK, ro)
	})
	s.mux.HandleFunc("POST /v1/rollouts/abort", func(w http.ResponseWriter, r *http.Request) {
		ro, err := c.Abort()
		if err != nil {
			WriteError(w, http.StatusConflict, err.Error())
			return
		}
		WriteJSON(w, http.StatusOK, ro)
	})
}

// StartRollout starts a rollout.
func (c *Client) StartRollout(ctx context.Context, o rollout.Options) (rollout.Rollout, error) {
	var out rollout.Rollout
	return out, c.doWithin(ctx, startTimeout, http.MethodPost, "/v1/rollouts", o, &out)
}

// Rollback starts a rollout back to the previous image.
func (c *Client) Rollback(ctx context.Context, o rollout.Options) (rollout.Rollout, error) {
	var out rollout.Rollout
	return out, c.doWithin(ctx, startTimeout, http.MethodPost, "/v1/rollback", o, &out)
}

// Rollout returns one rollout; "current" is the running or last one.
func (c *Client) Rollout(ctx context.Context, id string) (rollout.Rollout, error) {
	var out rollout.Rollout
	return out, c.do(ctx, http.MethodGet, "/v1/rollouts/"+id, nil, &out)
}

// Rollouts returns the history, newest first.
func (c *Client) Rollouts(ctx context.Context) ([]rollout.Rollout, error) {
	var out []rollout.Rollout
	return out, c.do(ctx, http.MethodGet, "/v1/rollouts", nil, &out)
}

// AbortRollout stops the running rollout.
func (c *Client) AbortRollout(ctx context.Context) (rollout.Rollout, error) {
	var out rollout.Rollout
	return out, c.doWithin(ctx, abortTimeout, http.MethodPost, "/v1/rollouts/abort", struct{}{}, &out)
}
