// Command predictor-grpc is Herd's example gRPC service: the predictor's
// tone scoring over gRPC (package scoring), to run behind a gateway with
// `agent join --protocol grpc`.
//
//	predictor-grpc [serve]     serve gRPC (h2c) on $HOST:$PORT (default :8080)
//	predictor-grpc healthcheck exit 0 if the local server's grpc.health.v1 says SERVING
//	predictor-grpc version     print the version
//
// Methods of herd.predictor.v1.Predictor, messages in JSON: Score (unary)
// and ScoreStream (both ways); grpc.health.v1.Health. HERD_INSTANCE names
// this replica in answers (Herd's agents set it).
package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"time"

	"github.com/herd-cluster/herd/examples/internal/replica"
	"github.com/herd-cluster/herd/examples/predictor-grpc/scoring"
	"github.com/herd-cluster/herd/internal/h2health"
)

// Set at build time: -ldflags "-X main.version=1.1.0".
var (
	version = "dev"
	// broken, when "true", makes the health service answer NOT_SERVING: a
	// bad release for testing automatic rollout revert.
	broken = "false"
)

// shutdownTimeout bounds how long calls in flight have to finish after
// SIGTERM.
const shutdownTimeout = 30 * time.Second

func main() {
	replica.Main("predictor-grpc", version, serve, func(addr string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return h2health.GRPC(ctx, addr, "")
	})
}

func serve(args []string) error {
	if err := replica.NoArgs(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", replica.ListenAddr())
	if err != nil {
		return err
	}
	srv, hs := scoring.NewServer(&scoring.Model{Version: version, Instance: replica.Instance()}, broken == "true")
	log.Printf("predictor-grpc %s serving on %s as %s", version, ln.Addr(), replica.Instance())
	if err := replica.ServeUntilSignal(func() error { return srv.Serve(ln) }); err != nil {
		return err
	}
	// Say so to health checks, finish the calls in flight, then exit.
	hs.Shutdown()
	done := make(chan struct{})
	go func() { srv.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(shutdownTimeout):
		srv.Stop()
		return fmt.Errorf("shutdown: calls still in flight after %s", shutdownTimeout)
	}
	log.Printf("predictor-grpc stopped")
	return nil
}
