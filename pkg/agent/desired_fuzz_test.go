package agent

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/runtime"
)

// FuzzLoadDesired: any desired.json gives the recorded image, the --image
// flag, or an error naming the file; never a panic, never an invalid image.
func FuzzLoadDesired(f *testing.F) {
	f.Add([]byte(`{"image":"predictor:1.1.0","flag":"predictor:1.0.0"}`))
	f.Add([]byte(`{"image":"predictor","flag":"predictor:1.0.0"}`))
	f.Add([]byte(`{"image":`))
	f.Add([]byte(``))
	flag := runtime.Image{Name: "predictor", Tag: "1.0.0"}
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, DesiredFile)
		require.NoError(t, os.WriteFile(path, b, 0o600))
		img, err := loadDesired(dir, flag)
		if err != nil {
			require.Contains(t, err.Error(), path)
			return
		}
		_, perr := runtime.ParseImage(img.String())
		require.NoError(t, perr)
	})
}
