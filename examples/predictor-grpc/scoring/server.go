package scoring

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
)

// NewServer returns a gRPC server with the service and grpc.health.v1,
// which answers for the server as a whole ("") and for ServiceName:
// SERVING, or NOT_SERVING when broken (a bad release, for tests of
// automatic revert). The server accepts keep-alive pings as often as every
// 5 s even with no call in flight: a gateway pings the connections it
// keeps to its backends (grpc-go's default would answer such pings with a
// GOAWAY).
func NewServer(m *Model, broken bool) (*grpc.Server, *health.Server) {
	srv := grpc.NewServer(grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
		MinTime: 5 * time.Second, PermitWithoutStream: true,
	}))
	Register(srv, m)
	hs := health.NewServer()
	st := healthpb.HealthCheckResponse_SERVING
	if broken {
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	hs.SetServingStatus("", st)
	hs.SetServingStatus(ServiceName, st)
	healthpb.RegisterHealthServer(srv, hs)
	return srv, hs
}
