package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"

	"github.com/herd-cluster/herd/internal/atomicfile"
	"github.com/herd-cluster/herd/pkg/balancer"
	"github.com/herd-cluster/herd/pkg/membership"
)

// View is what a gateway routes by: each member as it last applied it, and
// each backend's health. A gateway keeps it in its data dir (Config.ViewPath)
// so that, restarted, it routes from its first request; and hands it to
// the process that replaces it on an upgrade.
type View struct {
	Saved    time.Time                `json:"saved"`
	Nodes    []membership.EncodedNode `json:"nodes"`
	Backends []BackendHealth          `json:"backends,omitempty"`
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
	g.mu.Unlock()
	slices.SortFunc(v.Nodes, func(a, b membership.EncodedNode) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	for _, st := range g.bal.Backends() {
		if st.State == balancer.StateDown || st.State == balancer.StateEjected {
			v.Backends = append(v.Backends, BackendHealth{Addr: st.Addr.String(), State: st.State})
		}
	}
	return v
}

// Restore makes v the gateway's view: its members are applied, and the
// backends it had out of rotation are out again until their health checks
// pass. Call it before Run. It returns how many members it applied; a
// malformed member is skipped and logged.
func (g *Gateway) Restore(v View) int {
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
