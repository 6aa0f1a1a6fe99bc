package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// Unavailable ends a test whose dependency cannot run here: it fails under
// CI=true, where `make test` must have provided it, and skips with the
// reason otherwise.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	why := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true and %s", why)
	}
	t.Skip(why)
}

// RequireTool returns the path of an installed program the test needs
// (`make test` installs them); see Unavailable for when it is missing.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		Unavailable(t, "%s is not installed (`make test` installs it): %v", name, err)
	}
	return path
}
