package gatewayd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herd-cluster/herd/pkg/autoscale"
	"github.com/herd-cluster/herd/pkg/membership"
	"github.com/herd-cluster/herd/pkg/scale"
)

// The autoscaler's queries between gateways, besides autoscale.QueryLoad.
const (
	// queryAutoscaleSet carries a service's settings entry to every
	// gateway ({"service", "entry"}); each keeps the newest and answers "ok".
	queryAutoscaleSet = "herd-autoscale"
	// queryAutoscaleGet asks a gateway for every entry it holds: a
	// gateway that starts learns the settings it missed.
	queryAutoscaleGet = "herd-autoscale-get"
	// queryAutoscaleEvent shares a decision of the deciding gateway
	// ({"service", "event"}), so every gateway shows the same history.
	queryAutoscaleEvent = "herd-autoscale-event"
)

// autoscaler is the gateway's part of autoscaling: a Meter of its own
// load, answers to the other gateways' queries, and the Controller that
// decides while this gateway is the deciding one: the alive gateway with
// the lowest node name, the same for every gateway; when it fails, the
// next one decides once gossip has marked it failed.
type autoscaler struct {
	p     *process
	meter *autoscale.Meter
	ctl   *autoscale.Controller
}

type entryMessage struct {
	Service string
	Entry   autoscale.Entry
}

type eventMessage struct {
	Service string
	Event   autoscale.Event
}

// autoscaleQueries answer the autoscaler's queries; they are ignored until
// the autoscaler runs (auto holds it then).
func autoscaleQueries(auto *atomic.Pointer[autoscaler]) map[string]func(context.Context, *membership.Query) {
	with := func(h func(*autoscaler, *membership.Query) ([]byte, error)) func(context.Context, *membership.Query) {
		return func(_ context.Context, q *membership.Query) {
			a := auto.Load()
			if a == nil {
				return
			}
			body, err := h(a, q)
			if err != nil {
				a.p.logger.Warn("autoscale query refused", "query", q.Name(), "from", q.From(), "error", err)
				body = []byte("error: " + err.Error())
			}
			if err := q.Respond(body); err != nil {
				a.p.logger.Debug("autoscale answer", "error", err)
			}
		}
	}
	return map[string]func(context.Context, *membership.Query){
		autoscale.QueryLoad: with(func(a *autoscaler, q *membership.Query) ([]byte, error) {
			svc, since, err := autoscale.DecodeLoadRequest(q.Payload())
			if err != nil {
				return nil, err
			}
			return autoscale.EncodeLoad(a.meter.Since(svc, since)), nil
		}),
		queryAutoscaleSet: with(func(a *autoscaler, q *membership.Query) ([]byte, error) {
			var m entryMessage
			if err := json.Unmarshal(q.Payload(), &m); err != nil {
				return nil, err
			}
			if err := validService(m.Service); err != nil {
				return nil, err
			}
			_, err := a.ctl.Apply(m.Service, m.Entry)
			return []byte("ok"), err
		}),
		queryAutoscaleGet: with(func(a *autoscaler, _ *membership.Query) ([]byte, error) {
			return json.Marshal(a.ctl.Entries())
		}),
		queryAutoscaleEvent: with(func(a *autoscaler, q *membership.Query) ([]byte, error) {
			var m eventMessage
			if err := json.Unmarshal(q.Payload(), &m); err != nil {
				return nil, err
			}
			if err := validService(m.Service); err != nil {
				return nil, err
			}
			a.ctl.Record(m.Service, m.Event)
			return []byte("ok"), nil
		}),
	}
}

func validService(s string) error {
	if s == "" || len(s) > 63 {
		return fmt.Errorf("service %q: want 1 to 63 characters", s)
	}
	return nil
}

// startAutoscaler starts metering and deciding, after learning the
// settings the other gateways hold.
func (p *process) startAutoscaler() error {
	a := &autoscaler{p: p, meter: autoscale.NewMeter(p.gw.Balancer().Load)}
	ctl, err := autoscale.NewController(autoscale.ControllerConfig{
		Dir: p.cfg.DataDir, Logger: p.logger.Named("autoscale"), OnEvent: a.share,
	}, a)
	if err != nil {
		return err
	}
	a.ctl = ctl
	if reg := p.cfg.Gateway.Registerer; reg != nil {
		if err := reg.Register(autoscaleCollector{a}); err != nil {
			return err
		}
	}
	p.auto.Store(a)
	a.learn()
	go a.meter.Run(p.runCtx)
	go ctl.Run(p.runCtx)
	return nil
}

