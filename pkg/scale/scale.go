// Package scale changes how many replicas a service runs, live: the
// gateway's side of `clusterctl scale`, and the one path any automatic
// decision (an autoscaler) takes too, so that every change is the same
// visible, logged command.
//
// A scale asks the service's agents first (a herd-scale query with Check)
// how many replicas each runs and has room for; a request that cannot be
// done (a count out of range, a total beyond the agents' room, an unknown
// service or node, a rollout of the service running) is refused before
// anything changes. Then it spreads the total as evenly as the agents'
// room allows and asks each agent for its count. Each agent answers at
// once and converges in the background (new replicas announced once
// healthy; removed ones withdrawn, acknowledged by every gateway, then
// stopped); the agents' tags show the progress, which Status reads. An
// agent that does not answer in time is named in the result, and the
// others' change stands.
//
// A scale during a rollout of the same service is refused, or, with
// AfterRollout, queued: it runs once the rollout has ended (the latest
// queued request of a service wins).
package scale

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/herd-cluster/herd/pkg/membership"
)

// Members is the cluster as the Scaler needs it; *membership.Cluster has it.
type Members interface {
	Members() []membership.Node
	Scale(ctx context.Context, nodes []string, req membership.ScaleRequest, timeout time.Duration) map[string]membership.ScaleAnswer
}

// Config configures a Scaler.
type Config struct {
	// Members is the cluster. Required.
	Members Members
	// Rollout describes the running rollout of service ("20261201-120000.000
	// to predictor:1.1.0"), or is empty when none runs. Required; the
	// gateway answers it from its rollouts (pkg/rollout's Set.Running).
	Rollout func(service string) string
	// RolloutChanged returns a channel closed once service's rollouts
	// change after the call (pkg/rollout's Set.Changed): a scale queued
	// behind its rollout waits on it. Required.
	RolloutChanged func(service string) <-chan struct{}
	// Routed returns how many backends of service this gateway routes to,
	// in rotation, by agent; ok is false when it does not route the service
	// at all. Nil: Status reports nothing routed.
	Routed func(service string) (byNode map[string]int, ok bool)
	// Node is this gateway's node name, named in the agents' logs.
	Node string
	// QueryTimeout bounds each scale query; an agent that does not answer
	// within it is asked once more. Default 5 s.
	QueryTimeout time.Duration
	// Logger receives what was asked and what the agents answered.
	// Default: none.
	Logger hclog.Logger
}

// DefaultConfig returns a Config with the defaults documented on each
// field; Members, Rollout and RolloutChanged are the caller's to set.
func DefaultConfig() Config {
	return Config{QueryTimeout: 5 * time.Second, Logger: hclog.NewNullLogger()}
}

// Errors a Scale returns; the message says more.
var (
	// ErrRefused: the request cannot be done as asked; nothing changed.
	ErrRefused = errors.New("scale refused")
	// ErrRolloutRunning: a rollout of the service runs; nothing changed.
	// Ask again with AfterRollout to queue the scale behind it.
	ErrRolloutRunning = errors.New("a rollout of the service is running")
	// ErrClosed: the Scaler is closed.
	ErrClosed = errors.New("scaler closed")
)

// NoRoomError is a total beyond what the agents can run together. It
// wraps ErrRefused.
type NoRoomError struct {
	Total, Room int
	// Agents is each agent's room: "host-1 24 (its maximum is 24), …".
	Agents string
}

func (e *NoRoomError) Error() string {
	return fmt.Sprintf("%d replicas do not fit: the agents have room for %d (%s)", e.Total, e.Room, e.Agents)
}

func (e *NoRoomError) Unwrap() error { return ErrRefused }

// Request is one scale.
type Request struct {
	// Service is the service to scale: its total is spread over its
	// agents. With Node it may be empty (the node's service).
	Service string
	// Node, if set, scales that one agent to Replicas instead.
	Node string
	// Replicas is the service's total, or with Node the agent's count.
	Replicas int
	// AllowZero allows Replicas 0, which stops the service (or the node's
	// replicas).
	AllowZero bool
	// AfterRollout queues the scale behind a running rollout of the
	// service instead of refusing it.
	AfterRollout bool
	// Reason says who asks and why ("clusterctl", "autoscaler: in-flight
	// 12.3 per replica over 60s"), in the gateway's and agents' logs.
	Reason string
}

// Result is what a scale did.
type Result struct {
	// Service is the service scaled; Node the agent when one was.
	Service, Node string
	// Replicas is the total asked (or the node's count).
	Replicas int
	// Queued: the scale waits for the service's rollout to end; Agents is
	// what it would ask now.
	Queued bool
	// Agents are the agents asked, in name order.
	Agents []AgentResult
}

// AgentResult is one agent's part of a scale.
type AgentResult struct {
	Node string
	// Previous is the agent's count before; Replicas the count asked.
	Previous, Replicas int
	// Err is the agent's refusal, or that it did not answer (wrapping
	// membership.ErrNoAnswer); nil when it took the count.
	Err error
}

