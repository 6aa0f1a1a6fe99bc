package membership

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	oldKey = "T9jncgl9mbLus+baTTa7q7nPSUrXwbDi2dhbtqir37s="
	newKey = "5K9OtfP7efFrNKe5WCQvXvnaXJ5cWP0SvXiwe0kkjM4="
)

// startKeyed starts a gateway member with gossip key key ("" for none)
// keeping its keyring at keyring ("" for none).
func startKeyed(t *testing.T, name, key, keyring string) *Cluster {
	t.Helper()
	cfg := DefaultConfig()
	if key != "" {
		k, err := ParseKey(key)
		require.NoError(t, err)
		cfg.EncryptKey = k
	}
	cfg.NodeName, cfg.BindAddr, cfg.Profile, cfg.KeyringPath = name, "127.0.0.1:0", ProfileLocal, keyring
	cfg.Tags = Tags{Role: RoleGateway, Gen: 1}
	cfg.Logger = hclog.NewNullLogger()
	c, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Shutdown() })
	return c
}

// TestKeyRotation: install a new key everywhere, use it, remove the old
// one. Afterwards a member with only the old key cannot join, one with the
// new key can, and a restarted member keeps the rotated keyring.
func TestKeyRotation(t *testing.T) {
	dir := t.TempDir()
	a := startKeyed(t, "a", oldKey, filepath.Join(dir, "a.keyring"))
	b := startKeyed(t, "b", oldKey, filepath.Join(dir, "b.keyring"))
	c := startKeyed(t, "c", oldKey, "")
	for _, m := range []*Cluster{b, c} {
		_, err := m.Join([]string{a.LocalNode().Addr.String()})
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return len(a.Members()) == 3 }, 5*time.Second, 10*time.Millisecond)

	r, err := a.InstallKey(newKey)
	require.NoError(t, err)
	assert.Equal(t, 3, r.Responses)
	_, err = b.UseKey(newKey)
	require.NoError(t, err)
	_, err = a.RemoveKey(oldKey)
	require.NoError(t, err)
	list, err := c.ListKeys()
	require.NoError(t, err)
	assert.Equal(t, map[string]int{newKey: 3}, list.Keys)
	assert.Equal(t, map[string]int{newKey: 3}, list.Primary)

	_, err = a.UseKey(oldKey)
	assert.Error(t, err, "a removed key cannot be used")
	_, err = a.InstallKey("c2hvcnQ=")
	assert.ErrorContains(t, err, "16, 24 or 32")

	stale := startKeyed(t, "stale", oldKey, "")
	_, err = stale.Join([]string{a.LocalNode().Addr.String()})
	assert.Error(t, err, "the old key no longer gets in")
	fresh := startKeyed(t, "fresh", newKey, "")
	_, err = fresh.Join([]string{a.LocalNode().Addr.String()})
	assert.NoError(t, err)

	// Every member saved the rotated keyring (atomically) in its data dir.
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "b.keyring"))
		return err == nil && strings.Contains(string(b), newKey) && !strings.Contains(string(b), oldKey)
	}, 5*time.Second, 20*time.Millisecond)

	// b restarts with its old --encrypt flag: the saved keyring wins.
	require.NoError(t, b.Shutdown())
	b2 := startKeyed(t, "b", oldKey, filepath.Join(dir, "b.keyring"))
	_, err = b2.Join([]string{a.LocalNode().Addr.String()})
	assert.NoError(t, err, "a restarted member rejoins with the rotated keys")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad.keyring"), []byte(`["not base64!"]`), 0o600))
	k, _ := ParseKey(oldKey)
	cfg := DefaultConfig()
	cfg.NodeName, cfg.BindAddr, cfg.EncryptKey, cfg.KeyringPath = "bad", "127.0.0.1:0", k, filepath.Join(dir, "bad.keyring")
	cfg.Tags = Tags{Role: RoleGateway, Gen: 1}
	cfg.Logger = hclog.NewNullLogger()
	_, err = New(cfg)
	assert.ErrorContains(t, err, filepath.Join(dir, "bad.keyring"))
}

func TestKeysNeedEncryption(t *testing.T) {
	m := startMember(t, "plain", Tags{Role: RoleGateway, Gen: 1})
	_, err := m.ListKeys()
	assert.ErrorIs(t, err, ErrNoEncryption)
}
