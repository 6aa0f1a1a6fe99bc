package membership

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// QuerySync is the query an agent sends to every gateway after withdrawing
// backends. A gateway answers only once the backend set it routes to
// reflects that agent's tags at generation Gen or later (or holds nothing of
// the agent at all), so an acknowledged backend gets no new requests.
const QuerySync = "herd-sync"

// maxSyncPayload bounds a sync request; anything larger is rogue. A
// request carries the asking node's tags (at most MaxTagBytes encoded) and
// must fit one gossip packet with its query header.
const maxSyncPayload = 1024

// syncTagsBudget is the largest payload sent with the tags: beyond it (a
// long node name with large tags) the tags are left out, and a gateway that
// missed them waits for gossip as before.
const syncTagsBudget = 900

// syncRetryInterval is how long one round of a sync waits for answers
// before it asks the gateways that have not answered again.
const syncRetryInterval = time.Second

// SyncRequest is QuerySync's payload: the asking node, the generation of its
// tags to acknowledge, and those tags (gossip's encoding), so that a gateway
// that missed the change applies it from the request.
type SyncRequest struct {
	Node string            `json:"node"`
	Gen  uint64            `json:"gen"`
	Tags map[string]string `json:"tags,omitempty"`
}

// DecodeSyncRequest parses a sync payload strictly: size-limited, known
// fields only, node name required. The tags, if any, are the caller's to
// validate (DecodeTags).
func DecodeSyncRequest(b []byte) (SyncRequest, error) {
	var r SyncRequest
	if err := decodeStrict(b, maxSyncPayload, &r); err != nil {
		return r, fmt.Errorf("sync request: %w", err)
	}
	if r.Node == "" {
		return r, errors.New("sync request: no node")
	}
	return r, nil
}

// syncPayload is the sync request for this node's current tags.
func (c *Cluster) syncPayload() ([]byte, error) {
	tags := c.Tags()
	req := SyncRequest{Node: c.cfg.NodeName, Gen: tags.Gen}
	if m, err := tags.Encode(); err == nil {
		req.Tags = m
	}
	b, err := json.Marshal(req)
	if err != nil || len(b) <= syncTagsBudget {
		return b, err
	}
	req.Tags = nil
	return json.Marshal(req)
}

// SyncGateways asks every live gateway to acknowledge this node's current
// tags, and waits until each has, or until timeout. A gateway that has not
// answered within a round (syncRetryInterval) is asked again: a query or its
// answer may be lost, and a gateway that missed the tag change applies it
// from the request. A gateway that Serf reports failed or left, or that is
// gone, is no longer waited for, and is logged. The error names the live
// gateways that did not acknowledge (wrapping ErrIncomplete).
func (c *Cluster) SyncGateways(ctx context.Context, timeout time.Duration) error {
	payload, err := c.syncPayload()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	acked := map[string]bool{}
	for {
		var pending []string
		for _, n := range c.Members() {
			if n.Err != nil || n.Tags.Role != RoleGateway || acked[n.Name] {
				continue
			}
			if n.Status != StatusAlive {
				if !acked[n.Name] && n.Status != StatusLeft {
					c.logger.Warn("not waiting for a gateway's acknowledgement: it is "+string(n.Status), "gateway", n.Name)
				}
				acked[n.Name] = true // gone: nothing to wait for
				continue
			}
			pending = append(pending, n.Name)
		}
		if len(pending) == 0 {
			return nil
		}
		round, cancelRound := context.WithTimeout(ctx, syncRetryInterval)
		answers, _ := c.Query(round, QuerySync, payload, QueryParams{Role: RoleGateway, Nodes: pending, Timeout: syncRetryInterval})
		cancelRound()
		for name := range answers {
			acked[name] = true
		}
		if ctx.Err() != nil {
			var silent []string
			for _, name := range pending {
				if !acked[name] {
					silent = append(silent, name)
				}
			}
			if len(silent) == 0 {
				return nil
			}
			return &UnackedError{Gateways: silent, Timeout: timeout}
		}
	}
}

// UnackedError is SyncGateways' error when live gateways did not
// acknowledge in time. It wraps ErrIncomplete.
type UnackedError struct {
	Gateways []string
	Timeout  time.Duration
}

func (e *UnackedError) Error() string {
	return fmt.Sprintf("no acknowledgement within %s from gateway %s", e.Timeout, strings.Join(e.Gateways, ", "))
}

func (e *UnackedError) Unwrap() error { return ErrIncomplete }
