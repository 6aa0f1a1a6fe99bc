package membership

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sort"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"

	"github.com/herd-cluster/herd/internal/atomicfile"
)

type keyResponse = serf.KeyResponse

// Gossip key rotation through Serf's key manager: install a new key on
// every member, make it the one used to encrypt, then remove the old one.
// Each call asks every member and reports who answered and who failed.

// KeyResult is the cluster's answer to a key operation.
type KeyResult struct {
	// Members is how many members were asked; Responses how many answered.
	Members, Responses int
	// Errors maps a member to why it failed the operation.
	Errors map[string]string
	// Keys, for ListKeys: each installed key and on how many members.
	Keys map[string]int
	// Primary, for ListKeys: the key each member encrypts with, by key.
	Primary map[string]int
}

// ErrNoEncryption: the cluster was started without a gossip key.
var ErrNoEncryption = errors.New("gossip encryption is off: the members were started without a key")

func (c *Cluster) keyOp(op func() (*keyResponse, error)) (KeyResult, error) {
	if c.cfg.EncryptKey == nil {
		return KeyResult{}, ErrNoEncryption
	}
	r, err := op()
	out := KeyResult{Errors: map[string]string{}}
	if r != nil {
		out.Members, out.Responses = r.NumNodes, r.NumResp
		for n, m := range r.Messages {
			out.Errors[n] = m
		}
		out.Keys, out.Primary = r.Keys, r.PrimaryKeys
	}
	if err != nil && len(out.Errors) == 0 {
		return out, err
	}
	if len(out.Errors) > 0 {
		names := make([]string, 0, len(out.Errors))
		for n := range out.Errors {
			names = append(names, n)
		}
		sort.Strings(names)
		return out, fmt.Errorf("%d of %d members failed (%s: %s)", len(out.Errors), out.Members, names[0], out.Errors[names[0]])
	}
	return out, nil
}

// InstallKey adds key (base64) to every member's keyring.
func (c *Cluster) InstallKey(key string) (KeyResult, error) {
	if _, err := ParseKey(key); err != nil {
		return KeyResult{}, err
	}
	return c.keyOp(func() (*keyResponse, error) { return c.serf.KeyManager().InstallKey(key) })
}

// UseKey makes an installed key the one every member encrypts with.
func (c *Cluster) UseKey(key string) (KeyResult, error) {
	if _, err := ParseKey(key); err != nil {
		return KeyResult{}, err
	}
	return c.keyOp(func() (*keyResponse, error) { return c.serf.KeyManager().UseKey(key) })
}

// RemoveKey removes a key that is not in use from every member.
func (c *Cluster) RemoveKey(key string) (KeyResult, error) {
	if _, err := ParseKey(key); err != nil {
		return KeyResult{}, err
	}
	return c.keyOp(func() (*keyResponse, error) { return c.serf.KeyManager().RemoveKey(key) })
}

// ListKeys reports the keys installed across the cluster.
func (c *Cluster) ListKeys() (KeyResult, error) {
	return c.keyOp(func() (*keyResponse, error) { return c.serf.KeyManager().ListKeys() })
}

// loadKeyring builds the keyring: the keys saved at path by earlier
// rotations (primary first), or else the configured key alone. A corrupt
// file is an error naming it.
func loadKeyring(path string, key []byte) (*memberlist.Keyring, error) {
	if path != "" {
		b, err := os.ReadFile(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("keyring %s: %w", path, err)
		default:
			var encoded []string
			if err := json.Unmarshal(b, &encoded); err != nil || len(encoded) == 0 {
				return nil, fmt.Errorf("keyring %s is corrupt (want a JSON list of base64 keys): %v", path, err)
			}
			keys := make([][]byte, len(encoded))
			for i, e := range encoded {
				k, err := base64.StdEncoding.DecodeString(e)
				if err != nil {
					return nil, fmt.Errorf("keyring %s is corrupt: key %d: %v", path, i, err)
				}
				keys[i] = k
			}
			return memberlist.NewKeyring(keys, keys[0])
		}
	}
	return memberlist.NewKeyring(nil, key)
}

// saveKeyring writes the keyring to KeyringPath whenever it changes (a key
// operation from any member changes it), atomically, until shutdown.
func (c *Cluster) saveKeyring() {
	defer close(c.saverDone)
	var saved []string
	if b, err := os.ReadFile(c.cfg.KeyringPath); err == nil {
		_ = json.Unmarshal(b, &saved)
	}
	save := func() {
		keys := c.keyring.GetKeys() // primary first
		encoded := make([]string, len(keys))
		for i, k := range keys {
			encoded[i] = base64.StdEncoding.EncodeToString(k)
		}
		if slices.Equal(encoded, saved) {
			return
		}
		b, _ := json.MarshalIndent(encoded, "", "  ")
		if err := atomicfile.Write(c.cfg.KeyringPath, b, 0o600); err != nil {
			c.logger.Error("could not save the gossip keyring", "path", c.cfg.KeyringPath, "error", err)
			return
		}
		saved = encoded
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	shutdown := c.serf.ShutdownCh()
	for {
		save()
		select {
		case <-shutdown:
			save()
			return
		case <-tick.C:
		}
	}
}
