// Package admin is the server side of Herd's admin HTTP API, mounted by
// gateways and agents: the bearer-token guard, the endpoints, the dashboard
// (ui/), and the conversions from the cluster's own values (membership
// nodes, balancer backends, rollouts, replicas) into the wire types of
// package api, which is what clients import.
package admin

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/herd-cluster/herd/pkg/api"
)

// Server is the admin API's handler. Every endpoint but /healthz requires
// "Authorization: Bearer <token>" when a token is configured.
type Server struct {
	mux    *http.ServeMux
	token  []byte
	logger hclog.Logger
}

// NewServer returns a Server answering /healthz; add endpoints with its
// Handle methods.
func NewServer(token string, logger hclog.Logger) *Server {
	if logger == nil {
		logger = hclog.Default()
	}
	s := &Server{mux: http.NewServeMux(), token: []byte(token), logger: logger.Named("admin")}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	return s
}

// Handle mounts h at pattern (http.ServeMux syntax), behind the token.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// handleJSON mounts a GET endpoint answering fn's value as JSON.
func (s *Server) handleJSON(path string, fn func(r *http.Request) (any, error)) {
	s.mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
		v, err := fn(r)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, v)
	})
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !public(r.URL.Path) && !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="herd"`)
		writeError(w, http.StatusUnauthorized, "missing or wrong token: send Authorization: Bearer <token>")
		return
	}
	s.mux.ServeHTTP(w, r)
}

// public paths answer without a token: the health check, and the dashboard's
// own pages, which ask for the token themselves.
func public(path string) bool {
	switch path {
	case "/healthz", "/", "/login", "/logout":
		return true
	}
	return false
}

// authorized accepts the bearer token, or for reads only the dashboard's
// cookie: a cookie rides along with any request the browser makes, so it must
// never be enough to change anything (no cross-site rollout).
func (s *Server) authorized(r *http.Request) bool {
	if len(s.token) == 0 {
		return true
	}
	if got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return s.tokenIs(got)
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		if c, err := r.Cookie(tokenCookie); err == nil {
			return s.tokenIs(c.Value)
		}
	}
	return false
}

func (s *Server) tokenIs(got string) bool {
	return subtle.ConstantTimeCompare([]byte(got), s.token) == 1
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// writeError writes an api.Error body with status.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, api.Error{Error: msg})
}

// maxBody bounds every request body the admin API reads.
const maxBody = 64 << 10

// decodeBody reads a JSON request body strictly: at most maxBody bytes, one
// value, no unknown fields.
func decodeBody(r *http.Request, v any) error {
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
