package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/herd-cluster/herd/internal/atomicfile"
	"github.com/herd-cluster/herd/pkg/balancer"
	"github.com/herd-cluster/herd/pkg/membership"
	"github.com/herd-cluster/herd/pkg/route"
)

// View is what a gateway routes by: each member as it last applied it, and
// each backend's health. A gateway keeps it in its data dir (Config.ViewPath)
// so that, restarted, it routes from its first request; and hands it to
// the process that replaces it on an upgrade.
type View struct {
	Saved    time.Time                `json:"saved"`
	Nodes    []membership.EncodedNode `json:"nodes"`
	Backends []BackendHealth          `json:"backends,omitempty"`
	// Claims are the services claiming each route, the first claim first
	// (routes.go); Held, the claims of members that failed, which keep
	// them until they leave.
	Claims []RouteClaims `json:"claims,omitempty"`
	Held   []HeldRoutes  `json:"held,omitempty"`
}

// RouteClaims is a route and the services claiming it, in order.
type RouteClaims struct {
	Route    string   `json:"route"`
	Services []string `json:"services"`
}

// HeldRoutes are the routes a failed member claims.
type HeldRoutes struct {
	Node        string `json:"node"`
	Service     string `json:"service"`
	Routes      string `json:"routes"`
	StripPrefix bool   `json:"strip_prefix,omitempty"`
	Gen         uint64 `json:"gen"`
}

// BackendHealth is a backend the view's balancer had out of rotation.
type BackendHealth struct {
	Addr  string `json:"addr"`
	State string `json:"state"` // balancer.StateDown or StateEjected
}

// view returns the current view. Run's goroutine, or before Run.
func (g *Gateway) view() View {
	v := View{Saved: time.Now().UTC()}
	g.mu.Lock()
	for _, n := range g.nodes {
		if e, err := n.Encode(); err == nil {
			v.Nodes = append(v.Nodes, e)
		}
	}
	for r, cs := range g.claims {
		c := RouteClaims{Route: r.String()}
		for _, cl := range cs {
			c.Services = append(c.Services, cl.service)
		}
		v.Claims = append(v.Claims, c)
	}
	for name, h := range g.holds {
		if _, ok := g.nodes[name]; !ok {
			v.Held = append(v.Held, HeldRoutes{Node: name, Service: h.service, Routes: route.Encode(h.routes),
				StripPrefix: h.strip, Gen: h.gen})
		}
	}
	g.mu.Unlock()
	slices.SortFunc(v.Nodes, func(a, b membership.EncodedNode) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(v.Claims, func(a, b RouteClaims) int { return strings.Compare(a.Route, b.Route) })
	slices.SortFunc(v.Held, func(a, b HeldRoutes) int { return strings.Compare(a.Node, b.Node) })
	for _, st := range g.bal.Backends() {
		if st.State == balancer.StateDown || st.State == balancer.StateEjected {
			v.Backends = append(v.Backends, BackendHealth{Addr: st.Addr.String(), State: st.State})
		}
	}
	return v
}

// Restore makes v the gateway's view: its members are applied, in the
// order of their route claims, and the backends it had out of rotation are
// out again until their health checks pass. Call it before Run. It returns
// how many members it applied; a malformed member or claim is skipped and
// logged.
func (g *Gateway) Restore(v View) int {
	g.restoreClaims(v)
	var nodes []membership.Node
	for _, e := range v.Nodes {
		n := membership.DecodeNode(e)
		if n.Err != nil {
			g.logger.Warn("skipping a member of the saved view", "node", e.Name, "error", n.Err)
			continue
		}
		nodes = append(nodes, n)
	}
	if len(nodes) > 0 {
		g.apply(membership.Event{Type: membership.EventJoin, Nodes: nodes})
	} else {
		g.reroute()
	}
	out := make(map[string]string, len(v.Backends))
	for _, b := range v.Backends {
		out[b.Addr] = b.State
	}
	g.bal.RestoreHealth(out)
	return len(nodes)
}

// LoadView reads a view file; a missing one is an empty view.
func LoadView(path string) (View, error) {
	var v View
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return v, nil
	}
	if err != nil {
		return v, fmt.Errorf("view %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return View{}, fmt.Errorf("view %s is corrupt: %w", path, err)
	}
	return v, nil
}

// viewChanged schedules a write of the view file.
func (g *Gateway) viewChanged() {
	if g.cfg.ViewPath == "" || g.dirty || g.saveTimer == nil {
		return
	}
	g.dirty = true
	g.saveTimer.Reset(g.cfg.ViewSaveDelay)
}

// saveView writes the view file, if it changed.
func (g *Gateway) saveView() {
	if g.cfg.ViewPath == "" || !g.dirty {
		return
	}
	g.dirty = false
	b, err := json.MarshalIndent(g.view(), "", "  ")
	if err == nil {
		err = atomicfile.Write(g.cfg.ViewPath, b, 0o600)
	}
	if err != nil {
		g.logger.Error("could not save the view", "path", g.cfg.ViewPath, "error", err)
	}
}

// restoreClaims takes the claims' order and the failed members' claims
// from v.
func (g *Gateway) restoreClaims(v View) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range v.Claims {
		r, err := route.Parse(c.Route)
		if err != nil {
			g.logger.Warn("skipping a route claim of the saved view", "route", c.Route, "error", err)
			continue
		}
		var cs []claimant
		for _, svc := range c.Services {
			if membership.ValidServiceName(svc) {
				cs = append(cs, claimant{service: svc})
			}
		}
		g.claims[r] = cs
	}
	for _, h := range v.Held {
		routes, err := route.Decode(h.Routes)
		if err != nil || h.Node == "" || !membership.ValidServiceName(h.Service) {
			g.logger.Warn("skipping a failed member's claims in the saved view", "node", h.Node, "error", err)
			continue
		}
		g.serviceOf[h.Node] = h.Service
		g.holds[h.Node] = holding{service: h.Service, routes: routes, strip: h.StripPrefix, gen: h.Gen}
	}
}
