package rollout

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/membership"
)

// The decisions of a rollout, table-tested on step alone: no cluster, no
// clock, no files. Each case is a sequence of observations at times after t0
// and what step must decide after each.

var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

const (
	v10 = "predictor:1.0.0"
	v11 = "predictor:1.1.0"
)

// on is an alive agent that fully runs image.
func on(image string) membership.Node {
	return membership.Node{Status: membership.StatusAlive, Tags: membership.Tags{
		Role: membership.RoleAgent, Service: "predictor", Image: image, Want: image,
		State: membership.StateActive, Ports: []uint16{8000, 8001}, Count: 2,
	}}
}

// toward is an alive agent converging from one image to another: one of its
// two replicas withdrawn.
func toward(want, from string) membership.Node {
	n := on(from)
	n.Tags.Want, n.Tags.Ports = want, []uint16{8000}
	return n
}

// failing is an agent converging to want that gave up, saying why.
func failing(want, from, why string) membership.Node {
	n := toward(want, from)
	n.Tags.Fail = why
	return n
}

// status is n as the failure detector sees it now.
func status(n membership.Node, s membership.Status) membership.Node {
	n.Status = s
	return n
}

// members names the nodes: a, b, c… in order; a zero Node leaves that
// host out (membership does not know it).
func members(nodes ...membership.Node) map[string]membership.Node {
	out := map[string]membership.Node{}
	for i, n := range nodes {
		if n.Status == "" {
			continue
		}
		n.Name = string(rune('a' + i))
		out[n.Name] = n
	}
	return out
}

var gone membership.Node

func took(image string, nodes ...string) []deployAnswer {
	var out []deployAnswer
	for _, n := range nodes {
		out = append(out, deployAnswer{node: n, image: image})
	}
	return out
}

func refused(image, node, why string) []deployAnswer {
	return []deployAnswer{{node: node, image: image, err: errors.New(why)}}
}

// fresh is a rollout of hosts a, b, … from 1.0.0 to image, batch b, min
// healthy 1 s, deadline 10 s, as Start creates it.
func fresh(image string, hosts, batch int) Rollout {
	r := Rollout{
		ID: "r1", Options: Options{Image: image, Batch: batch, MinHealthy: Duration(time.Second),
			Deadline: Duration(10 * time.Second)},
		Previous: v10, State: StateRunning, Created: t0,
	}
	for i := range hosts {
		r.Hosts = append(r.Hosts, Host{Node: string(rune('a' + i)), State: HostPending, Batch: i/batch + 1})
	}
	return r
}

// tick is one observation and what step must decide on it. Empty
// expectations are not checked, except deploy (none expected when empty).
type tick struct {
	at      time.Duration
	members map[string]membership.Node
	answers []deployAnswer
	abort   bool

	hosts   string        // host states, in order: "verifying pending"
	deploy  string        // "IMAGE a,b": the request to send; "": none
	wake    time.Duration // after t0; 0: none
	state   State         // the rollout's state
	message string        // the rollout's message
	log     string        // a log line that must be among the step's
	noSave  bool          // the record must not have changed
}

