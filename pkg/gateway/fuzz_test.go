package gateway

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadView: a view file, whatever its bytes, loads or fails with an
// error, and a loaded one restores without a panic: what a malformed member
// holds is skipped.
func FuzzLoadView(f *testing.F) {
	f.Add([]byte(`{"saved":"2026-12-01T10:00:00Z","nodes":[{"name":"a","addr":"127.0.0.2:7946","status":"alive",` +
		`"tags":{"role":"agent","svc":"predictor","img":"predictor:1.0.0","ip":"127.0.0.2","ports":"8000-8001","gen":"3","state":"active"}}],` +
		`"backends":[{"addr":"127.0.0.2:8001","state":"down"}]}`))
	f.Add([]byte(`{"nodes":[{"name":"","addr":"x","tags":{"role":"agent"}}]}`))
	f.Add([]byte(`not json`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(dir, "view.json")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		v, err := LoadView(path)
		if err != nil {
			return
		}
		cfg := DefaultConfig()
		cfg.Logger = quiet()
		cfg.Balancer.HealthInterval = 0
		g, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if n := g.Restore(v); n > len(v.Nodes) {
			t.Fatalf("restored %d of %d members", n, len(v.Nodes))
		}
	})
}
