package api

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"github.com/herd-cluster/herd/pkg/membership"
)

// ForceLeaveResult is the answer to a force-leave.
type ForceLeaveResult struct {
	Removed string `json:"removed"`
}

// HandleForceLeave serves
//
//	POST /v1/members/{name}/force-leave   remove a failed member for good
//
// 200 removed; 404 no such member; 409 the member is alive (stop it instead).
func (s *Server) HandleForceLeave(forceLeave func(name string) error) {
	s.mux.HandleFunc("POST /v1/members/{name}/force-leave", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		err := forceLeave(name)
		switch {
		case errors.Is(err, membership.ErrNoSuchMember):
			WriteError(w, http.StatusNotFound, err.Error())
		case errors.Is(err, membership.ErrMemberAlive):
			WriteError(w, http.StatusConflict, err.Error())
		case err != nil:
			WriteError(w, http.StatusInternalServerError, err.Error())
		default:
			s.logger.Info("member removed by force-leave", "node", name)
			WriteJSON(w, http.StatusOK, ForceLeaveResult{Removed: name})
		}
	})
}

// ForceLeave removes a failed member for good.
func (c *Client) ForceLeave(ctx context.Context, name string) (ForceLeaveResult, error) {
	var out ForceLeaveResult
	return out, c.do(ctx, http.MethodPost, "/v1/members/"+url.PathEscape(name)+"/force-leave", nil, &out)
}
