package agent

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/runtime"
)

// FuzzLoadDesired: any desired.json gives the recorded image and count, the
// --image and --replicas flags, or an error naming the file; never a panic,
// never an invalid image, never a count out of range.
func FuzzLoadDesired(f *testing.F) {
	f.Add([]byte(`{"image":"predictor:1.1.0","flag":"predictor:1.0.0"}`))
	f.Add([]byte(`{"image":"predictor:1.0.0","flag":"predictor:1.0.0","replicas":24,"replicas_flag":4}`))
	f.Add([]byte(`{"image":"predictor:1.0.0","flag":"predictor:1.0.0","replicas":0,"replicas_flag":4}`))
	f.Add([]byte(`{"image":"predictor:1.0.0","flag":"predictor:1.0.0","replicas":-1,"replicas_flag":4}`))
	f.Add([]byte(`{"image":"predictor:1.0.0","flag":"predictor:1.0.0","replicas":1e9,"replicas_flag":4}`))
	f.Add([]byte(`{"image":"predictor","flag":"predictor:1.0.0"}`))
	f.Add([]byte(`{"image":`))
	f.Add([]byte(``))
	flag := runtime.Image{Name: "predictor", Tag: "1.0.0"}
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, DesiredFile)
		require.NoError(t, os.WriteFile(path, b, 0o600))
		w, err := loadDesired(dir, flag, 4)
		if err != nil {
			require.Contains(t, err.Error(), path)
			return
		}
		_, perr := runtime.ParseImage(w.image.String())
		require.NoError(t, perr)
		require.True(t, w.replicas >= 0 && w.replicas <= MaxReplicas, "replica count %d", w.replicas)
	})
}
