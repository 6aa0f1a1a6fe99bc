package membership

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/herd-cluster/herd/pkg/runtime"
)

// tagCanary carries an agent's canary: "weight|image|ports|baseline ports|count",
// for example "5|predictor:1.1.0|8012|8013|1".
const tagCanary = "cy"

// MaxCanaryReplicas bounds the replicas of each arm of a canary on one agent.
const MaxCanaryReplicas = 16

// Canary is what an agent hosting a canary announces: the replicas of the
// new version (the canary arm) and, when asked for, replicas of its current
// image started at the same moment (the baseline arm), and the share of the
// service's requests every gateway sends the canary arm.
//
// A gateway sends the canary arm Weight % of the service's requests and the
// baseline arm the same share while the stable replicas keep at least as
// much (min(Weight, (100-Weight)/2) %);
// the stable replicas get the rest. With no baseline replicas, the stable
// fleet is the comparison and gets 100-Weight %.
type Canary struct {
	// Weight is the canary arm's share of the service's requests, 0-99.
	// 0: the arms are up but get no requests (starting, or ending).
	Weight int
	// Image is the canary arm's image (the rollout's new version).
	Image string
	// Ports and Baseline are the healthy canary and baseline replicas'
	// ports on the agent's HostIP, ascending, disjoint from Tags.Ports.
	Ports    []uint16
	Baseline []uint16
	// Count is how many replicas each arm has when all is well: the canary
	// is ready when len(Ports) == Count (and len(Baseline) == Count when a
	// baseline was asked for).
	Count int
}

// Validate reports the first problem with c.
func (c *Canary) Validate() error {
	if c.Weight < 0 || c.Weight > 99 {
		return fmt.Errorf("canary weight %d out of range 0-99", c.Weight)
	}
	if _, err := runtime.ParseImage(c.Image); err != nil {
		return fmt.Errorf("canary image: %w", err)
	}
	if c.Count < 1 || c.Count > MaxCanaryReplicas {
		return fmt.Errorf("canary replica count %d out of range 1-%d", c.Count, MaxCanaryReplicas)
	}
	if len(c.Ports) > c.Count || len(c.Baseline) > c.Count {
		return fmt.Errorf("more canary ports than the %d replicas", c.Count)
	}
	for _, ports := range [][]uint16{c.Ports, c.Baseline} {
		for i, p := range ports {
			if p == 0 {
				return errors.New("canary port 0 announced")
			}
			if i > 0 && p <= ports[i-1] {
				return fmt.Errorf("canary ports not ascending at %d", p)
			}
		}
	}
	return nil
}

// overlaps reports whether a port is announced twice among stable, canary
// and baseline replicas.
func (c *Canary) overlaps(stable []uint16) bool {
	seen := make(map[uint16]bool, len(stable)+len(c.Ports)+len(c.Baseline))
	for _, ports := range [][]uint16{stable, c.Ports, c.Baseline} {
		for _, p := range ports {
			if seen[p] {
				return true
			}
			seen[p] = true
		}
	}
	return false
}

func (c *Canary) encode() string {
	return strings.Join([]string{strconv.Itoa(c.Weight), c.Image, EncodePorts(c.Ports), EncodePorts(c.Baseline),
		strconv.Itoa(c.Count)}, "|")
}

func decodeCanary(s string) (*Canary, error) {
	f := strings.Split(s, "|")
	if len(f) != 5 {
		return nil, errors.New("want weight|image|ports|baseline ports|count")
	}
	var c Canary
	var err error
	if c.Weight, err = strconv.Atoi(f[0]); err != nil || len(f[0]) > 2 {
		return nil, fmt.Errorf("canary weight %q: want 0-99", truncate(f[0], 10))
	}
	c.Image = f[1]
	if c.Ports, err = DecodePorts(f[2]); err != nil {
		return nil, fmt.Errorf("canary ports: %w", err)
	}
	if c.Baseline, err = DecodePorts(f[3]); err != nil {
		return nil, fmt.Errorf("baseline ports: %w", err)
	}
	if c.Count, err = strconv.Atoi(f[4]); err != nil || len(f[4]) > 2 {
		return nil, fmt.Errorf("canary count %q: want 1-%d", truncate(f[4], 10), MaxCanaryReplicas)
	}
	return &c, nil
}

// Ready reports whether every replica of each arm the canary runs is healthy
// and announced. baseline: a baseline arm was asked for.
func (c *Canary) Ready(baseline bool) bool {
	return c != nil && len(c.Ports) == c.Count && (!baseline || len(c.Baseline) == c.Count)
}

// CanaryRequest is the canary part of a deploy request: the agent starts
// (or keeps) Replicas replicas of the request's Image as the canary arm and,
// when Baseline, as many of its current image as the baseline arm, on the
// next free ports after its replicas, and announces them with Weight. A
// request with Replicas 0 ends the canary: its replicas are withdrawn in
// every gateway (acknowledged, as a rollout's are), then stopped. The
// agent's own replicas are not touched.
type CanaryRequest struct {
	Replicas int  `json:"replicas"`
	Weight   int  `json:"weight"`
	Baseline bool `json:"baseline,omitempty"`
}

// Validate reports the first problem with r.
func (r *CanaryRequest) Validate() error {
	switch {
	case r.Replicas < 0 || r.Replicas > MaxCanaryReplicas:
		return fmt.Errorf("canary replicas %d out of range 0-%d", r.Replicas, MaxCanaryReplicas)
	case r.Weight < 0 || r.Weight > 99:
		return fmt.Errorf("canary weight %d out of range 0-99", r.Weight)
	case r.Replicas == 0 && r.Weight != 0:
		return errors.New("canary weight without replicas")
	}
	return nil
}