// Failed returns the agents that did not take their count.
func (r Result) Failed() []AgentResult {
	var out []AgentResult
	for _, a := range r.Agents {
		if a.Err != nil {
			out = append(out, a)
		}
	}
	return out
}

// Scaler carries out scale requests, one at a time.
type Scaler struct {
	cfg    Config
	logger hclog.Logger

	mu sync.Mutex // one scale at a time: Serf queries go one after another

	qmu        sync.Mutex
	queued     map[string]*queued       // by service
	lastQueued map[string]QueuedOutcome // by service, until the next scale of it
	closed     bool
	wg         sync.WaitGroup
}

// New returns a Scaler, or an error for a Config without what it requires.
func New(cfg Config) (*Scaler, error) {
	def := DefaultConfig()
	if cfg.QueryTimeout <= 0 {
		cfg.QueryTimeout = def.QueryTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = def.Logger
	}
	if cfg.Members == nil || cfg.Rollout == nil || cfg.RolloutChanged == nil {
		return nil, errors.New("scaler: Members, Rollout and RolloutChanged are required")
	}
	return &Scaler{cfg: cfg, logger: cfg.Logger.Named("scale"), queued: map[string]*queued{},
		lastQueued: map[string]QueuedOutcome{}}, nil
}

// Close drops the queued scales and waits for their goroutines. Scale is
// refused afterwards. Safe to call more than once.
func (s *Scaler) Close() {
	s.qmu.Lock()
	s.closed = true
	for _, q := range s.queued {
		q.cancel()
	}
	s.qmu.Unlock()
	s.wg.Wait()
}

