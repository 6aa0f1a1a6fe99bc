// Package replica is what Herd's example services share: their command
// line (serve, healthcheck, version) and what a replica learns from its
// environment (HOST and PORT to listen on, HERD_INSTANCE to name itself).
package replica

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Main runs the command os.Args names: serve (the default, also when the
// first argument is a flag: those are serve's), healthcheck (exit 0 when
// check passes against the local server's address), or version. serve gets
// the arguments after its name; its *UsageError exits 2 with the message,
// flag.ErrHelp (it printed its usage) exits 0, any other error exits 1. name
// prefixes the errors.
func Main(name, version string, serve func(args []string) error, check func(addr string) error) {
	cmd, args := "serve", []string(nil)
	if len(os.Args) > 1 {
		cmd, args = os.Args[1], os.Args[2:]
	}
	if strings.HasPrefix(cmd, "-") && cmd != "--version" && cmd != "-v" {
		cmd, args = "serve", os.Args[1:]
	}
	switch cmd {
	case "serve":
		err := serve(args)
		var usage *UsageError
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
		case errors.As(err, &usage):
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			os.Exit(2)
		default:
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

// UsageError is a serve error caused by the command line (a flag, a
// value): Main prints it in one line and exits 2, as Herd's binaries do
// for bad usage.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// NoArgs is serve's check for a service that takes no flags.
func NoArgs(args []string) error {
	if len(args) > 0 {
		return &UsageError{Err: fmt.Errorf("serve takes no arguments, got %q", args)}
	}
	return nil
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