// askOthers sends query name, with msg as JSON (nil: no payload), to every
// other alive gateway, within settleTimeout; see process.askOthers.
func (a *autoscaler) askOthers(ctx context.Context, name string, msg any) (others []string, answers map[string][]byte, err error) {
	var body []byte
	if msg != nil {
		if body, err = json.Marshal(msg); err != nil {
			return nil, nil, err
		}
	}
	return a.p.askOthers(ctx, name, body, settleTimeout)
}

// settleTimeout bounds the queries that share settings and decisions.
const settleTimeout = 3 * time.Second

// learn takes the newest settings the other gateways hold.
func (a *autoscaler) learn() {
	_, answers, err := a.askOthers(a.p.runCtx, queryAutoscaleGet, nil)
	if err != nil {
		a.p.logger.Warn("autoscale: not every gateway told its settings", "error", err)
	}
	for node, body := range answers {
		var entries map[string]autoscale.Entry
		if err := json.Unmarshal(body, &entries); err != nil {
			a.p.logger.Warn("autoscale: bad settings from a gateway", "node", node, "error", err)
			continue
		}
		for svc, e := range entries {
			if _, err := a.ctl.Apply(svc, e); err != nil {
				a.p.logger.Warn("autoscale: bad settings from a gateway", "node", node, "service", svc, "error", err)
			}
		}
	}
}

// Publish sends entry, already applied here, to every other gateway; it
// names the gateways that did not take it.
func (a *autoscaler) Publish(ctx context.Context, service string, e autoscale.Entry) (missing []string, err error) {
	others, answers, err := a.askOthers(ctx, queryAutoscaleSet, entryMessage{Service: service, Entry: e})
	for _, n := range others {
		if string(answers[n]) != "ok" {
			missing = append(missing, n)
		}
	}
	if err != nil && !errors.Is(err, membership.ErrIncomplete) {
		return missing, err
	}
	return missing, nil
}

// share tells the other gateways about one of this gateway's decisions.
func (a *autoscaler) share(service string, e autoscale.Event) {
	if _, _, err := a.askOthers(a.p.runCtx, queryAutoscaleEvent, eventMessage{Service: service, Event: e}); err != nil {
		a.p.logger.Debug("autoscale: an event not shared with every gateway", "error", err)
	}
}

// gateways are the alive gateways' names, sorted.
func (a *autoscaler) gateways() []string { return a.p.gateways() }

