package api

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// Server is the admin API's handler. Every endpoint but /healthz requires
// "Authorization: Bearer <token>" when a token is configured.
type Server struct {
	mux    *http.ServeMux
	token  []byte
	logger hclog.Logger
}

// NewServer returns a Server answering /healthz; add endpoints with Handle
// and HandleJSON.
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

// HandleJSON mounts a GET endpoint answering fn's value as JSON.
func (s *Server) HandleJSON(path string, fn func(r *http.Request) (any, error)) {
	s.mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
		v, err := fn(r)
		if err != nil {
			WriteError(w, http.StatusInternalServerError, err.Error())
			return
		}
		WriteJSON(w, http.StatusOK, v)
	})
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !public(r.URL.Path) && !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="herd"`)
		WriteError(w, http.StatusUnauthorized, "missing or wrong token: pass --token or HERD_TOKEN")
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

// WriteJSON writes v with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// WriteError writes an Error body with status.
func WriteError(w http.ResponseWriter, status int, msg string) {
	WriteJSON(w, status, Error{Error: msg})
}
