// Package route is how a service says which requests are its: a route is
// [host][/path-prefix], announced by the service's agents in their gossip
// tags (Encode, inline when they fit, else a hash and a count the gateways
// fetch the list for) and matched by the gateways (pkg/balancer's router).
// It imports only the standard library and internal/uri.
package route

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/herd-cluster/herd/internal/uri"
)

// Route is a host and a path prefix.
type Route struct {
	// Host is an exact name ("api.example.com", lower case), a wildcard of
	// one label ("*.example.com": a.example.com, not a.b.example.com nor
	// example.com), or "" for any host. Matched without case and port.
	Host string
	// Prefix is the path prefix, "/" for every path; it takes the paths on
	// its segment boundaries ("/predict": /predict and /predict/x, not
	// /predictor). Never a trailing slash, but for "/".
	Prefix string
}

// MaxLen bounds one route; MaxPerService bounds a service's routes.
const (
	MaxLen        = 255
	MaxPerService = 100
)

// String is the route as it is announced: [host][/prefix].
func (r Route) String() string {
	if r.Prefix == "/" && r.Host != "" {
		return r.Host
	}
	return r.Host + r.Prefix
}

// Parse reads a route: [host][/path-prefix]. A scheme, a port, a query or
// a fragment is refused, and so are bytes RFC 3986 does not allow in a
// host or a path; a trailing slash is dropped.
func Parse(s string) (Route, error) {
	switch {
	case s == "":
		return Route{}, errors.New("route \"\": empty")
	case len(s) > MaxLen:
		return Route{}, fmt.Errorf("route %q: longer than %d bytes", s[:32]+"…", MaxLen)
	case strings.Contains(s, "://"):
		return Route{}, fmt.Errorf("route %q: no scheme: a route is a host and a path prefix", s)
	case strings.ContainsAny(s, "?#"):
		return Route{}, fmt.Errorf("route %q: no query or fragment: a route is a host and a path prefix", s)
	}
	host, prefix := s, "/"
	if i := strings.IndexByte(s, '/'); i >= 0 {
		host, prefix = s[:i], s[i:]
	}
	if host != "" {
		name := strings.TrimPrefix(host, "*.")
		if strings.Contains(name, "*") || strings.ContainsAny(name, ":[]") || !uri.ValidHost([]byte(name)) {
			return Route{}, fmt.Errorf("route %q: host %q: want a name such as api.example.com or *.example.com, without a port", s, host)
		}
	}
	if !uri.ValidPart([]byte(prefix), uri.PathChar) || strings.Contains(prefix, "//") || strings.ContainsAny(prefix, "[]") {
		return Route{}, fmt.Errorf("route %q: path %q: not a valid path prefix", s, prefix)
	}
	if len(prefix) > 1 {
		prefix = strings.TrimSuffix(prefix, "/")
	}
	return Route{Host: strings.ToLower(host), Prefix: prefix}, nil
}

// ParseAll reads a service's routes: at most MaxPerService, each once.
func ParseAll(list []string) ([]Route, error) {
	if len(list) > MaxPerService {
		return nil, fmt.Errorf("%d routes: at most %d per service", len(list), MaxPerService)
	}
	out := make([]Route, 0, len(list))
	for _, s := range list {
		r, err := Parse(s)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out, nil
}

// Encode writes routes as the gossip tags carry them: separated by spaces,
// which neither a host nor a path holds.
func Encode(routes []Route) string {
	var b strings.Builder
	for i, r := range routes {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(r.String())
	}
	return b.String()
}

// Decode reads what Encode wrote, validating each route as Parse does.
func Decode(s string) ([]Route, error) {
	if s == "" {
		return nil, nil
	}
	return ParseAll(strings.Split(s, " "))
}

// Hash identifies a list of routes, in order: the first 12 bytes of its
// encoding's SHA-256, in hex.
func Hash(routes []Route) string {
	sum := sha256.Sum256([]byte(Encode(routes)))
	return hex.EncodeToString(sum[:12])
}
