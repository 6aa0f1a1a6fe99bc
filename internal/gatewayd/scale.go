package gatewayd

import (
	"github.com/herd-cluster/herd/pkg/balancer"
	"github.com/herd-cluster/herd/pkg/scale"
)

// newScaler is the gateway's scale orchestration: it asks the cluster's
// agents, refuses a scale of the service the coordinator is rolling out
// (one coordinator, for the gateway's service), and reports what this
// gateway routes to.
func (p *process) newScaler() (*scale.Scaler, error) {
	cfg := scale.DefaultConfig()
	cfg.Members, cfg.Node, cfg.Logger = p.cluster, p.cluster.LocalNode().Name, p.logger
	cfg.Rollout = func(service string) string {
		if service != p.cfg.Gateway.Service {
			return ""
		}
		r, err := p.coord.Get("current")
		if err != nil || r.Done() {
			return ""
		}
		return r.ID + " to " + r.Image
	}
	cfg.RolloutChanged = p.coord.Changed
	cfg.Routed = func(service string) (map[string]int, bool) {
		if service != p.cfg.Gateway.Service {
			return nil, false
		}
		out := map[string]int{}
		for _, b := range p.gw.Balancer().Backends() {
			if b.State == balancer.StateUp || b.State == balancer.StateSlowStart {
				out[b.Node]++
			}
		}
		return out, true
	}
	return scale.New(cfg)
}
