package api

import (
	"context"
	"net/http"
)

// KeyRequest is the body of the key operations (POST /v1/keys/install,
// /v1/keys/use, /v1/keys/remove).
type KeyRequest struct {
	// Key is a gossip encryption key: 32 bytes, base64 (standard encoding).
	Key string `json:"key"`
}

// KeyResult is the cluster's answer to a key operation.
type KeyResult struct {
	// Members is how many members were asked.
	Members int `json:"members"`
	// Responses is how many answered.
	Responses int `json:"responses"`
	// Errors maps a member's name to why it failed the operation.
	Errors map[string]string `json:"errors,omitempty"`
	// Keys, for GET /v1/keys: each installed key and on how many members.
	Keys map[string]int `json:"keys,omitempty"`
	// Primary, for GET /v1/keys: each key in use to encrypt and on how many
	// members.
	Primary map[string]int `json:"primary,omitempty"`
	// Error says why the operation failed, when some member failed it (the
	// server answers 502 with this body).
	Error string `json:"error,omitempty"`
}

// Key operations for KeyOp.
const (
	KeyInstall = "install" // add a key to every member's keyring
	KeyUse     = "use"     // make an installed key the one every member encrypts with
	KeyRemove  = "remove"  // remove a key no member uses any more
)

// Keys lists the gossip keys installed across the cluster (GET /v1/keys).
func (c *Client) Keys(ctx context.Context) (KeyResult, error) {
	var out KeyResult
	return out, c.do(ctx, http.MethodGet, "/v1/keys", nil, &out)
}

// KeyOp runs op (KeyInstall, KeyUse or KeyRemove) with key across the
// cluster. When some member failed it, the error is a StatusError with
// status 502 whose message names the member; a key the server refuses (not
// base64, encryption off) is a StatusError with status 400.
func (c *Client) KeyOp(ctx context.Context, op, key string) (KeyResult, error) {
	var out KeyResult
	return out, c.do(ctx, http.MethodPost, "/v1/keys/"+op, KeyRequest{Key: key}, &out)
}
