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
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

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
	cmd := "serve"
	if len(os.Args) > 1 {
		cmd = os.Args[1]
	}
	switch cmd {
	case "serve":
		if err := serve(); err != nil {
			log.Fatalf("predictor-grpc: %v", err)
		}
	case "healthcheck":
		os.Exit(healthcheck())
	case "version", "--version", "-v":
		fmt.Println(version)
	default:
		fmt.Fprintf(os.Stderr, "predictor-grpc: unknown command %q (want serve, healthcheck or version)\n", cmd)
		os.Exit(2)
	}
}

func listenAddr() string {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	return net.JoinHostPort(os.Getenv("HOST"), port)
}

func instance() string {
	if v := os.Getenv("HERD_INSTANCE"); v != "" {
		return v
	}
	h, _ := os.Hostname()
	return h
}

func serve() error {
	ln, err := net.Listen("tcp", listenAddr())
	if err != nil {
		return err
	}
	srv, hs := scoring.NewServer(&scoring.Model{Version: version, Instance: instance()}, broken == "true")
	log.Printf("predictor-grpc %s serving on %s as %s", version, ln.Addr(), instance())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
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

func healthcheck() int {
	addr := listenAddr()
	if strings.HasPrefix(addr, ":") {
		addr = "127.0.0.1" + addr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := h2health.GRPC(ctx, addr, ""); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
