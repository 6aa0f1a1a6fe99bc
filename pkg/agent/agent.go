// Package agent runs on every host: it keeps the configured number of
// replicas running and healthy, announces the healthy ones in its gossip
// tags, and withdraws them from every gateway before stopping them.
package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/herd-cluster/herd/internal/h2health"
	"github.com/herd-cluster/herd/pkg/membership"
	"github.com/herd-cluster/herd/pkg/runtime"
)

// Runtime starts and stops replicas: the docker or the process driver.
type Runtime interface {
	// Resolve fails with runtime.ErrImageNotFound when img is absent.
	Resolve(ctx context.Context, img runtime.Image) error
	Start(ctx context.Context, spec runtime.Spec) (runtime.Replica, error)
	// Stop asks the replica to exit, kills it after grace, and forgets it.
	Stop(ctx context.Context, r runtime.Replica, grace time.Duration) error
	// List returns the replicas the driver knows of, running or not.
	List(ctx context.Context) ([]runtime.Replica, error)
}

// Agent supervises one host's replicas.
type Agent struct {
	cfg     Config
	rt      Runtime
	cluster *membership.Cluster
	logger  hclog.Logger
	health  *http.Client
	// announcer puts a.tags into effect in the background (announce.go).
	announcer *announcer

	// Owned by the Run goroutine.
	want      runtime.Image // what the replicas should run (a rollout changes it)
	count     int           // how many replicas should run (a scale changes it)
	scaleFail string        // why the last scale-down was given up, until the next request
	queries   chan *membership.Query
	slots     []*slot
	tags      membership.Tags
	announced bool
	failed    *deployFailure // the deploy to want given up on, until the next request
	canary    *canary        // the canary hosted beside the replicas, if any (canary.go)

	results  chan startResult
	checks   chan checkRound // the round of health checks in flight, when done
	checking bool            // a round is in flight
	starts   sync.WaitGroup
	startCtx context.Context
	stopAll  context.CancelFunc

	status       atomic.Pointer[[]ReplicaStatus]
	canaryStatus atomic.Pointer[[]ReplicaStatus]
}

// New validates cfg and starts gossip on mcfg's address (so a port in use or
// a bad key fails here, before any replica starts). The agent joins the
// cluster only once its replicas are healthy; mcfg.Tags is set by the agent.
func New(cfg Config, rt Runtime, mcfg *membership.Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.Default()
	}
	wanted, err := loadDesired(cfg.DataDir, cfg.Image, cfg.Replicas)
	if err != nil {
		return nil, err
	}
	want := wanted.image
	a := &Agent{
		want:    want,
		count:   min(wanted.replicas, cfg.maxCount()),
		queries: make(chan *membership.Query, 16),
		cfg:     cfg,
		rt:      rt,
		logger:  cfg.Logger.Named("agent"),
		health: &http.Client{
			Timeout:   cfg.HealthTimeout,
			Transport: &http.Transport{DisableKeepAlives: true},
		},
		// Room for every slot's one operation in flight, a canary's
		// included, and a canary's end: a result never waits for the loop
		// that takes them.
		results: make(chan startResult, cfg.maxCount()+2*membership.MaxCanaryReplicas+1),
		checks:  make(chan checkRound, 1),
		tags: membership.Tags{
			Role: membership.RoleAgent, Service: cfg.Service, Image: want.String(), Want: want.String(),
			HostIP: cfg.HostIP, State: membership.StateActive,
			Routes: cfg.Routes, StripPrefix: cfg.StripPrefix, Protocol: cfg.Protocol,
			// Wall-clock start keeps generations increasing across restarts.
			Gen: uint64(time.Now().UnixMilli()),
		},
	}
	a.tags.Count = a.count
	for i := range a.count {
		a.slots = append(a.slots, &slot{index: i, port: cfg.port(i), state: stateStarting})
	}
	a.startCtx, a.stopAll = context.WithCancel(context.Background())
	a.publishStatus()
	mc := *mcfg
	mc.NodeName = cfg.Node
	mc.Tags = a.tags
	mc.QueryCh = a.queries
	cluster, err := membership.New(&mc)
	if err != nil {
		return nil, err
	}
	a.cluster = cluster
	a.announcer = newAnnouncer(cluster, a.logger)
	return a, nil
}

