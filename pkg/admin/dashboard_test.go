package admin

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/api"
)

func dashboardServer(t *testing.T, token string) (*httptest.Server, *int) {
	t.Helper()
	s := NewServer(token, hclog.NewNullLogger())
	s.handleJSON("/v1/members", func(*http.Request) (any, error) { return []api.Member{{Name: "n1"}}, nil })
	posts := new(int)
	s.Handle("POST /v1/rollouts", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*posts++
		writeJSON(w, http.StatusCreated, struct{}{})
	}))
	s.HandleDashboard(Dashboard{Node: "gw-1", Version: "v9"})
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv, posts
}

// browser is a client that keeps cookies and does not follow redirects, so
// each step can be checked.
func browser(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func fetch(t *testing.T, c *http.Client, req *http.Request) (int, string, http.Header) {
	t.Helper()
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b), resp.Header
}

func getReq(t *testing.T, u string) *http.Request {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	require.NoError(t, err)
	return req
}

func TestDashboardTokenInQueryBecomesCookie(t *testing.T) {
	srv, _ := dashboardServer(t, "s3cret")
	b := browser(t)

	code, body, _ := fetch(t, b, getReq(t, srv.URL+"/"))
	assert.Equal(t, http.StatusUnauthorized, code)
	assert.Contains(t, body, `<form method="post" action="/login"`, "no token: the login form")
	assert.NotContains(t, body, "gw-1")

	code, body, _ = fetch(t, b, getReq(t, srv.URL+"/?token=wrong"))
	assert.Equal(t, http.StatusUnauthorized, code)
	assert.Contains(t, body, "wrong token")

	code, _, h := fetch(t, b, getReq(t, srv.URL+"/?token=s3cret"))
	require.Equal(t, http.StatusSeeOther, code)
	assert.Equal(t, "/", h.Get("Location"), "the token leaves the address bar")
	cookie := h.Get("Set-Cookie")
	assert.Contains(t, cookie, "herd_token=s3cret")
	assert.Contains(t, cookie, "HttpOnly")
	assert.Contains(t, cookie, "SameSite=Strict")

	code, body, h = fetch(t, b, getReq(t, srv.URL+"/"))
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "gw-1")
	assert.Contains(t, body, "v9")
	assert.Contains(t, h.Get("Content-Security-Policy"), "default-src 'none'")
	code, body, _ = fetch(t, b, getReq(t, srv.URL+"/v1/members"))
	assert.Equal(t, http.StatusOK, code, "the cookie authorizes the page's reads")
	assert.Contains(t, body, `"n1"`)
}

func TestDashboardCookieNeverAuthorizesWrites(t *testing.T) {
	srv, posts := dashboardServer(t, "s3cret")
	b := browser(t)
	code, _, _ := fetch(t, b, getReq(t, srv.URL+"/?token=s3cret"))
	require.Equal(t, http.StatusSeeOther, code)

	req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/rollouts", strings.NewReader(`{"image":"x:1"}`))
	require.NoError(t, err)
	code, _, _ = fetch(t, b, req)
	assert.Equal(t, http.StatusUnauthorized, code, "a cookie rides along cross-site: it must not deploy")
	assert.Zero(t, *posts)

	req, err = http.NewRequest(http.MethodPost, srv.URL+"/v1/rollouts", strings.NewReader(`{"image":"x:1"}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer s3cret")
	code, _, _ = fetch(t, b, req)
	assert.Equal(t, http.StatusCreated, code)
	assert.Equal(t, 1, *posts)
}

func TestDashboardLoginFormAndLogout(t *testing.T) {
	srv, _ := dashboardServer(t, "s3cret")
	b := browser(t)
	post := func(path string, form url.Values) (int, string, http.Header) {
		req, err := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(form.Encode()))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return fetch(t, b, req)
	}
	code, body, _ := post("/login", url.Values{"token": {"nope"}})
	assert.Equal(t, http.StatusUnauthorized, code)
	assert.Contains(t, body, "wrong token")

	code, _, _ = post("/login", url.Values{"token": {"s3cret"}})
	require.Equal(t, http.StatusSeeOther, code)
	code, _, _ = fetch(t, b, getReq(t, srv.URL+"/"))
	assert.Equal(t, http.StatusOK, code)

	code, _, _ = post("/logout", nil)
	assert.Equal(t, http.StatusSeeOther, code)
	code, _, _ = fetch(t, b, getReq(t, srv.URL+"/"))
	assert.Equal(t, http.StatusUnauthorized, code, "signed out")
	code, _, _ = fetch(t, b, getReq(t, srv.URL+"/v1/members"))
	assert.Equal(t, http.StatusUnauthorized, code)
}

func TestDashboardWithoutToken(t *testing.T) {
	srv, _ := dashboardServer(t, "")
	code, body, _ := fetch(t, browser(t), getReq(t, srv.URL+"/"))
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "gw-1")
	code, _, _ = fetch(t, browser(t), getReq(t, srv.URL+"/nothing-here"))
	assert.Equal(t, http.StatusNotFound, code)
}
