package admin

import (
	"embed"
	"html/template"
	"net/http"
)

// tokenCookie keeps the dashboard's token in the browser: HttpOnly (no
// script reads it), SameSite=Strict, Secure over TLS, gone with the session.
const tokenCookie = "herd_token"

//go:embed ui/*.html
var uiFiles embed.FS

var uiPages = template.Must(template.ParseFS(uiFiles, "ui/*.html"))

// Dashboard is what the dashboard page shows of the process serving it.
type Dashboard struct {
	Node    string
	Version string
}

// HandleDashboard serves the dashboard at / and its login at /login and
// /logout. The page is self-contained (no CDN, no fonts from elsewhere) and
// reads /v1/members, /v1/backends, /v1/rollouts, /v1/routes, /v1/certs and
// /v1/autoscale every second; a certificate expiring within 14 days, or
// whose replacement was refused, is a warning at the top.
//
// With a token configured, the browser gives it once, as ?token= or in the
// login form; it is then kept in a cookie, which authorizes reads only.
func (s *Server) HandleDashboard(d Dashboard) {
	s.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		if tok := r.URL.Query().Get("token"); tok != "" {
			s.login(w, r, tok)
			return
		}
		if !s.authorized(r) {
			s.loginPage(w, http.StatusUnauthorized, "")
			return
		}
		page(w, http.StatusOK, "dashboard.html", d)
	})
	s.mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
		if err := r.ParseForm(); err != nil {
			s.loginPage(w, http.StatusBadRequest, "the form could not be read")
			return
		}
		s.login(w, r, r.PostForm.Get("token"))
	})
	s.mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: tokenCookie, Path: "/", MaxAge: -1, HttpOnly: true,
			SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
}

// login checks tok and, if right, keeps it in the cookie and sends the
// browser to / (so the token leaves the address bar and the history).
func (s *Server) login(w http.ResponseWriter, r *http.Request, tok string) {
	if len(s.token) > 0 && !s.tokenIs(tok) {
		s.logger.Warn("dashboard login refused", "from", r.RemoteAddr)
		s.loginPage(w, http.StatusUnauthorized, "wrong token")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: tok, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) loginPage(w http.ResponseWriter, status int, problem string) {
	page(w, status, "login.html", struct{ Problem string }{problem})
}

func page(w http.ResponseWriter, status int, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// Everything the page needs is in it: nothing from elsewhere may load.
	w.Header().Set("Content-Security-Policy",
		"default-src 'none'; connect-src 'self'; img-src 'self' data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = uiPages.ExecuteTemplate(w, name, data)
}