// Scale asks the agents for req's counts and returns what each answered,
// or refuses (ErrRefused, ErrRolloutRunning: nothing changed). An agent
// that refuses or does not answer is in the result's Failed; the others'
// change stands. With AfterRollout and a rollout running, the request is
// checked now and queued (Result.Queued).
func (s *Scaler) Scale(ctx context.Context, req Request) (Result, error) {
	if err := req.validate(); err != nil {
		return Result{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.qmu.Lock()
	closed := s.closed
	s.qmu.Unlock()
	if closed {
		return Result{}, ErrClosed
	}
	service, agents, err := s.target(req)
	if err != nil {
		return Result{}, err
	}
	req.Service = service
	rollout := s.cfg.Rollout(service)
	if rollout != "" && !req.AfterRollout {
		return Result{}, fmt.Errorf("%w: %s (rollout %s); scale it once that has ended, or queue it behind it",
			ErrRolloutRunning, service, rollout)
	}
	counts, previous, err := s.plan(ctx, req, agents)
	if err != nil {
		return Result{}, err
	}
	res := Result{Service: service, Node: req.Node, Replicas: req.Replicas}
	if rollout != "" {
		res.Queued = true
		res.Agents = agentResults(counts, previous, nil)
		s.enqueue(req, rollout)
		return res, nil
	}
	s.dropQueued(service) // a scale done now overrides one queued before it
	res.Agents = s.apply(ctx, req, counts, previous)
	s.log(req, res)
	return res, nil
}

func (r Request) validate() error {
	switch {
	case r.Service == "" && r.Node == "":
		return fmt.Errorf("%w: no service and no node", ErrRefused)
	case r.Replicas < 0:
		return fmt.Errorf("%w: replica count %d: must be 0 or more", ErrRefused, r.Replicas)
	case r.Replicas > membership.MaxPorts:
		return fmt.Errorf("%w: replica count %d: more than an agent may run (%d)", ErrRefused, r.Replicas, membership.MaxPorts)
	case r.Replicas == 0 && !r.AllowZero:
		what := "service " + r.Service
		if r.Node != "" {
			what = "every replica on " + r.Node
		}
		return fmt.Errorf("%w: 0 replicas would stop %s; zero must be allowed explicitly", ErrRefused, what)
	}
	return nil
}

// target resolves req to its service and the agents to ask: the service's
// alive agents, or the node named. Unknown ones are refused.
func (s *Scaler) target(req Request) (service string, agents []string, err error) {
	nodes := s.cfg.Members.Members()
	if req.Node != "" {
		i := slices.IndexFunc(nodes, func(n membership.Node) bool { return n.Name == req.Node })
		switch {
		case i < 0:
			return "", nil, fmt.Errorf("%w: no member named %q", ErrRefused, req.Node)
		case nodes[i].Err != nil || nodes[i].Tags.Role != membership.RoleAgent:
			return "", nil, fmt.Errorf("%w: %s is not an agent", ErrRefused, req.Node)
		case req.Service != "" && nodes[i].Tags.Service != req.Service:
			return "", nil, fmt.Errorf("%w: %s runs service %s, not %s", ErrRefused, req.Node, nodes[i].Tags.Service, req.Service)
		case nodes[i].Status != membership.StatusAlive:
			return "", nil, fmt.Errorf("%w: %s is %s", ErrRefused, req.Node, nodes[i].Status)
		}
		return nodes[i].Tags.Service, []string{req.Node}, nil
	}
	for _, n := range nodes {
		if n.Err == nil && n.Status == membership.StatusAlive && n.Tags.Role == membership.RoleAgent && n.Tags.Service == req.Service {
			agents = append(agents, n.Name)
		}
	}
	if len(agents) == 0 {
		return "", nil, fmt.Errorf("%w: no agents of service %q in the cluster", ErrRefused, req.Service)
	}
	sort.Strings(agents)
	return req.Service, agents, nil
}

// plan asks the agents for their counts and room and decides each one's
// new count: refused if one says it cannot be scaled now, or the total
// does not fit. An agent that does not answer is planned for as if it had
// all the room there is: it is asked again when the counts go out.
func (s *Scaler) plan(ctx context.Context, req Request, agents []string) (counts, previous map[string]int, err error) {
	answers := s.cfg.Members.Scale(ctx, agents, membership.ScaleRequest{Service: req.Service, Check: true}, s.cfg.QueryTimeout)
	var refusals, silent []string
	rooms := make([]room, 0, len(agents))
	previous = make(map[string]int, len(agents))
	for _, n := range agents {
		a := answers[n]
		switch {
		case errors.Is(a.Err, membership.ErrNoAnswer):
			silent = append(silent, n)
			rooms = append(rooms, room{node: n, max: membership.MaxPorts, limit: "did not answer"})
			previous[n] = s.countOf(n)
		case a.Err != nil:
			refusals = append(refusals, a.Err.Error())
		default:
			rooms = append(rooms, room{node: n, max: a.Response.Room, limit: a.Response.Limit})
			previous[n] = a.Response.Replicas
		}
	}
	switch {
	case len(refusals) > 0:
		return nil, nil, fmt.Errorf("%w: %s", ErrRefused, strings.Join(refusals, "; "))
	case len(silent) == len(agents):
		return nil, nil, fmt.Errorf("%w: no agent answered: %s", ErrRefused, strings.Join(silent, ", "))
	}
	if req.Node != "" {
		if r := rooms[0]; req.Replicas > r.max {
			return nil, nil, fmt.Errorf("%w: %s has room for %d replicas (%s), not %d", ErrRefused, r.node, r.max, r.limit, req.Replicas)
		}
		return map[string]int{req.Node: req.Replicas}, previous, nil
	}
	counts, err = spread(req.Replicas, rooms)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: service %s: %w", ErrRefused, req.Service, err)
	}
	return counts, previous, nil
}

// countOf is the count an agent announces, for one that did not answer.
func (s *Scaler) countOf(node string) int {
	for _, n := range s.cfg.Members.Members() {
		if n.Name == node && n.Err == nil {
			return n.Tags.Count
		}
	}
	return 0
}

// apply asks each agent for its count, those with the same count in one
// request, and returns what each answered.
func (s *Scaler) apply(ctx context.Context, req Request, counts, previous map[string]int) []AgentResult {
	byCount := map[int][]string{}
	for n, c := range counts {
		byCount[c] = append(byCount[c], n)
	}
	reason := req.Reason
	if reason == "" {
		reason = "scale"
	}
	if s.cfg.Node != "" {
		reason += " via " + s.cfg.Node
	}
	errs := map[string]error{}
	for _, c := range slices.Sorted(maps.Keys(byCount)) {
		nodes := byCount[c]
		sort.Strings(nodes)
		mreq := membership.ScaleRequest{Service: req.Service, Replicas: c, Reason: printable(reason, membership.MaxScaleReason)}
		for n, a := range s.cfg.Members.Scale(ctx, nodes, mreq, s.cfg.QueryTimeout) {
			errs[n] = a.Err
			if a.Err == nil {
				previous[n] = a.Response.Replicas
			}
		}
	}
	return agentResults(counts, previous, errs)
}

func agentResults(counts, previous map[string]int, errs map[string]error) []AgentResult {
	out := make([]AgentResult, 0, len(counts))
	for _, n := range slices.Sorted(maps.Keys(counts)) {
		out = append(out, AgentResult{Node: n, Previous: previous[n], Replicas: counts[n], Err: errs[n]})
	}
	return out
}

// describeFailed is the agents that did not take their count, in one line.
func describeFailed(failed []AgentResult) string {
	var parts []string
	for _, a := range failed {
		parts = append(parts, a.Err.Error())
	}
	return strings.Join(parts, "; ")
}

func (s *Scaler) log(req Request, res Result) {
	args := []any{"service", res.Service, "replicas", res.Replicas, "reason", req.Reason}
	if res.Node != "" {
		args = append(args, "node", res.Node)
	}
	var parts []string
	for _, a := range res.Agents {
		p := fmt.Sprintf("%s %d→%d", a.Node, a.Previous, a.Replicas)
		if a.Err != nil {
			p += " (" + a.Err.Error() + ")"
		}
		parts = append(parts, p)
	}
	args = append(args, "agents", strings.Join(parts, ", "))
	if len(res.Failed()) > 0 {
		s.logger.Warn("scale: not every agent took its count", args...)
		return
	}
	s.logger.Info("scale", args...)
}

// printable is s with what is not printable ASCII replaced, cut to max
// bytes: the agents refuse anything else.
func printable(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r > '~' {
			return '?'
		}
		return r
	}, s)
	return s[:min(len(s), max)]
}
