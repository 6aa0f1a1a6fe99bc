package admin

import (
	"github.com/herd-cluster/herd/pkg/agent"
	"github.com/herd-cluster/herd/pkg/api"
	"github.com/herd-cluster/herd/pkg/balancer"
	"github.com/herd-cluster/herd/pkg/canary"
	"github.com/herd-cluster/herd/pkg/certs"
	"github.com/herd-cluster/herd/pkg/gateway"
	"github.com/herd-cluster/herd/pkg/membership"
	"github.com/herd-cluster/herd/pkg/rollout"
)

// The conversions from the cluster's values to the API's wire types. The
// domain types may change shape (typed states, other duration types); the
// wire types may not, so every field is converted explicitly (string(...),
// time.Duration-kinded conversions) and the JSON of the result is what
// clients read, whatever the domain's own JSON looks like.

// memberOf converts a membership node.
func memberOf(n membership.Node) api.Member {
	m := api.Member{
		Name: n.Name, Addr: n.Addr.String(), Status: string(n.Status),
		Role: string(n.Tags.Role), Service: n.Tags.Service, Image: n.Tags.Image,
		State: string(n.Tags.State), Backends: len(n.Tags.Ports),
	}
	if n.Err != nil {
		m.Problem = n.Err.Error()
	}
	return m
}

// backendOf converts a balancer backend's status.
func backendOf(b balancer.BackendStatus) api.Backend {
	return api.Backend{
		Service: b.Service, Addr: b.Addr.String(), Node: b.Node, State: string(b.State),
		InFlight: b.InFlight, Requests: b.Requests, Failures: b.Failures,
	}
}

// replicaOf converts an agent's replica status.
func replicaOf(r agent.ReplicaStatus) api.Replica {
	return api.Replica{
		Index: r.Index, Addr: r.Addr, Image: r.Image, State: string(r.State),
		ID: r.ID, PID: r.PID, Restarts: r.Restarts,
	}
}

// keyResultOf converts a key operation's result and error.
func keyResultOf(r membership.KeyResult, err error) api.KeyResult {
	out := api.KeyResult{Members: r.Members, Responses: r.Responses, Errors: r.Errors, Keys: r.Keys, Primary: r.Primary}
	if err != nil {
		out.Error = err.Error()
	}
	return out
}

// rolloutOf converts a rollout.
func rolloutOf(r rollout.Rollout) api.Rollout {
	out := api.Rollout{
		ID: r.ID,
		RolloutOptions: api.RolloutOptions{
			Service: r.Service, Image: r.Image, Batch: r.Batch, MinHealthy: api.Duration(r.MinHealthy),
			Deadline: api.Duration(r.Deadline), NoAutoRevert: r.NoAutoRevert,
		},
		Previous: r.Previous, State: string(r.State), Message: r.Message, Reverted: r.Reverted,
		Created: r.Created, Finished: r.Finished,
		Hosts: convertAll(r.Hosts, hostOf),
	}
	if o := r.Options.Canary; o != nil {
		out.RolloutOptions.Canary = &api.CanaryOptions{
			Steps: o.Steps, StepTime: api.Duration(o.StepTime), StepDeadline: api.Duration(o.StepDeadline),
			Replicas: o.Replicas, Node: o.Node, Baseline: o.Baseline, MaxErrorRate: o.Criteria.MaxErrorRate,
			MaxP99Ratio: o.Criteria.MaxP99Ratio, MinRequests: o.Criteria.MinRequests, Alpha: o.Criteria.Alpha,
			P99Slack: api.Duration(o.Criteria.P99Slack),
		}
	}
	if c := r.Canary; c != nil {
		out.Canary = &api.CanaryStatus{
			Node: c.Node, Phase: string(c.Phase), Step: c.Step, Weight: c.Weight, Started: c.Started,
			StepStarted: c.StepStarted, Outcome: c.Outcome,
			Steps: convertAll(c.Steps, func(s rollout.CanaryStep) api.CanaryStep {
				return api.CanaryStep{Weight: s.Weight, Started: s.Started, Ended: s.Ended, Verdict: verdictOf(s.Verdict)}
			}),
		}
		if c.Live != nil {
			v := verdictOf(*c.Live)
			out.Canary.Live = &v
		}
	}
	return out
}

