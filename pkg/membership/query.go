package membership

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/hashicorp/serf/serf"
)

// ErrIncomplete is returned by Query when some expected members did not
// answer before the deadline. The answers that did arrive are returned too.
var ErrIncomplete = errors.New("not every member answered")

// Query is a question from another member, delivered on Config.QueryCh.
type Query struct {
	q *serf.Query
}

// Name is the query's name.
func (q *Query) Name() string { return q.q.Name }

// Payload is the query's body, as the asker sent it. Treat it as untrusted.
func (q *Query) Payload() []byte { return q.q.Payload }

// From is the asking node's name.
func (q *Query) From() string { return q.q.SourceNode() }

// Deadline is when the asker stops listening.
func (q *Query) Deadline() time.Time { return q.q.Deadline() }

// Respond answers the query. Only the first answer counts.
func (q *Query) Respond(body []byte) error {
	if err := q.q.Respond(body); err != nil {
		return fmt.Errorf("answer query %s from %s: %w", q.q.Name, q.q.SourceNode(), err)
	}
	return nil
}

// QueryParams restricts who answers a query.
type QueryParams struct {
	// Role, if set, addresses only members announcing that role.
	Role Role
	// Nodes, if set, addresses only these members.
	Nodes []string
	// Timeout bounds the wait; zero uses Serf's default for the cluster size.
	Timeout time.Duration
}

// Query asks the addressed alive members and waits until each has answered,
// the timeout passes, or ctx ends. It returns the answers by node name; when
// some expected member did not answer, the error wraps ErrIncomplete and
// names them.
func (c *Cluster) Query(ctx context.Context, name string, payload []byte, p QueryParams) (map[string][]byte, error) {
	expected := c.expectedResponders(p)
	if len(expected) == 0 {
		return map[string][]byte{}, nil
	}
	// Each answer also travels through 2 other members, so one lost datagram
	// does not lose it.
	sp := &serf.QueryParam{FilterNodes: p.Nodes, Timeout: p.Timeout, RelayFactor: 2}
	if p.Role != "" {
		sp.FilterTags = map[string]string{tagRole: "^" + string(p.Role) + "$"}
	}
	resp, err := c.serf.Query(name, payload, sp)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", name, err)
	}
	defer resp.Close()
	answers := make(map[string][]byte)
	for len(answers) < len(expected) {
		select {
		case r, ok := <-resp.ResponseCh():
			if !ok {
				return answers, missing(answers, expected)
			}
			answers[r.From] = r.Payload
		case <-ctx.Done():
			return answers, fmt.Errorf("query %s: %w", name, ctx.Err())
		}
	}
	return answers, nil
}

func (c *Cluster) expectedResponders(p QueryParams) map[string]bool {
	want := make(map[string]bool)
	for _, n := range c.Members() {
		if n.Status != StatusAlive {
			continue
		}
		if p.Role != "" && (n.Err != nil || n.Tags.Role != p.Role) {
			continue
		}
		if len(p.Nodes) > 0 && !slices.Contains(p.Nodes, n.Name) {
			continue
		}
		want[n.Name] = true
	}
	return want
}

func missing(got map[string][]byte, want map[string]bool) error {
	var names []string
	for _, n := range slices.Sorted(maps.Keys(want)) {
		if _, ok := got[n]; !ok {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return nil
	}
	return fmt.Errorf("%w: no answer from %v", ErrIncomplete, names)
}

// agentFilterBudget bounds the node names one query to agents is addressed
// to, in bytes: Serf refuses a query larger than 1 KiB, filters and payload
// included. askAgents splits a longer list into several queries.
const agentFilterBudget = 480

// askAgents asks the agents nodes, in queries whose node filters fit
// agentFilterBudget (queryChunks), and asks those that did not answer within
// timeout again, up to attempts queries each in all: a query or its answer
// may be lost, or an agent busy for a moment. It returns the answers by
// node; the requests must be safe to receive twice.
func (c *Cluster) askAgents(ctx context.Context, name string, payload []byte, nodes []string, timeout time.Duration,
	attempts int) map[string][]byte {
	answers := make(map[string][]byte, len(nodes))
	pending := nodes
	for range attempts {
		maps.Copy(answers, c.queryChunks(ctx, name, payload, pending, timeout))
		pending = slices.DeleteFunc(slices.Clone(pending), func(n string) bool { _, ok := answers[n]; return ok })
		if len(pending) == 0 || ctx.Err() != nil {
			break
		}
	}
	return answers
}

// queryChunks asks nodes, split into queries whose node filters fit
// agentFilterBudget, one after the other (Serf numbers a member's queries by
// a clock that two at once may read alike, and then one loses its answers),
// and merges their answers.
func (c *Cluster) queryChunks(ctx context.Context, name string, payload []byte, nodes []string, timeout time.Duration) map[string][]byte {
	out := make(map[string][]byte, len(nodes))
	for _, chunk := range chunkNames(nodes, agentFilterBudget) {
		qctx, cancel := context.WithTimeout(ctx, timeout)
		got, _ := c.Query(qctx, name, payload, QueryParams{Role: RoleAgent, Nodes: chunk, Timeout: timeout})
		cancel()
		maps.Copy(out, got)
	}
	return out
}

// chunkNames splits names into runs whose lengths (with 3 bytes of encoding
// each) add up to at most budget; a name longer than that is a run alone.
func chunkNames(names []string, budget int) [][]string {
	var out [][]string
	var cur []string
	size := 0
	for _, n := range names {
		if len(cur) > 0 && size+len(n)+3 > budget {
			out = append(out, cur)
			cur, size = nil, 0
		}
		cur = append(cur, n)
		size += len(n) + 3
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}
