package api

import "context"

// Route states, as Route.State shows them.
const (
	RouteOK         = "ok"
	RouteNoBackends = "no backends" // claimed, but none of its service's backends is in rotation
	RouteConflict   = "conflict"    // refused: another service claimed it first (HeldBy)
)

// Route is one service's claim on a route, as GET /v1/routes shows it.
type Route struct {
	// Host is the exact host, "*.domain" (one label), or empty for any.
	Host string `json:"host"`
	// Path is the path prefix, "/" for every path.
	Path    string `json:"path"`
	Service string `json:"service"`
	// StripPrefix: the backends get the path without Path.
	StripPrefix bool `json:"strip_prefix,omitempty"`
	// State is one of the Route* states.
	State string `json:"state"`
	// HeldBy is the service that has the route, when State is RouteConflict.
	HeldBy string `json:"held_by,omitempty"`
	// Backends is how many of Service's backends are in rotation.
	Backends int `json:"backends"`
}

// Routing is a gateway's routing table (GET /v1/routes): the routes in
// precedence order (exact hosts, wildcards, any host; then the longest
// path), each refused claim after the one that has the route.
type Routing struct {
	Routes []Route `json:"routes"`
	// Default is the service that takes what no route matches; empty: such
	// requests are answered 404.
	Default string `json:"default,omitempty"`
	// AllServices: the gateway routes every service by its routes. False:
	// it routes Default only, every request to it.
	AllServices bool `json:"all_services"`
}

// Routes returns the gateway's routing table (GET /v1/routes).
func (c *Client) Routes(ctx context.Context) (Routing, error) {
	var out Routing
	return out, c.get(ctx, "/v1/routes", &out)
}
