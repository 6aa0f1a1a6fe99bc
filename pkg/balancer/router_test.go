package balancer

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/route"
)

// testRouter builds a router over services made on demand.
func testRouter(routes []Route, fallback string) *router {
	svcs := map[string]*Service{}
	get := func(name string) *Service {
		if svcs[name] == nil {
			svcs[name] = &Service{name: name}
		}
		return svcs[name]
	}
	var fb *Service
	if fallback != "" {
		fb = get(fallback)
	}
	return newRouter(routes, fb, get)
}

// Precedence: exact host, then a wildcard of one label, then any host;
// within each, the longest prefix on segment boundaries. Hosts are matched
// without case and port.
func TestRouterLookup(t *testing.T) {
	r := testRouter([]Route{
		{Route: route.Route{Host: "api.example.com", Prefix: "/predict"}, Service: "exact-predict"},
		{Route: route.Route{Host: "api.example.com", Prefix: "/"}, Service: "exact-root"},
		{Route: route.Route{Host: "*.example.com", Prefix: "/predict/deep"}, Service: "wild-deep"},
		{Route: route.Route{Host: "*.example.com", Prefix: "/"}, Service: "wild-root"},
		{Route: route.Route{Prefix: "/predict"}, Service: "any-predict", StripPrefix: true},
		{Route: route.Route{Prefix: "/tone/v1"}, Service: "any-tone-v1"},
	}, "")
	for _, tc := range []struct{ host, path, want string }{
		{"api.example.com", "/predict", "exact-predict"},
		{"API.Example.COM:8080", "/predict/x?q=1", "exact-predict"},
		{"api.example.com", "/predictor", "exact-root"},
		{"api.example.com", "/other", "exact-root"},
		{"tone.example.com", "/predict/deep/er", "wild-deep"},
		{"tone.example.com", "/predict", "wild-root"},
		{"a.b.example.com", "/predict", "any-predict"}, // a wildcard is one label
		{"example.com", "/predict/", "any-predict"},
		{"other.test", "/tone/v1/x", "any-tone-v1"},
		{"other.test", "/tone/v2", ""},
		{"other.test", "/", ""},
		{"[::1]:80", "/predict", "any-predict"},
		{"", "/predict?x", "any-predict"},
	} {
		got, ok := r.lookup([]byte(tc.host), []byte(tc.path))
		name := ""
		if ok {
			name = got.svc.name
		}
		assert.Equal(t, tc.want, name, "%s %s", tc.host, tc.path)
	}
	got, _ := r.lookup([]byte("x"), []byte("/predict/a"))
	assert.Equal(t, len("/predict"), got.strip)

	fb := testRouter(nil, "default")
	got, ok := fb.lookup([]byte("x"), []byte("/anything"))
	require.True(t, ok)
	assert.Equal(t, "default", got.svc.name, "the default service takes what no route does")
}

func TestAppendStripped(t *testing.T) {
	for path, want := range map[string]string{
		"/predict/x?q=1": "/x?q=1", "/predict": "/", "/predict?q": "/?q", "/predict/": "/",
	} {
		assert.Equal(t, want, string(appendStripped(nil, []byte(path), len("/predict"))), path)
	}
	assert.Equal(t, "/a", string(appendStripped(nil, []byte("/a"), 0)))
}

// BenchmarkRouteLookup: the cost of finding a request's service stays flat
// from 1 route to 200 (50 services, 4 routes each: an exact host with two
// prefixes, a wildcard, and a path on any host).
func BenchmarkRouteLookup(b *testing.B) {
	for _, n := range []int{1, 50, 200} {
		var routes []Route
		for i := range n {
			svc := fmt.Sprintf("svc-%d", i/4)
			switch i % 4 {
			case 0:
				routes = append(routes, Route{Route: route.Route{Host: fmt.Sprintf("api-%d.example.com", i/4), Prefix: "/v1/predict"}, Service: svc})
			case 1:
				routes = append(routes, Route{Route: route.Route{Host: fmt.Sprintf("api-%d.example.com", i/4), Prefix: "/"}, Service: svc})
			case 2:
				routes = append(routes, Route{Route: route.Route{Host: fmt.Sprintf("*.tone-%d.example.com", i/4), Prefix: "/"}, Service: svc})
			case 3:
				routes = append(routes, Route{Route: route.Route{Prefix: fmt.Sprintf("/svc-%d", i/4)}, Service: svc})
			}
		}
		r := testRouter(routes, "")
		host, path := []byte("api-0.example.com"), []byte("/v1/predict/tone?text=hello")
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := r.lookup(host, path); !ok {
					b.Fatal("no route")
				}
			}
		})
	}
}