// Cluster is the agent's membership, for the admin API.
func (a *Agent) Cluster() *membership.Cluster { return a.cluster }

// Close stops gossip at once, without leaving (Run leaves on its own way
// out). Safe to call more than once.
func (a *Agent) Close() error {
	a.announcer.close()
	return a.cluster.Shutdown()
}

// Run starts or adopts the replicas, waits until all are healthy, joins the
// cluster announcing them, and supervises them until ctx ends. Then it
// withdraws them from every gateway, leaves, and stops them. An error means
// the agent could not start; nothing it started is left running.
func (a *Agent) Run(ctx context.Context) error {
	defer a.announcer.close() // the tags set last are in effect when Run returns
	err := a.start(ctx)
	a.publishStatus()
	if err != nil {
		a.stopReplicas()
		return err
	}
	a.supervise(ctx)
	a.shutdown()
	return nil
}

func (a *Agent) start(ctx context.Context) error {
	if err := a.rt.Resolve(ctx, a.want); err != nil {
		return err
	}
	if a.want != a.cfg.Image {
		a.logger.Info("running the image a rollout set, not --image", "image", a.want, "flag", a.cfg.Image,
			"file", DesiredFile)
	}
	if a.count != a.cfg.Replicas {
		a.logger.Info("running the replica count a scale set, not --replicas", "replicas", a.count,
			"flag", a.cfg.Replicas, "max", a.cfg.maxCount(), "file", DesiredFile)
	}
	if err := a.adopt(ctx); err != nil {
		return err
	}
	for _, s := range a.slots {
		if s.replica == nil {
			if err := runtime.CheckPortFree(a.cfg.HostIP, s.port); err != nil {
				return fmt.Errorf("replica %d: %w", s.index, err)
			}
		}
	}
	began := time.Now()
	adopted := 0
	for _, s := range a.slots {
		if s.replica != nil {
			adopted++
			a.adoptWait(s)
		} else {
			a.launch(s, nil, false)
		}
	}
	var firstErr error
	for pending := len(a.slots); pending > 0; pending-- {
		res := <-a.results
		if res.adopted && res.err != nil {
			// Adopted but not healthy in time: replace it like any failed replica.
			a.logger.Warn("adopted replica unhealthy; replacing", "index", res.index, "error", res.err)
			adopted--
			a.launch(a.slots[res.index], res.replica, false)
			pending++
			continue
		}
		a.applyStart(res)
		if res.err != nil && firstErr == nil {
			firstErr = res.err
		}
	}
	if firstErr != nil {
		return firstErr
	}
	a.logger.Info("replicas healthy", "started", len(a.slots)-adopted, "adopted", adopted,
		"took", time.Since(began).Round(time.Millisecond))
	if err := a.announce(); err != nil {
		return err
	}
	// Join with the replicas in the tags: the gateways route to them from
	// the join on.
	if err := a.announcer.wait(ctx, a.tags.Gen); err != nil {
		return err
	}
	n, err := a.cluster.Join(a.cfg.Join)
	if err != nil {
		return err
	}
	a.logger.Info("joined cluster", "contacted", n, "backends", len(a.tags.Ports))
	return nil
}

