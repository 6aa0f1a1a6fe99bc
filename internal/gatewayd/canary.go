package gatewayd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/herd-cluster/herd/pkg/canary"
	"github.com/herd-cluster/herd/pkg/membership"
	"github.com/herd-cluster/herd/pkg/rollout"
)

// queryCanaryCounts asks a gateway for its cumulative counts of one arm of
// a service ("SERVICE ARM", ARM one of stable, canary, baseline). The
// rollout coordinator judging a canary sums every gateway's: a service
// behind two gateways is judged on all of its requests. One arm per query
// keeps an answer within a gossip datagram (a step's counts take a few
// hundred bytes; cumulative ones up to about 600).
const queryCanaryCounts = "herd-canary-counts"

// measureTimeout bounds the queries: a gateway that does not answer within
// it is left out of that judgement (and counted from its next answer on).
const measureTimeout = 500 * time.Millisecond

// maxCountsAnswer keeps an answer within one gossip datagram.
const maxCountsAnswer = 1000

var armNames = [3]string{"stable", "canary", "baseline"}

// armCounts are the balancer's counts of service's arms.
func (p *process) armCounts(service string) [3]canary.Counts {
	return p.gw.Balancer().ArmCounts(service) // zero counts for a service it does not know
}

// measure is the rollout coordinators' rollout.Measure: this gateway's
// counts and those of the other gateways that answer in time, one query per
// arm, the three at once.
func (p *process) measure(service string) map[string]rollout.GatewayCounts {
	per := map[string]*[3]canary.Counts{}
	own := p.armCounts(service)
	per[p.cluster.LocalNode().Name] = &own
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, arm := range armNames {
		wg.Go(func() {
			_, answers, err := p.askOthers(p.runCtx, queryCanaryCounts, []byte(service+" "+arm), measureTimeout)
			if err != nil && !errors.Is(err, membership.ErrIncomplete) {
				p.logger.Debug("canary: counts not read from every gateway", "arm", arm, "error", err)
			}
			mu.Lock()
			defer mu.Unlock()
			for node, b := range answers {
				var c canary.Counts
				if err := decodeCounts(b, &c); err != nil {
					p.logger.Warn("canary: bad counts from a gateway", "node", node, "arm", arm, "error", err)
					continue
				}
				if per[node] == nil {
					per[node] = &[3]canary.Counts{}
				}
				per[node][i] = c
			}
		})
	}
	wg.Wait()
	out := make(map[string]rollout.GatewayCounts, len(per))
	for node, a := range per {
		out[node] = rollout.GatewayCounts{Stable: a[0], Canary: a[1], Baseline: a[2]}
	}
	return out
}

// answerCanaryCounts answers queryCanaryCounts.
func (p *process) answerCanaryCounts(_ context.Context, q *membership.Query) {
	body, err := p.countsAnswer(string(q.Payload()))
	if err != nil {
		body = []byte("error: " + err.Error())
	}
	if err := q.Respond(body); err != nil {
		p.logger.Debug("canary counts answer", "error", err)
	}
}

func (p *process) countsAnswer(payload string) ([]byte, error) {
	svc, arm, _ := strings.Cut(payload, " ")
	i := slices.Index(armNames[:], arm)
	if validService(svc) != nil || i < 0 {
		return nil, fmt.Errorf("want SERVICE ARM (stable, canary or baseline), not %.40q", payload)
	}
	b, err := p.armCounts(svc)[i].MarshalBinary()
	if err == nil && len(b) > maxCountsAnswer {
		err = fmt.Errorf("the %s arm's counts take %d bytes, more than an answer carries", arm, len(b))
	}
	return b, err
}

func decodeCounts(b []byte, c *canary.Counts) error {
	if s := string(b); strings.HasPrefix(s, "error: ") {
		return errors.New(strings.TrimPrefix(s, "error: "))
	}
	return c.UnmarshalBinary(b)
}
