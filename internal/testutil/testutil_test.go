package testutil

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestGoBuildCopiesEarlierBuild: a second build of the same package and
// settings is a copy of the first while that is unchanged, and a build
// again once it changed.
func TestGoBuildCopiesEarlierBuild(t *testing.T) {
	dir := t.TempDir()
	first, second, third := filepath.Join(dir, "a", "exe"), filepath.Join(dir, "b", "exe"), filepath.Join(dir, "c", "exe")
	GoBuild(t, "./examples/predictor", first, "main.version=memo-test")
	GoBuild(t, "./examples/predictor", second, "main.version=memo-test")
	a, err := os.ReadFile(first)
	require.NoError(t, err)
	b, err := os.ReadFile(second)
	require.NoError(t, err)
	assert.Equal(t, a, b)
	fi, err := os.Stat(second)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o755), fi.Mode().Perm())
	key := "./examples/predictor main.version=memo-test"
	assert.Equal(t, first, builds[key].path, "copied, not built again")

	require.NoError(t, os.WriteFile(first, []byte("changed"), 0o755))
	GoBuild(t, "./examples/predictor", third, "main.version=memo-test")
	c, err := os.ReadFile(third)
	require.NoError(t, err)
	assert.Equal(t, a, c, "built again, not a copy of the changed file")
	assert.Equal(t, third, builds[key].path)
}

func TestPredictorFaults(t *testing.T) {
	for v, want := range map[string]string{
		PredictorErr5:     "error-rate=5%",
		PredictorSlow50:   "delay=50ms",
		PredictorCrash100: "crash-after=100",
		"2.0.0-err20":     "error-rate=20%",
		"1.1.0":           "",
		"1.1.0-broken":    "",
		"1.1.0-err":       "",
		"1.1.0-err5x":     "",
	} {
		assert.Equal(t, want, PredictorFaults(v), v)
	}
	assert.Equal(t, []string{PredictorErr5, PredictorSlow50, PredictorCrash100}, PredictorFaultVersions())
}
