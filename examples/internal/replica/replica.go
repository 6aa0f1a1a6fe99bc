// Package replica is what Herd's example services share: their command
// line (serve, healthcheck, version) and what a replica learns from its
// environment (HOST and PORT to listen on, HERD_INSTANCE to name itself).
package replica

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Main runs the command os.Args names: serve (the default), healthcheck
// (exit 0 when check passes against the local server's address), or
// version. name prefixes the errors.
func Main(name, version string, serve func() error, check func(addr string) error) {
	cmd := "serve"
	if len(os.Args) > 1 {
		cmd = os.Args[1]
	}
	switch cmd {
	case "serve":
		if err := serve(); err != nil {
			log.Fatalf("%s: %v", name, err)
		}
	case "healthcheck":
		addr := ListenAddr()
		if strings.HasPrefix(addr, ":") {
			addr = "127.0.0.1" + addr
		}
		if err := check(addr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case "version", "--version", "-v":
		fmt.Println(version)
	default:
		fmt.Fprintf(os.Stderr, "%s: unknown command %q (want serve, healthcheck or version)\n", name, cmd)
		os.Exit(2)
	}
}

// ListenAddr is $HOST:$PORT, the port 8080 when unset.
func ListenAddr() string {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	return net.JoinHostPort(os.Getenv("HOST"), port)
}

// Instance names this replica: $HERD_INSTANCE, else the host name.
func Instance() string {
	if v := os.Getenv("HERD_INSTANCE"); v != "" {
		return v
	}
	h, _ := os.Hostname()
	return h
}

// ServeUntilSignal runs serve until it returns (its error is returned) or
// SIGTERM or an interrupt arrives (nil: the caller shuts down).
func ServeUntilSignal(serve func() error) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- serve() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return nil
	}
}
