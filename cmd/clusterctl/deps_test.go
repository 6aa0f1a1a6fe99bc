package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// forbidden are the module paths clusterctl must not link: it is a client of
// the admin API, not a cluster member, and must build for any GOOS. The
// standard library's own vendored copies (vendor/golang.org/x/...) are
// not these paths, so they pass.
var forbidden = []string{
	"github.com/hashicorp/serf/",
	"github.com/hashicorp/memberlist",
	"github.com/prometheus/",
	"github.com/docker/",
	"golang.org/x/sys/",
	"google.golang.org/grpc",
}

// herdAllowed are the only packages of this module clusterctl may link.
var herdAllowed = []string{
	"github.com/herd-cluster/herd/cmd/clusterctl",
	"github.com/herd-cluster/herd/internal/cliutil",
	"github.com/herd-cluster/herd/pkg/api",
}

// TestClusterctlLinksNoClusterCode: `go list -deps ./cmd/clusterctl`, for the
// platforms clusterctl is released for, names no Serf, Prometheus, Docker or
// x/sys package and of Herd only the API client and the shared CLI helpers.
func TestClusterctlLinksNoClusterCode(t *testing.T) {
	for _, goos := range []string{"linux", "darwin", "windows"} {
		t.Run(goos, func(t *testing.T) {
			cmd := exec.Command("go", "list", "-deps", ".")
			cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH=amd64")
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, string(out))
			deps := strings.Fields(string(out))
			require.Contains(t, deps, "github.com/herd-cluster/herd/pkg/api", "go list answered clusterctl's dependencies")
			for _, dep := range deps {
				for _, f := range forbidden {
					assert.False(t, strings.HasPrefix(dep, f), "clusterctl links %s", dep)
				}
				if strings.HasPrefix(dep, "github.com/herd-cluster/herd/") {
					assert.Contains(t, herdAllowed, dep, "clusterctl links %s", dep)
				}
			}
		})
	}
}
