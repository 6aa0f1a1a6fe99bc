package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/herd-cluster/herd/pkg/membership"
)

// Keyring is the gossip key manager; *membership.Cluster has it.
type Keyring interface {
	InstallKey(key string) (membership.KeyResult, error)
	UseKey(key string) (membership.KeyResult, error)
	RemoveKey(key string) (membership.KeyResult, error)
	ListKeys() (membership.KeyResult, error)
}

// KeyRequest is the body of the key operations.
type KeyRequest struct {
	Key string `json:"key"`
}

// KeyResult is the cluster's answer to a key operation.
type KeyResult struct {
	Members   int               `json:"members"`
	Responses int               `json:"responses"`
	Errors    map[string]string `json:"errors,omitempty"`
	Keys      map[string]int    `json:"keys,omitempty"`
	Primary   map[string]int    `json:"primary,omitempty"`
	Error     string            `json:"error,omitempty"`
}

func keyResult(r membership.KeyResult, err error) KeyResult {
	out := KeyResult{Members: r.Members, Responses: r.Responses, Errors: r.Errors, Keys: r.Keys, Primary: r.Primary}
	if err != nil {
		out.Error = err.Error()
	}
	return out
}

// HandleKeys serves gossip key rotation:
//
//	GET  /v1/keys           the keys installed across the cluster
//	POST /v1/keys/install   {"key": "<base64>"} add a key everywhere
//	POST /v1/keys/use       make an installed key the one used to encrypt
//	POST /v1/keys/remove    remove a key not in use
//
// 200 when every member did it; 400 bad key or encryption off; 502 when a
// member failed (the answer says which).
func (s *Server) HandleKeys(k Keyring) {
	op := func(fn func(string) (membership.KeyResult, error)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			var req KeyRequest
			if err := DecodeBody(r, &req); err != nil {
				WriteError(w, http.StatusBadRequest, err.Error())
				return
			}
			res, err := fn(req.Key)
			writeKeyResult(w, res, err)
		}
	}
	s.mux.HandleFunc("POST /v1/keys/install", op(k.InstallKey))
	s.mux.HandleFunc("POST /v1/keys/use", op(k.UseKey))
	s.mux.HandleFunc("POST /v1/keys/remove", op(k.RemoveKey))
	s.mux.HandleFunc("GET /v1/keys", func(w http.ResponseWriter, r *http.Request) {
		res, err := k.ListKeys()
		writeKeyResult(w, res, err)
	})
}

func writeKeyResult(w http.ResponseWriter, res membership.KeyResult, err error) {
	switch {
	case err == nil:
		WriteJSON(w, http.StatusOK, keyResult(res, nil))
	case res.Members == 0 || errors.Is(err, membership.ErrNoEncryption):
		WriteError(w, http.StatusBadRequest, err.Error())
	default:
		WriteJSON(w, http.StatusBadGateway, keyResult(res, err))
	}
}

// Keys lists the gossip keys installed across the cluster.
func (c *Client) Keys(ctx context.Context) (KeyResult, error) {
	var out KeyResult
	return out, c.do(ctx, http.MethodGet, "/v1/keys", nil, &out)
}

// KeyOp runs "install", "use" or "remove" with key.
func (c *Client) KeyOp(ctx context.Context, op, key string) (KeyResult, error) {
	var out KeyResult
	return out, c.do(ctx, http.MethodPost, "/v1/keys/"+op, KeyRequest{Key: key}, &out)
}