// verdictOf converts a canary step's verdict.
func verdictOf(v canary.Verdict) api.Verdict {
	arm := func(a canary.ArmFigures) api.ArmFigures {
		return api.ArmFigures{Requests: a.Requests, Errors: a.Errors, ErrorRate: a.ErrorRate, Latencies: a.Latencies,
			P50: api.Duration(a.P50), P99: api.Duration(a.P99)}
	}
	f := v.Figures
	return api.Verdict{Result: string(v.Result), Reason: v.Reason, Canary: arm(f.Canary), Baseline: arm(f.Baseline),
		P99Ratio: f.P99Ratio, ErrorP: f.ErrorP, LatencyP: f.LatencyP}
}

// hostOf converts one host's progress in a rollout.
func hostOf(h rollout.Host) api.RolloutHost {
	return api.RolloutHost{
		Node: h.Node, State: string(h.State), Batch: h.Batch,
		Started: h.Started, HealthySince: h.HealthySince, Finished: h.Finished, Error: h.Error,
	}
}

// optionsFrom converts a rollout request's options.
func optionsFrom(o api.RolloutOptions) rollout.Options {
	out := rollout.Options{Image: o.Image, Batch: o.Batch, NoAutoRevert: o.NoAutoRevert}
	setDuration(&out.MinHealthy, o.MinHealthy)
	setDuration(&out.Deadline, o.Deadline)
	if c := o.Canary; c != nil {
		out.Canary = &rollout.CanaryOptions{Steps: c.Steps, Replicas: c.Replicas, Node: c.Node, Baseline: c.Baseline,
			Criteria: canary.Criteria{MaxErrorRate: c.MaxErrorRate, MaxP99Ratio: c.MaxP99Ratio, MinRequests: c.MinRequests,
				Alpha: c.Alpha}}
		setDuration(&out.Canary.StepTime, c.StepTime)
		setDuration(&out.Canary.StepDeadline, c.StepDeadline)
		setDuration(&out.Canary.Criteria.P99Slack, c.P99Slack)
	}
	return out
}

// setDuration sets a duration field of any int64 duration type (the
// rollout package's own Duration, or time.Duration) from the wire's.
func setDuration[D ~int64](dst *D, d api.Duration) { *dst = D(d) }

// convertAll converts every element of in with f; nil stays nil (JSON
// null), as the domain value had it.
func convertAll[T, U any](in []T, f func(T) U) []U {
	if in == nil {
		return nil
	}
	out := make([]U, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return out
}

// routingOf converts a gateway's routing.
func routingOf(r gateway.RoutingStatus) api.Routing {
	out := api.Routing{Default: r.Fallback, AllServices: r.AllServices, Routes: []api.Route{}}
	for _, st := range r.Routes {
		out.Routes = append(out.Routes, api.Route{
			Host: st.Route.Host, Path: st.Route.Prefix, Service: st.Service, StripPrefix: st.StripPrefix,
			State: st.State, HeldBy: st.HeldBy, Backends: st.Backends,
		})
	}
	return out
}

// certOf converts a certificate of the gateway's TLS listener.
func certOf(in certs.Info) api.Cert {
	return api.Cert{
		Name: in.Name, DNSNames: in.DNSNames, Issuer: in.Issuer, NotBefore: in.NotBefore, NotAfter: in.NotAfter,
		DaysLeft: in.DaysLeft, File: in.File, LoadedAt: in.LoadedAt, Default: in.Default, ExpiresSoon: in.ExpiresSoon,
		Problem: in.Problem,
	}
}
