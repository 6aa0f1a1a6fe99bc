package membership

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// QuerySync is the query an agent sends to every gateway after withdrawing
// backends. A gateway answers only once the backend set it routes to
// reflects that agent's tags at generation Gen or later (or holds nothing of
// the agent at all), so an acknowledged backend gets no new requests.
const QuerySync = "herd-sync"

// maxSyncPayload bounds a sync request; anything larger is rogue.
const maxSyncPayload = 512

// SyncRequest is QuerySync's payload.
type SyncRequest struct {
	Node string `json:"node"`
	Gen  uint64 `json:"gen"`
}

// DecodeSyncRequest parses a sync payload strictly: size-limited, known
// fields only, node name required.
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

// SyncGateways asks every alive gateway to acknowledge this node's current
// tags, and waits up to timeout. The error names gateways that did not
// answer (wrapping ErrIncomplete).
func (c *Cluster) SyncGateways(ctx context.Context, timeout time.Duration) error {
	payload, err := json.Marshal(SyncRequest{Node: c.cfg.NodeName, Gen: c.Tags().Gen})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err = c.Query(ctx, QuerySync, payload, QueryParams{Role: RoleGateway, Timeout: timeout})
	return err
}