// Two services behind one balancer, routed by Host and by path; a prefix
// stripped for one; what no route takes is answered 404 with the request
// id, and its body, not read, closes the connection.
func TestRoutedServices(t *testing.T) {
	eachRelay(t, func(t *testing.T, rl relay) {
		b, f := newTestBalancer(t, rl)
		echo := func(name string) []testBackend {
			return startBackends(t, 1, func(int) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					fmt.Fprintf(w, "%s %s %s", name, r.Host, r.URL.RequestURI())
				}
			})
		}
		for name, bs := range map[string][]testBackend{"predictor": echo("predictor"), "tone": echo("tone")} {
			for _, be := range bs {
				b.Service(name).SetNode(be.Node, []netip.AddrPort{be.Addr})
			}
		}
		b.SetRoutes([]Route{
			{Route: route.Route{Host: "tone.example.com", Prefix: "/"}, Service: "tone"},
			{Route: route.Route{Prefix: "/predict"}, Service: "predictor", StripPrefix: true},
		}, "")
		do := func(host, path string) (int, string, string) {
			req, err := http.NewRequest(http.MethodGet, f.URL+path, nil)
			require.NoError(t, err)
			req.Host = host
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp.StatusCode, string(body), resp.Header.Get("X-Request-Id")
		}
		code, body, _ := do("Tone.Example.com:80", "/predict/x")
		assert.Equal(t, 200, code)
		assert.Equal(t, "tone Tone.Example.com:80 /predict/x", body, "the exact host wins over a path on any host")
		code, body, _ = do("api.example.com", "/predict/x?q=1")
		assert.Equal(t, 200, code)
		assert.Equal(t, "predictor api.example.com /x?q=1", body, "the prefix stripped")
		code, body, id := do("api.example.com", "/other")
		assert.Equal(t, 404, code)
		assert.Equal(t, "herd gateway: no route for this host and path\nrequest id: "+id+"\n", body)

		c, err := http.Post(f.URL+"/nowhere", "text/plain", strings.NewReader("a body"))
		require.NoError(t, err)
		c.Body.Close()
		assert.Equal(t, 404, c.StatusCode)

		got := map[string]int{}
		for _, st := range b.Backends() {
			got[st.Service]++
		}
		assert.Equal(t, map[string]int{"predictor": 1, "tone": 1}, got)
	})
}

// FuzzRouteLookup: any route that parses takes requests for its own host
// and prefix, and the lookup never panics on what a client sends.
func FuzzRouteLookup(f *testing.F) {
	for _, s := range []string{"api.example.com/predict", "/predict", "*.example.com", "/", "a/b%2Fc/"} {
		f.Add(s, "API.example.com:80", "/predict/x?y")
	}
	f.Fuzz(func(t *testing.T, s, host, path string) {
		r, err := route.Parse(s)
		if err != nil {
			return
		}
		tr := testRouter([]Route{{Route: r, Service: "s"}}, "")
		_, _ = tr.lookup([]byte(host), []byte(path))
		h := strings.TrimPrefix(r.Host, "*.")
		if strings.HasPrefix(r.Host, "*.") {
			h = "x." + h
		}
		got, ok := tr.lookup([]byte(strings.ToUpper(h)+":8080"), []byte(r.Prefix+"?q"))
		if !ok || got.svc.name != "s" {
			t.Fatalf("route %+v does not take its own host and prefix", r)
		}
	})
}