func TestStep(t *testing.T) {
	noRevert := fresh(v11, 2, 1)
	noRevert.NoAutoRevert = true
	longer := fresh(v11, 1, 1)
	longer.MinHealthy = Duration(5 * time.Second)
	longer.Deadline = Duration(3 * time.Second)

	cases := []struct {
		name  string
		start Rollout
		rev   *revert
		ticks []tick
	}{
		{
			name: "healthy: batches one after another, each after min healthy", start: fresh(v11, 2, 1),
			ticks: []tick{
				{at: 0, members: members(on(v10), on(v10)), hosts: "replacing pending", deploy: v11 + " a", wake: 10 * time.Second},
				{at: 100 * time.Millisecond, members: members(toward(v11, v10), on(v10)), answers: took(v11, "a"),
					hosts: "replacing pending", wake: 10 * time.Second, noSave: true},
				{at: 2 * time.Second, members: members(on(v11), on(v10)), hosts: "verifying pending", wake: 3 * time.Second},
				{at: 3 * time.Second, members: members(on(v11), on(v10)), hosts: "healthy replacing", deploy: v11 + " b",
					wake: 13 * time.Second, log: "batch healthy"},
				{at: 4 * time.Second, members: members(on(v11), on(v11)), answers: took(v11, "b"), hosts: "healthy verifying",
					wake: 5 * time.Second},
				{at: 5 * time.Second, members: members(on(v11), on(v11)), hosts: "healthy healthy", state: StateSucceeded,
					message: "2 hosts on predictor:1.1.0", log: "rollout ended"},
			},
		},
		{
			name: "batches of two: the batch waits for its slowest host", start: fresh(v11, 3, 2),
			ticks: []tick{
				{at: 0, members: members(on(v10), on(v10), on(v10)), hosts: "replacing replacing pending",
					deploy: v11 + " a,b", wake: 10 * time.Second},
				{at: time.Second, members: members(on(v11), toward(v11, v10), on(v10)), answers: took(v11, "a", "b"),
					hosts: "verifying replacing pending", wake: 10 * time.Second},
				{at: 3 * time.Second, members: members(on(v11), on(v11), on(v10)), hosts: "verifying verifying pending",
					wake: 4 * time.Second},
				{at: 4 * time.Second, members: members(on(v11), on(v11), on(v10)), hosts: "healthy healthy replacing",
					deploy: v11 + " c", wake: 14 * time.Second},
			},
		},
		{
			name: "min healthy counts from the first healthy moment, and again after a relapse", start: fresh(v11, 1, 1),
			ticks: []tick{
				{at: 0, members: members(on(v10)), hosts: "replacing", deploy: v11 + " a", wake: 10 * time.Second},
				{at: 2 * time.Second, members: members(on(v11)), answers: took(v11, "a"), hosts: "verifying", wake: 3 * time.Second},
				{at: 2500 * time.Millisecond, members: members(toward(v11, v11)), hosts: "replacing", wake: 10 * time.Second},
				{at: 2600 * time.Millisecond, members: members(on(v11)), hosts: "verifying", wake: 3600 * time.Millisecond},
				{at: 3 * time.Second, members: members(on(v11)), hosts: "verifying", wake: 3600 * time.Millisecond, noSave: true},
				{at: 3600 * time.Millisecond, members: members(on(v11)), hosts: "healthy", state: StateSucceeded},
			},
		},
		{
			name: "failed health: deadline passed, the batch reverts, later ones untouched", start: fresh(v11, 2, 1),
			ticks: []tick{
				{at: 0, members: members(on(v10), on(v10)), hosts: "replacing pending", deploy: v11 + " a", wake: 10 * time.Second},
				{at: time.Second, members: members(toward(v11, v10), on(v10)), answers: took(v11, "a"), hosts: "replacing pending",
					wake: 10 * time.Second, noSave: true},
				{at: 10 * time.Second, members: members(toward(v11, v10), on(v10)), hosts: "reverting pending",
					deploy: v10 + " a", wake: 20 * time.Second, state: StateRunning, log: "reverting batch"},
				{at: 11 * time.Second, members: members(on(v10), on(v10)), answers: took(v10, "a"), hosts: "reverted pending",
					state: StateFailed, message: "a not healthy on predictor:1.1.0 within 10s; batch reverted to predictor:1.0.0"},
			},
		},
		{
			name: "deadline passed while healthy for less than min healthy", start: longer,
			ticks: []tick{
				{at: 0, members: members(on(v10)), hosts: "replacing", deploy: v11 + " a", wake: 3 * time.Second},
				{at: time.Second, members: members(on(v11)), answers: took(v11, "a"), hosts: "verifying", wake: 3 * time.Second},
				{at: 3 * time.Second, members: members(on(v11)), hosts: "reverting", deploy: v10 + " a", wake: 6 * time.Second},
				{at: 4 * time.Second, members: members(on(v10)), hosts: "reverted", state: StateFailed,
					message: "batch did not stay healthy on predictor:1.1.0 for 5s within 3s; batch reverted to predictor:1.0.0"},
			},
		},
		{
			name:  "an agent that gave up (a gateway did not acknowledge): the batch reverts at once, saying why",
			start: fresh(v11, 2, 1),
			ticks: []tick{
				{at: 0, members: members(on(v10), on(v10)), hosts: "replacing pending", deploy: v11 + " a", wake: 10 * time.Second},
				{at: 2 * time.Second, members: members(failing(v11, v10, "gateway g2 did not acknowledge"), on(v10)),
					answers: took(v11, "a"), hosts: "reverting pending", deploy: v10 + " a", wake: 12 * time.Second,
					log: "reverting batch"},
				{at: 3 * time.Second, members: members(on(v10), on(v10)), answers: took(v10, "a"), hosts: "reverted pending",
					state: StateFailed, message: "a gave up on predictor:1.1.0: gateway g2 did not acknowledge; batch reverted to predictor:1.0.0"},
			},
		},
		{
			name: "an agent that gave up on another image does not fail this one", start: fresh(v11, 1, 1),
			ticks: []tick{
				{at: 0, members: members(failing(v10, v10, "old news")), hosts: "replacing", deploy: v11 + " a", wake: 10 * time.Second},
			},
		},
		{
			name: "NoAutoRevert: a failed batch is left as it is", start: noRevert,
			ticks: []tick{
				{at: 0, members: members(on(v10), on(v10)), hosts: "replacing pending", deploy: v11 + " a", wake: 10 * time.Second},
				{at: 10 * time.Second, members: members(toward(v11, v10), on(v10)), hosts: "failed pending", state: StateFailed,
					message: "a not healthy on predictor:1.1.0 within 10s"},
			},
		},
		{
			name: "member failed mid-batch: not healthy, not asked, counted again when back", start: fresh(v11, 1, 1),
			ticks: []tick{
				{at: 0, members: members(on(v10)), hosts: "replacing", deploy: v11 + " a", wake: 10 * time.Second},
				{at: time.Second, members: members(on(v11)), answers: took(v11, "a"), hosts: "verifying", wake: 2 * time.Second},
				{at: 1500 * time.Millisecond, members: members(status(on(v11), membership.StatusFailed)), hosts: "replacing",
					wake: 10 * time.Second, log: "changed status"},
				{at: 3 * time.Second, members: members(on(v11)), hosts: "verifying", wake: 4 * time.Second, log: "changed status"},
				{at: 4 * time.Second, members: members(on(v11)), hosts: "healthy", state: StateSucceeded},
			},
		},
		{
			name: "member left mid-batch: it reverts, and the revert fails", start: fresh(v11, 1, 1),
			ticks: []tick{
				{at: 0, members: members(on(v10)), hosts: "replacing", deploy: v11 + " a", wake: 10 * time.Second},
				{at: time.Second, members: members(status(toward(v11, v10), membership.StatusLeft)), answers: took(v11, "a"),
					hosts: "replacing", wake: 10 * time.Second, noSave: true, log: "changed status"},
				{at: 10 * time.Second, members: members(gone), hosts: "reverting", wake: 20 * time.Second},
				{at: 20 * time.Second, members: members(gone), hosts: "failed", state: StateFailed,
					message: "a not healthy on predictor:1.1.0 within 10s; revert to predictor:1.0.0 also failed: " +
						"a not healthy on predictor:1.0.0 within 10s"},
			},
		},
		{
			name: "abort: the batch in progress goes back, later ones untouched", start: fresh(v11, 2, 1),
			ticks: []tick{
				{at: 0, members: members(on(v10), on(v10)), hosts: "replacing pending", deploy: v11 + " a", wake: 10 * time.Second},
				{at: time.Second, members: members(on(v11), on(v10)), answers: took(v11, "a"), hosts: "verifying pending", wake: 2 * time.Second},
				{at: 1500 * time.Millisecond, members: members(on(v11), on(v10)), abort: true, hosts: "reverting pending",
					deploy: v10 + " a", wake: 11500 * time.Millisecond},
				{at: 2 * time.Second, members: members(on(v10), on(v10)), abort: true, hosts: "reverted pending",
					state: StateAborted, message: "aborted by the operator; batch reverted to predictor:1.0.0"},
			},
		},
		{
			name: "abort as a batch completes: it ends there, nothing to revert", start: fresh(v11, 2, 1),
			ticks: []tick{
				{at: 0, members: members(on(v10), on(v10)), hosts: "replacing pending", deploy: v11 + " a", wake: 10 * time.Second},
				{at: time.Second, members: members(on(v11), on(v10)), answers: took(v11, "a"), hosts: "verifying pending", wake: 2 * time.Second},
				{at: 2 * time.Second, members: members(on(v11), on(v10)), abort: true, hosts: "healthy pending",
					state: StateAborted, message: "aborted by the operator"},
			},
		},
		{
			name: "abort with NoAutoRevert still reverts", start: noRevert,
			ticks: []tick{
				{at: 0, members: members(on(v10), on(v10)), hosts: "replacing pending", deploy: v11 + " a", wake: 10 * time.Second},
				{at: time.Second, members: members(toward(v11, v10), on(v10)), answers: took(v11, "a"), abort: true,
					hosts: "reverting pending", deploy: v10 + " a", wake: 11 * time.Second},
			},
		},
		{
			name: "abort during a revert: the revert runs to its end", start: fresh(v11, 1, 1),
			ticks: []tick{
				{at: 0, members: members(on(v10)), hosts: "replacing", deploy: v11 + " a", wake: 10 * time.Second},
				{at: time.Second, members: members(toward(v11, v10)), answers: took(v11, "a"), hosts: "replacing",
					wake: 10 * time.Second, noSave: true},
				{at: 10 * time.Second, members: members(toward(v11, v10)), hosts: "reverting", deploy: v10 + " a", wake: 20 * time.Second},
				{at: 11 * time.Second, members: members(toward(v10, v11)), answers: took(v10, "a"), abort: true,
					hosts: "reverting", wake: 20 * time.Second, state: StateRunning, noSave: true},
				{at: 12 * time.Second, members: members(on(v10)), abort: true, hosts: "reverted", state: StateFailed,
					message: "a not healthy on predictor:1.1.0 within 10s; batch reverted to predictor:1.0.0"},
			},
		},
		{
			name: "a deploy request not taken is sent again after DeployRetry", start: fresh(v11, 1, 1),
			ticks: []tick{
				{at: 0, members: members(on(v10)), hosts: "replacing", deploy: v11 + " a", wake: 10 * time.Second},
				{at: time.Second, members: members(on(v10)), answers: refused(v11, "a", "a did not answer within 5s, asked 2 times"),
					hosts: "replacing", wake: 1500 * time.Millisecond, noSave: true, log: "deploy request not taken"},
				{at: 1200 * time.Millisecond, members: members(on(v10)), hosts: "replacing", wake: 1500 * time.Millisecond, noSave: true},
				{at: 1500 * time.Millisecond, members: members(on(v10)), hosts: "replacing", deploy: v11 + " a", wake: 10 * time.Second,
					noSave: true},
				{at: 2 * time.Second, members: members(toward(v11, v10)), answers: took(v11, "a"), hosts: "replacing",
					wake: 10 * time.Second, noSave: true},
				{at: 3 * time.Second, members: members(on(v11)), hosts: "verifying", wake: 4 * time.Second},
			},
		},
		{
			name: "one request in flight per host: the revert waits for the answer before it", start: fresh(v11, 1, 1),
			ticks: []tick{
				{at: 0, members: members(on(v10)), hosts: "replacing", deploy: v11 + " a", wake: 10 * time.Second},
				{at: 10 * time.Second, members: members(toward(v11, v10)), hosts: "reverting", wake: 20 * time.Second},
				{at: 11 * time.Second, members: members(toward(v11, v10)),
					answers: refused(v11, "a", "a did not answer within 5s, asked 2 times"),
					hosts:   "reverting", deploy: v10 + " a", wake: 20 * time.Second, noSave: true},
				{at: 12 * time.Second, members: members(on(v10)), answers: took(v10, "a"), hosts: "reverted", state: StateFailed},
			},
		},
		{
			name: "no request to a host that is not alive; sent when it is back", start: fresh(v11, 1, 1),
			ticks: []tick{
				{at: 0, members: members(status(on(v10), membership.StatusFailed)), hosts: "replacing", wake: 10 * time.Second,
					log: "changed status"},
				{at: time.Second, members: members(gone), hosts: "replacing", wake: 10 * time.Second, noSave: true},
				{at: 2 * time.Second, members: members(on(v10)), hosts: "replacing", deploy: v11 + " a", wake: 10 * time.Second,
					noSave: true},
			},
		},
		{
			name: "a host with malformed tags is not healthy", start: fresh(v11, 1, 1),
			ticks: []tick{
				{at: 0, members: func() map[string]membership.Node {
					n := on(v11)
					n.Err = errors.New("malformed tags")
					return members(n)
				}(), hosts: "replacing", deploy: v11 + " a", wake: 10 * time.Second},
			},
		},
		{
			name: "restart mid-batch: healthy hosts stay done, the batch keeps its deadline and is asked again",
			start: func() Rollout {
				r := fresh(v11, 3, 1)
				r.Hosts[0].State, r.Hosts[0].Started, r.Hosts[0].HealthySince = HostHealthy, t0, t0.Add(time.Second)
				r.Hosts[0].Finished = t0.Add(2 * time.Second)
				r.Hosts[1].State, r.Hosts[1].Started, r.Hosts[1].HealthySince = HostVerifying, t0.Add(2*time.Second), t0.Add(4*time.Second)
				return r
			}(),
			ticks: []tick{
				{at: 4500 * time.Millisecond, members: members(on(v11), on(v11), on(v10)), hosts: "healthy verifying pending",
					deploy: v11 + " b", wake: 5 * time.Second, noSave: true},
				{at: 5 * time.Second, members: members(on(v11), on(v11), on(v10)), hosts: "healthy healthy replacing",
					deploy: v11 + " c", wake: 15 * time.Second},
			},
		},
		{
			name: "restart past the batch's deadline: it reverts at once",
			start: func() Rollout {
				r := fresh(v11, 2, 1)
				r.Hosts[0].State, r.Hosts[0].Started = HostReplacing, t0
				return r
			}(),
			ticks: []tick{
				{at: 30 * time.Second, members: members(toward(v11, v10), on(v10)), hosts: "reverting pending",
					deploy: v10 + " a", wake: 40 * time.Second},
			},
		},
		{
			name: "restart mid-revert: the revert resumes with its own deadline, then fails",
			start: func() Rollout {
				r := fresh(v11, 2, 1)
				r.Hosts[0].State, r.Hosts[0].Started = HostReverting, t0.Add(10*time.Second)
				return r
			}(),
			rev: &revert{Final: StateFailed, Reason: "a not healthy on predictor:1.1.0 within 10s"},
			ticks: []tick{
				{at: 15 * time.Second, members: members(toward(v10, v11), on(v10)), hosts: "reverting pending",
					deploy: v10 + " a", wake: 20 * time.Second, noSave: true},
				{at: 20 * time.Second, members: members(toward(v10, v11), on(v10)), hosts: "failed pending", state: StateFailed,
					message: "a not healthy on predictor:1.1.0 within 10s; revert to predictor:1.0.0 also failed: " +
						"a not healthy on predictor:1.0.0 within 10s"},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newProgress(tc.start, tc.rev, 500*time.Millisecond)
			for i, tk := range tc.ticks {
				what := fmt.Sprintf("tick %d at %s", i, tk.at)
				var d decision
				p, d = step(p, observation{now: t0.Add(tk.at), members: tk.members, answers: tk.answers, abort: tk.abort})
				var hosts []string
				for _, h := range p.Hosts {
					hosts = append(hosts, h.State.String())
				}
				assert.Equal(t, tk.hosts, strings.Join(hosts, " "), what)
				assert.Equal(t, tk.deploy, orderString(d.deploy), what)
				if tk.wake == 0 {
					assert.True(t, d.wake.IsZero(), "%s: wake %s", what, d.wake)
				} else {
					assert.Equal(t, t0.Add(tk.wake), d.wake, what)
				}
				if tk.state != "" {
					assert.Equal(t, tk.state, p.State, what)
				}
				if tk.message != "" {
					assert.Equal(t, tk.message, p.Message, what)
				}
				if tk.log != "" {
					assert.True(t, hasLog(d, tk.log), "%s: no log %q in %v", what, tk.log, d.logs)
				}
				if tk.noSave {
					assert.False(t, d.save, "%s: nothing saved changed", what)
				} else {
					assert.True(t, d.save, "%s: the record changed", what)
				}
				assert.Equal(t, p.Done(), d.done, what)
				if d.done {
					assert.Equal(t, t0.Add(tk.at), p.Finished, what)
					assert.Nil(t, p.revert, what)
					require.Equal(t, len(tc.ticks)-1, i, "%s: the rollout ended before the last tick", what)
				}
			}
		})
	}
}

