package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// RequireTool returns the path of an installed program the test needs
// (`make test` installs them). Without it the test fails under CI=true and
// skips, saying why, otherwise.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true and %s is not installed: %v", name, err)
	}
	t.Skipf("%s is not installed (`make test` installs it): %v", name, err)
	return ""
}
