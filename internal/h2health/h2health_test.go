package h2health

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// startGRPC serves grpc-go's own health service on loopback.
func startGRPC(t *testing.T) (string, *health.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String(), hs
}

func TestGRPCAgainstGRPCGo(t *testing.T) {
	addr, hs := startGRPC(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, GRPC(ctx, addr, ""), "a new health server answers SERVING for the server as a whole")

	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	err := GRPC(ctx, addr, "")
	assert.ErrorIs(t, err, ErrNotServing)
	assert.ErrorContains(t, err, "NOT_SERVING")

	hs.SetServingStatus("scoring", healthpb.HealthCheckResponse_SERVING)
	assert.NoError(t, GRPC(ctx, addr, "scoring"), "a named service")
	err = GRPC(ctx, addr, "nothing")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `grpc-status "5"`, "an unknown service is NotFound, in a trailers-only answer")
}

func TestGRPCFailures(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Nothing listening.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	assert.Error(t, GRPC(ctx, addr, ""))

	// An h2c server that is not gRPC.
	h2cAddr := startH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusNotFound)
	}))
	assert.ErrorContains(t, GRPC(ctx, h2cAddr, ""), "404")

	// A server that never answers: the deadline ends the check.
	stall := startH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelShort()
	began := time.Now()
	assert.Error(t, GRPC(short, stall, ""))
	assert.Less(t, time.Since(began), 2*time.Second)
}

// startH2C serves h on loopback over HTTP/2 in clear only.
func startH2C(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: h, Protocols: new(http.Protocols)}
	srv.Protocols.SetUnencryptedHTTP2(true)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func TestHTTP(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addr := startH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 || r.UserAgent() != UserAgent {
			http.Error(w, "want h2c from the checker", http.StatusBadRequest)
			return
		}
		if r.URL.Path != "/healthz" {
			http.Error(w, "unhealthy", http.StatusServiceUnavailable)
		}
	}))
	assert.NoError(t, HTTP(ctx, addr, "/healthz"))
	assert.ErrorContains(t, HTTP(ctx, addr, "/other"), "503")
}

func TestGRPCTimeout(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "1m", 1500 * time.Millisecond: "1500m", 99999999 * time.Millisecond: "99999999m",
		100000 * time.Second: "100000S", 1e9 * time.Second: "99999999S",
	} {
		assert.Equal(t, want, grpcTimeout(d), d.String())
	}
	assert.False(t, errors.Is(nil, ErrNotServing))
}
