package gatewayd

import (
	"github.com/herd-cluster/herd/pkg/balancer"
	"github.com/herd-cluster/herd/pkg/scale"
)

// newScaler is the gateway's scale orchestration: it asks the cluster's
// agents, refuses (or queues) a scale of a service whose rollout runs in
// this gateway's rollouts, and reports what this gateway routes to.
func (p *process) newScaler() (*scale.Scaler, error) {
	cfg := scale.DefaultConfig()
	cfg.Members, cfg.Node, cfg.Logger = p.cluster, p.cluster.LocalNode().Name, p.logger
	cfg.Rollout = func(service string) string {
		r, ok := p.rollouts.Running(service)
		if !ok {
			return ""
		}
		return r.ID + " to " + r.Image
	}
	cfg.RolloutChanged = p.rollouts.Changed
	cfg.Routed = p.routed
	return scale.New(cfg)
}

// routed counts the backends of service this gateway has in rotation, by
// agent; false when it does not route the service (a gateway of another
// one).
func (p *process) routed(service string) (map[string]int, bool) {
	if only := p.cfg.Gateway.Service; only != "" && service != only {
		return nil, false
	}
	out := map[string]int{}
	for _, b := range p.gw.Balancer().Backends() {
		if b.Service == service && (b.State == balancer.StateUp || b.State == balancer.StateSlowStart) {
			out[b.Node]++
		}
	}
	return out, true
}
