package admin

import (
	"errors"
	"net/http"

	"github.com/herd-cluster/herd/pkg/api"
	"github.com/herd-cluster/herd/pkg/membership"
)

// Keyring is the gossip key manager; *membership.Cluster has it.
type Keyring interface {
	InstallKey(key string) (membership.KeyResult, error)
	UseKey(key string) (membership.KeyResult, error)
	RemoveKey(key string) (membership.KeyResult, error)
	ListKeys() (membership.KeyResult, error)
}

// HandleKeys serves gossip key rotation:
//
//	GET  /v1/keys           the keys installed across the cluster
//	POST /v1/keys/install   {"key": "<base64>"} add a key everywhere
//	POST /v1/keys/use       make an installed key the one used to encrypt
//	POST /v1/keys/remove    remove a key not in use
//
// 200 when every member did it (api.KeyResult); 400 bad key or encryption
// off; 502 when a member failed (the api.KeyResult says which).
func (s *Server) HandleKeys(k Keyring) {
	op := func(fn func(string) (membership.KeyResult, error)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			var req api.KeyRequest
			if err := decodeBody(r, &req); err != nil {
				writeError(w, http.StatusBadRequest, err.Error())
				return
			}
			res, err := fn(req.Key)
			writeKeyResult(w, res, err)
		}
	}
	s.mux.HandleFunc("POST /v1/keys/"+api.KeyInstall, op(k.InstallKey))
	s.mux.HandleFunc("POST /v1/keys/"+api.KeyUse, op(k.UseKey))
	s.mux.HandleFunc("POST /v1/keys/"+api.KeyRemove, op(k.RemoveKey))
	s.mux.HandleFunc("GET /v1/keys", func(w http.ResponseWriter, r *http.Request) {
		res, err := k.ListKeys()
		writeKeyResult(w, res, err)
	})
}

func writeKeyResult(w http.ResponseWriter, res membership.KeyResult, err error) {
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, keyResultOf(res, nil))
	case res.Members == 0 || errors.Is(err, membership.ErrNoEncryption):
		writeError(w, http.StatusBadRequest, err.Error())
	default:
		writeJSON(w, http.StatusBadGateway, keyResultOf(res, err))
	}
}