// adopt keeps replicas a previous run left serving, and stops the others
// (stale, surplus, or of another image), a canary's among them: a canary
// is not persisted, and the coordinator that wants it asks again.
func (a *Agent) adopt(ctx context.Context) error {
	existing, err := a.rt.List(ctx)
	if err != nil {
		return err
	}
	for _, r := range existing {
		if r.Service != a.cfg.Service {
			continue
		}
		if r.Arm != runtime.ArmStable {
			a.logger.Info("stopping a canary replica left from an earlier run", "arm", r.Arm, "index", r.Index,
				"addr", r.Addr(), "image", r.Image, "running", r.Running)
			if err := a.rt.Stop(ctx, r, a.cfg.StopGrace); err != nil {
				return fmt.Errorf("remove old %s replica %d: %w", r.Arm, r.Index, err)
			}
			continue
		}
		if r.Running && r.Index < len(a.slots) && r.Port == a.cfg.port(r.Index) && r.Image == a.want &&
			r.HostIP == a.cfg.HostIP && a.slots[r.Index].replica == nil {
			a.slots[r.Index].replica = &r
			a.logger.Info("adopting running replica", "index", r.Index, "addr", r.Addr(), "id", r.ID)
			continue
		}
		a.logger.Info("removing replica left from an earlier run", "index", r.Index, "addr", r.Addr(), "running", r.Running)
		if err := a.rt.Stop(ctx, r, a.cfg.StopGrace); err != nil {
			return fmt.Errorf("remove old replica %d: %w", r.Index, err)
		}
	}
	return nil
}

// announce publishes the healthy replicas' ports, and the image the node
// fully runs, if they changed.
func (a *Agent) announce() error {
	// Replicas beyond the count are on their way out (a scale-down): never
	// announced, even while they still run.
	var ports []uint16
	full := true
	for _, s := range a.slots[:min(a.count, len(a.slots))] {
		if s.state == stateHealthy {
			ports = append(ports, s.port)
		}
		full = full && s.state == stateHealthy && s.replica != nil && s.replica.Image == a.want
	}
	image := a.tags.Image
	if full {
		image = a.want.String()
	}
	fail := a.scaleFail
	if a.failed != nil && a.failed.want == a.want {
		fail = a.failed.reason
	}
	count := a.announcedCount()
	cy := a.canaryTag()
	if a.announced && slices.Equal(ports, a.tags.Ports) && image == a.tags.Image && a.tags.Want == a.want.String() &&
		a.tags.Fail == fail && a.tags.Count == count && sameCanary(cy, a.tags.Canary) {
		return nil
	}
	next := a.tags
	next.Ports, next.Image, next.Want, next.Fail, next.Count = ports, image, a.want.String(), fail, count
	next.Canary = cy
	next.Gen++
	if err := a.setTags(next); err != nil {
		return err
	}
	a.announced = true
	return nil
}

// setTags announces t: it validates them and hands them to the announcer,
// which puts them into effect in the background. What must know them in
// effect waits for their generation (a.announcer.wait).
func (a *Agent) setTags(t membership.Tags) error {
	if _, err := t.Encode(); err != nil {
		return err
	}
	a.tags = t
	a.announcer.set(t)
	return nil
}

// shutdown withdraws every replica, waits for the gateways to acknowledge,
// leaves, then stops the replicas, which finish their in-flight requests.
// A canary's replicas are stopped even with KeepReplicas: the next agent
// would not adopt them.
func (a *Agent) shutdown() {
	began := time.Now()
	next := a.tags
	next.State, next.Gen = membership.StateDraining, next.Gen+1
	if next.Canary != nil {
		// Withdrawn in the same breath, whatever a gateway makes of a
		// draining node's canary.
		next.Canary = withdrawnCanary(next.Canary)
	}
	if err := a.setTags(next); err != nil {
		a.logger.Error("could not announce draining", "error", err)
	} else if err := a.syncGateways(context.Background(), next.Gen); err != nil {
		a.logger.Warn("not every gateway acknowledged the drain; stopping anyway", "error", err)
	}
	// No tag update may follow the leave: it would bring the member back
	// to life in the others' views.
	a.announcer.close()
	if err := a.cluster.Leave(); err != nil {
		a.logger.Error("leave", "error", err)
	}
	if a.cfg.KeepReplicas {
		a.cancelStarts()
		a.stopSlots(a.canary.slots())
		a.canary = nil
		a.publishStatus()
		a.logger.Info("left cluster; replicas keep running for the next agent to adopt",
			"drain", time.Since(began).Round(time.Millisecond))
		return
	}
	a.logger.Info("left cluster; stopping replicas", "drain", time.Since(began).Round(time.Millisecond))
	a.stopReplicas()
	a.logger.Info("agent stopped", "took", time.Since(began).Round(time.Millisecond))
}