// askOthers sends query name with body to every other alive gateway,
// within timeout, and returns who was asked and what they answered; err
// wraps membership.ErrIncomplete when some did not.
func (p *process) askOthers(ctx context.Context, name string, body []byte, timeout time.Duration) (others []string, answers map[string][]byte, err error) {
	self := p.cluster.LocalNode().Name
	if others = slices.DeleteFunc(p.gateways(), func(n string) bool { return n == self }); len(others) == 0 {
		return nil, nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	answers, err = p.cluster.Query(ctx, name, body, membership.QueryParams{Nodes: others, Timeout: timeout})
	return others, answers, err
}

// gateways are the alive gateways' names, sorted.
func (p *process) gateways() []string {
	var out []string
	for _, n := range p.cluster.Members() {
		if n.Status == membership.StatusAlive && n.Err == nil && n.Tags.Role == membership.RoleGateway {
			out = append(out, n.Name)
		}
	}
	slices.Sort(out)
	return out
}

// Decider is the deciding gateway's name.
func (a *autoscaler) Decider() string {
	if gws := a.gateways(); len(gws) > 0 {
		return gws[0]
	}
	return a.p.cluster.LocalNode().Name
}

// Deciding, Replicas, RollingOut, Load and Scale are autoscale.Cluster.

func (a *autoscaler) Deciding() bool { return a.Decider() == a.p.cluster.LocalNode().Name }

func (a *autoscaler) Replicas(service string) (int, error) {
	st := a.p.scaler.Status(service)
	if len(st.Agents) == 0 {
		return 0, fmt.Errorf("no agents of service %q in the cluster", service)
	}
	return st.Replicas, nil
}

func (a *autoscaler) RollingOut(service string) bool {
	_, running := a.p.rollouts.Running(service)
	return running
}

// Load sums this gateway's buckets and every other gateway's.
func (a *autoscaler) Load(ctx context.Context, service string, since time.Time) ([]autoscale.Sample, error) {
	per := [][]autoscale.Sample{a.meter.Since(service, since)}
	others, answers, err := a.p.askOthers(ctx, autoscale.QueryLoad, autoscale.EncodeLoadRequest(service, since),
		800*time.Millisecond)
	if len(others) == 0 {
		return per[0], nil
	}
	for node, body := range answers {
		s, derr := autoscale.DecodeLoad(body)
		if derr != nil {
			a.p.logger.Warn("autoscale: bad load from a gateway", "node", node, "error", derr)
			continue
		}
		per = append(per, s)
	}
	return autoscale.Sum(per...), err
}

func (a *autoscaler) Scale(ctx context.Context, service string, n int, reason string) error {
	_, err := a.p.scaler.Scale(ctx, scale.Request{Service: service, Replicas: n, AllowZero: n == 0, Reason: reason})
	return err
}

// Autoscaler is the autoscaling the admin API serves.
type Autoscaler interface {
	// Set turns autoscaling of service on, or changes its settings, here
	// and at every other gateway; missing names those that did not take it.
	Set(ctx context.Context, service string, s autoscale.Settings) (missing []string, err error)
	// Off turns it off everywhere (autoscale.ErrUnknownService: it was not on).
	Off(ctx context.Context, service string) (missing []string, err error)
	// Status is every autoscaled service's, as this gateway sees it.
	Status() []autoscale.Status
	// Decider is the deciding gateway's name.
	Decider() string
}

func (a *autoscaler) Set(ctx context.Context, service string, s autoscale.Settings) ([]string, error) {
	if _, err := a.Replicas(service); err != nil {
		return nil, fmt.Errorf("%w: %v", autoscale.ErrNoSuchService, err)
	}
	e, err := a.ctl.Set(service, s)
	if err != nil {
		return nil, err
	}
	a.p.logger.Info("autoscale on", "service", service, "min", s.Min, "max", s.Max, "target_inflight", s.TargetInFlight)
	return a.Publish(ctx, service, e)
}

func (a *autoscaler) Off(ctx context.Context, service string) ([]string, error) {
	e, err := a.ctl.Off(service)
	if err != nil {
		return nil, err
	}
	a.p.logger.Info("autoscale off", "service", service)
	return a.Publish(ctx, service, e)
}

func (a *autoscaler) Status() []autoscale.Status { return a.ctl.Status() }

var (
	autoscaleDecidingDesc = prometheus.NewDesc("herd_gateway_autoscale_deciding",
		"1 when this gateway decides the autoscaling, else 0.", nil, nil)
	autoscaleReplicasDesc = prometheus.NewDesc("herd_gateway_autoscale_replicas",
		"The deciding gateway's view of an autoscaled service's count: current, and desired by the last decision.",
		[]string{"service", "kind"}, nil)
	autoscaleInflightDesc = prometheus.NewDesc("herd_gateway_autoscale_inflight",
		"The autoscaling signal at the deciding gateway: requests in flight (and queued), every gateway summed, averaged over the stable or panic window.",
		[]string{"service", "window"}, nil)
)

// autoscaleCollector exports the autoscaler's status.
type autoscaleCollector struct{ a *autoscaler }

func (c autoscaleCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- autoscaleDecidingDesc
	ch <- autoscaleReplicasDesc
	ch <- autoscaleInflightDesc
}

func (c autoscaleCollector) Collect(ch chan<- prometheus.Metric) {
	deciding := 0.0
	if c.a.Deciding() {
		deciding = 1
	}
	ch <- prometheus.MustNewConstMetric(autoscaleDecidingDesc, prometheus.GaugeValue, deciding)
	if deciding == 0 {
		return
	}
	for _, st := range c.a.Status() {
		ch <- prometheus.MustNewConstMetric(autoscaleReplicasDesc, prometheus.GaugeValue, float64(st.Current), st.Service, "current")
		ch <- prometheus.MustNewConstMetric(autoscaleReplicasDesc, prometheus.GaugeValue, float64(st.Desired), st.Service, "desired")
		ch <- prometheus.MustNewConstMetric(autoscaleInflightDesc, prometheus.GaugeValue, st.Stable, st.Service, "stable")
		ch <- prometheus.MustNewConstMetric(autoscaleInflightDesc, prometheus.GaugeValue, st.Panic, st.Service, "panic")
	}
}