func orderString(o deployOrder) string {
	if len(o.nodes) == 0 {
		return ""
	}
	return o.image + " " + strings.Join(o.nodes, ",")
}

func hasLog(d decision, msg string) bool {
	for _, l := range d.logs {
		if strings.Contains(l.msg, msg) {
			return true
		}
	}
	return false
}

// TestStepIsPure: step leaves the progress it is given as it was, so the
// loop (or a test) may keep it, and the same input gives the same output.
func TestStepIsPure(t *testing.T) {
	p := newProgress(fresh(v11, 2, 1), nil, time.Second)
	o := observation{now: t0, members: members(on(v10), on(v10))}
	p1, d1 := step(p, o)
	assert.Equal(t, HostPending, p.Hosts[0].State, "the input's hosts are untouched")
	assert.Empty(t, p.asks, "the input's requests are untouched")
	p2, d2 := step(p, o)
	assert.Equal(t, p1, p2)
	assert.Equal(t, d1, d2)

	// An observation that changes nothing saves nothing and asks nothing.
	p3, d3 := step(p1, observation{now: t0.Add(time.Millisecond), members: o.members})
	assert.False(t, d3.save)
	assert.Empty(t, d3.deploy.nodes, "a is asked once")
	assert.Empty(t, d3.logs)
	assert.Equal(t, p1.Rollout, p3.Rollout)

	// A done rollout stays done, whatever is observed.
	done := fresh(v11, 1, 1)
	done.State = StateSucceeded
	p4, d4 := step(newProgress(done, nil, time.Second), observation{now: t0, members: members(on(v10)), abort: true})
	assert.True(t, d4.done)
	assert.False(t, d4.save)
	assert.Empty(t, d4.deploy.nodes)
	assert.Equal(t, done, p4.Rollout)
}
