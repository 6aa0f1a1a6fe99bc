package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestGatewayLinksNoGRPC: the gateway carries gRPC and checks gRPC health
// (internal/h2health) without linking a gRPC library. (Protobuf it links
// already, through Prometheus' client.)
func TestGatewayLinksNoGRPC(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	require.NoError(t, err, string(out))
	deps := strings.Fields(string(out))
	require.Contains(t, deps, "github.com/herd-cluster/herd/internal/h2health")
	for _, dep := range deps {
		assert.False(t, strings.HasPrefix(dep, "google.golang.org/grpc"), "the gateway links %s", dep)
	}
}
