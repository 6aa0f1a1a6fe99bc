package scale

import (
	"fmt"
	"slices"
	"strings"
)

// room is what one agent said it can run.
type room struct {
	node string
	// max is the most replicas it can run; unknown (an agent that did not
	// answer) is membership.MaxPorts: it refuses itself what does not fit.
	max int
	// limit says what bounds max ("its maximum is 24", "port 8013 in use").
	limit string
}

// spread divides total among the agents as evenly as their room allows:
// each gets total/n, the first total%n in name order one more; an agent
// whose room is below its share gets its room, and what it cannot take is
// spread over the others the same way. A total beyond the agents' room
// together is an error naming each one's room. Name order keeps a step of
// one replica a change on one agent.
func spread(total int, agents []room) (map[string]int, error) {
	if len(agents) == 0 {
		return nil, fmt.Errorf("no agents")
	}
	agents = slices.Clone(agents)
	slices.SortFunc(agents, func(a, b room) int { return strings.Compare(a.node, b.node) })
	sum := 0
	for _, a := range agents {
		sum += a.max
	}
	if total > sum {
		return nil, &NoRoomError{Total: total, Room: sum, Agents: describeRoom(agents)}
	}
	out := make(map[string]int, len(agents))
	open := agents // those not yet given their room
	left := total
	for {
		share, extra := left/len(open), left%len(open)
		var capped []room
		for i, a := range open {
			want := share
			if i < extra {
				want++
			}
			if a.max < want {
				capped = append(capped, a)
			}
		}
		if len(capped) == 0 {
			for i, a := range open {
				out[a.node] = share
				if i < extra {
					out[a.node]++
				}
			}
			return out, nil
		}
		// Those below their share take all their room; the rest is spread
		// again over the others (never empty: total fits the room).
		for _, a := range capped {
			out[a.node] = a.max
			left -= a.max
		}
		open = slices.DeleteFunc(slices.Clone(open), func(a room) bool { return slices.Contains(capped, a) })
	}
}

// describeRoom is each agent's room, for a refusal: "host-1 24 (its maximum
// is 24), host-2 3 (port 8003 in use)".
func describeRoom(agents []room) string {
	var parts []string
	for _, a := range agents {
		p := fmt.Sprintf("%s %d", a.node, a.max)
		if a.limit != "" {
			p += " (" + a.limit + ")"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}
