package balancer

import (
	"bytes"
	"sort"
	"strings"

	"github.com/herd-cluster/herd/pkg/route"
)

// Route sends a service the requests for its host whose path is its prefix
// or below it (route.Route says how both match).
type Route struct {
	route.Route
	Service string
	// StripPrefix removes the prefix from the path the backend gets
	// (/predict/x → /x, /predict → /).
	StripPrefix bool
}

// target is where a route sends a request.
type target struct {
	svc   *Service
	strip int // bytes of the path to strip: the prefix's length, or 0
}

// pathTable is one host's routes by prefix.
type pathTable map[string]target

// router is an immutable routing table: exact hosts before wildcards
// before any host, then the longest path prefix. A lookup costs a map
// lookup per host class and per path segment, whatever the number of
// routes.
type router struct {
	exact    map[string]pathTable // by host, lower case, no port
	wildcard map[string]pathTable // by the suffix after "*."
	any      pathTable
	fallback *Service // takes what no route matches; nil: 404
}

// newRouter builds the table; service returns each route's service.
func newRouter(routes []Route, fallback *Service, service func(name string) *Service) *router {
	r := &router{exact: map[string]pathTable{}, wildcard: map[string]pathTable{}, fallback: fallback}
	for _, rt := range routes {
		host := strings.ToLower(rt.Host)
		var pt pathTable
		switch {
		case host == "":
			if r.any == nil {
				r.any = pathTable{}
			}
			pt = r.any
		case strings.HasPrefix(host, "*."):
			if pt = r.wildcard[host[2:]]; pt == nil {
				pt = pathTable{}
				r.wildcard[host[2:]] = pt
			}
		default:
			if pt = r.exact[host]; pt == nil {
				pt = pathTable{}
				r.exact[host] = pt
			}
		}
		t := target{svc: service(rt.Service)}
		if rt.StripPrefix && rt.Prefix != "/" {
			t.strip = len(rt.Prefix)
		}
		if _, taken := pt[rt.Prefix]; !taken { // the caller resolved conflicts; the first stays
			pt[rt.Prefix] = t
		}
	}
	return r
}

// empty reports whether the table sends nothing anywhere: no route and no
// fallback (a gateway that has no service to route yet).
func (r *router) empty() bool {
	return r == nil || len(r.exact) == 0 && len(r.wildcard) == 0 && len(r.any) == 0 && r.fallback == nil
}

// lookup returns where a request for host (its Host, perhaps with a port)
// and path (its origin-form target, perhaps with a query) goes.
func (r *router) lookup(host, path []byte) (target, bool) {
	if r == nil {
		return target{}, false
	}
	var buf [256]byte
	h := hostKey(host, buf[:0])
	if pt, ok := r.exact[string(h)]; ok {
		if t, ok := pt.match(path); ok {
			return t, true
		}
	}
	if i := bytes.IndexByte(h, '.'); i > 0 {
		if pt, ok := r.wildcard[string(h[i+1:])]; ok {
			if t, ok := pt.match(path); ok {
				return t, true
			}
		}
	}
	if t, ok := r.any.match(path); ok {
		return t, true
	}
	if r.fallback != nil {
		return target{svc: r.fallback}, true
	}
	return target{}, false
}

// match finds the longest prefix of path, on segment boundaries.
func (pt pathTable) match(path []byte) (target, bool) {
	if len(pt) == 0 {
		return target{}, false
	}
	if i := bytes.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if len(path) == 0 || path[0] != '/' { // "*"
		t, ok := pt["/"]
		return t, ok
	}
	p := path
	if len(p) > 1 && p[len(p)-1] == '/' {
		p = p[:len(p)-1]
	}
	for {
		if t, ok := pt[string(p)]; ok {
			return t, true
		}
		if len(p) == 1 {
			return target{}, false
		}
		i := bytes.LastIndexByte(p, '/')
		if i == 0 {
			p = p[:1]
		} else {
			p = p[:i]
		}
	}
}

// hostKey is a Host header's name, lower case, without its port.
func hostKey(host, buf []byte) []byte {
	if len(host) > 0 && host[0] == '[' { // an IP literal
		if i := bytes.IndexByte(host, ']'); i > 0 {
			host = host[:i+1]
		}
	} else if i := bytes.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	for _, c := range host {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf = append(buf, c)
	}
	return buf
}

// appendStripped appends path with its first n bytes, a route's prefix,
// removed: what remains starts with "/" (/predict/x?q → /x?q, /predict →
// /, /predict?q → /?q).
func appendStripped(out, path []byte, n int) []byte {
	if n <= 0 || n > len(path) {
		return append(out, path...)
	}
	rest := path[n:]
	if len(rest) == 0 || rest[0] != '/' {
		out = append(out, '/')
	}
	return append(out, rest...)
}

// SortRoutes orders routes by precedence: exact hosts, wildcards, any host,
// then longer prefixes first (as lookups try them).
func SortRoutes(routes []Route) {
	class := func(r Route) int {
		switch {
		case r.Host == "":
			return 2
		case strings.HasPrefix(r.Host, "*."):
			return 1
		}
		return 0
	}
	sort.SliceStable(routes, func(i, j int) bool {
		a, b := routes[i], routes[j]
		if ca, cb := class(a), class(b); ca != cb {
			return ca < cb
		}
		if a.Host != b.Host {
			return a.Host < b.Host
		}
		return len(a.Prefix) > len(b.Prefix)
	})
}