// syncGateways waits until the tags of generation gen (those that withdraw
// replicas) are in effect, then for every live gateway's acknowledgement
// that it stopped routing to what they withdraw, all within SyncTimeout.
// A live gateway that stays silent makes it fail with a
// *membership.UnackedError.
func (a *Agent) syncGateways(ctx context.Context, gen uint64) error {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.SyncTimeout)
	defer cancel()
	if err := a.announcer.wait(ctx, gen); err != nil {
		return fmt.Errorf("withdrawal not announced: %w", err)
	}
	return a.cluster.SyncGateways(ctx, a.cfg.SyncTimeout)
}

// cancelStarts cancels starts in progress and records what they started.
func (a *Agent) cancelStarts() {
	a.stopAll()
	a.starts.Wait()
	for len(a.results) > 0 {
		a.applyStart(<-a.results)
	}
}

// stopReplicas cancels starts in progress and stops every replica, a
// canary's included.
func (a *Agent) stopReplicas() {
	a.cancelStarts()
	a.stopSlots(append(slices.Clip(a.slots), a.canary.slots()...))
	a.canary = nil
	a.publishStatus()
}

// stopSlots stops the replicas of slots, all at once. Starts must be
// cancelled first (cancelStarts).
func (a *Agent) stopSlots(slots []*slot) {
	var wg sync.WaitGroup
	for _, s := range slots {
		if s.replica == nil {
			continue
		}
		r, logger := *s.replica, a.slotLogger(s)
		wg.Go(func() {
			if err := a.rt.Stop(context.Background(), r, a.cfg.StopGrace); err != nil {
				logger.Error("stop replica", "index", r.Index, "error", err)
			}
		})
		s.replica, s.state = nil, stateStopped
	}
	wg.Wait()
}

// check runs one health check against r, in the replicas' protocol.
func (a *Agent) check(ctx context.Context, r runtime.Replica) error {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.HealthTimeout)
	defer cancel()
	switch a.cfg.Protocol {
	case membership.ProtoGRPC:
		return h2health.GRPC(ctx, r.Addr().String(), "")
	case membership.ProtoH2C:
		return h2health.HTTP(ctx, r.Addr().String(), a.cfg.HealthPath)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.Addr().String()+a.cfg.HealthPath, nil)
	if err != nil {
		return err
	}
	resp, err := a.health.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 399 {
		return fmt.Errorf("health check answered %s", resp.Status)
	}
	return nil
}

// waitHealthy polls r until it passes a check, or StartTimeout passes.
func (a *Agent) waitHealthy(ctx context.Context, r runtime.Replica) error {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.StartTimeout)
	defer cancel()
	poll := time.NewTicker(startPollInterval)
	defer poll.Stop()
	var last error
	for {
		err := a.check(ctx, r)
		if err == nil {
			return nil
		}
		// The check the deadline cut says less than the one before it. (Its
		// error may come before ctx.Err() is set: a dial times out on the
		// same deadline by itself.)
		if dl, _ := ctx.Deadline(); last == nil || time.Now().Before(dl) {
			last = err
		}
		select {
		case <-poll.C:
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("replica %d on port %d did not pass its health check within %s: %w",
					r.Index, r.Port, a.cfg.StartTimeout, last)
			}
			return ctx.Err()
		}
	}
}

// startPollInterval is how often a starting replica is checked: short, since
// time to first traffic is what users wait on.
const startPollInterval = 25 * time.Millisecond
