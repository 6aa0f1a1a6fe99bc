package admin

import (
	"errors"
	"net/http"

	"github.com/herd-cluster/herd/pkg/agent"
	"github.com/herd-cluster/herd/pkg/api"
	"github.com/herd-cluster/herd/pkg/balancer"
	"github.com/herd-cluster/herd/pkg/certs"
	"github.com/herd-cluster/herd/pkg/gateway"
	"github.com/herd-cluster/herd/pkg/membership"
)

// HandleMembers serves GET /v1/members: the nodes members returns, as
// []api.Member.
func (s *Server) HandleMembers(members func() []membership.Node) {
	s.handleJSON("/v1/members", func(*http.Request) (any, error) {
		return convertAll(members(), memberOf), nil
	})
}

// HandleBackends serves GET /v1/backends: the gateway's backends, as
// []api.Backend.
func (s *Server) HandleBackends(backends func() []balancer.BackendStatus) {
	s.handleJSON("/v1/backends", func(*http.Request) (any, error) {
		return convertAll(backends(), backendOf), nil
	})
}

// HandleRoutes serves GET /v1/routes: the gateway's routing, as
// api.Routing.
func (s *Server) HandleRoutes(routing func() gateway.RoutingStatus) {
	s.handleJSON("/v1/routes", func(*http.Request) (any, error) {
		return routingOf(routing()), nil
	})
}

// HandleCerts serves GET /v1/certs: the certificates of the gateway's TLS
// listener, as []api.Cert.
func (s *Server) HandleCerts(list func() []certs.Info) {
	s.handleJSON("/v1/certs", func(*http.Request) (any, error) {
		return convertAll(list(), certOf), nil
	})
}

// HandleReplicas serves GET /v1/replicas: an agent's replicas, as
// []api.Replica.
func (s *Server) HandleReplicas(replicas func() []agent.ReplicaStatus) {
	s.handleJSON("/v1/replicas", func(*http.Request) (any, error) {
		return convertAll(replicas(), replicaOf), nil
	})
}

// HandleForceLeave serves
//
//	POST /v1/members/{name}/force-leave   remove a failed member for good
//
// 200 removed (api.ForceLeaveResult); 404 no such member; 409 the member is
// alive (stop it instead).
func (s *Server) HandleForceLeave(forceLeave func(name string) error) {
	s.mux.HandleFunc("POST /v1/members/{name}/force-leave", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		err := forceLeave(name)
		switch {
		case errors.Is(err, membership.ErrNoSuchMember):
			writeError(w, http.StatusNotFound, err.Error())
		case errors.Is(err, membership.ErrMemberAlive):
			writeError(w, http.StatusConflict, err.Error())
		case err != nil:
			writeError(w, http.StatusInternalServerError, err.Error())
		default:
			s.logger.Info("member removed by force-leave", "node", name)
			writeJSON(w, http.StatusOK, api.ForceLeaveResult{Removed: name})
		}
	})
}
