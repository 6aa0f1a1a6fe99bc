package agent

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/internal/testutil"
	"github.com/herd-cluster/herd/pkg/balancer"
	"github.com/herd-cluster/herd/pkg/membership"
	"github.com/herd-cluster/herd/pkg/runtime"
)

// TestAgentGRPCReplicas: replicas of a gRPC service are checked with
// grpc.health.v1 before they are announced, announced with their protocol
// (the gateway speaks gRPC to them), and a build whose health says
// NOT_SERVING is never announced.
func TestAgentGRPCReplicas(t *testing.T) {
	testutil.BuildExampleImages(t, imagesDir, "predictor-grpc", "1.0.0", "1.0.1-broken")
	g := startGateway(t)

	cfg := agentConfig(t, g, 2)
	cfg.Image = runtime.Image{Name: "predictor-grpc", Tag: "1.0.0"}
	cfg.Protocol = membership.ProtoGRPC
	runAgent(t, cfg, newDriver(t, t.TempDir()))
	g.waitBackends(t, 2)
	assert.Equal(t, balancer.GRPC, g.gw.Balancer().Service(cfg.Service).Protocol())

	broken := agentConfig(t, g, 1)
	broken.Image = runtime.Image{Name: "predictor-grpc", Tag: "1.0.1-broken"}
	broken.Protocol = membership.ProtoGRPC
	broken.StartTimeout = 3 * time.Second
	dir := t.TempDir()
	err := runToError(t, broken, newDriver(t, dir))
	require.Error(t, err)
	if !assert.Contains(t, err.Error(), "NOT_SERVING") {
		logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
		for _, f := range logs {
			b, _ := os.ReadFile(f)
			t.Logf("%s:\n%s", f, b)
		}
	}

	// Checked over HTTP/1.1, a gRPC server never passes.
	http1 := agentConfig(t, g, 1)
	http1.Image = cfg.Image
	http1.StartTimeout = 2 * time.Second
	require.Error(t, runToError(t, http1, newDriver(t, t.TempDir())))
	assert.Equal(t, 2, g.gw.Balancer().Len())
}
