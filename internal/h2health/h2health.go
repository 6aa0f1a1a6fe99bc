// Package h2health checks a backend's health over HTTP/2 in clear (h2c,
// prior knowledge), on a connection of its own that it closes: with gRPC's
// standard health protocol (grpc.health.v1.Health/Check), or with a plain
// GET. It speaks gRPC by hand over golang.org/x/net/http2, so that the
// gateway links no gRPC library: the request is one tiny protobuf message,
// the answer one enum (proto.go).
package h2health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/net/http2"
)

// CheckPath is the standard health method's path.
const CheckPath = "/grpc.health.v1.Health/Check"

// UserAgent is sent with every check.
const UserAgent = "herd-health-check"

// maxAnswer bounds what is read of an answer.
const maxAnswer = 64 << 10

// ErrNotServing is the error of a gRPC check the server answered with a
// status other than SERVING (wrapped: the message names the status).
var ErrNotServing = errors.New("not serving")

// GRPC asks the gRPC server at addr (host:port) for the health of service
// ("" : the server as a whole) and returns nil when it answers SERVING. The
// deadline of ctx travels as grpc-timeout.
func GRPC(ctx context.Context, addr, service string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+CheckPath,
		bytes.NewReader(EncodeRequest(service)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	if d, ok := ctx.Deadline(); ok {
		req.Header.Set("Grpc-Timeout", grpcTimeout(time.Until(d)))
	}
	resp, err := roundTrip(ctx, addr, req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health check answered HTTP %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return err
	}
	// A trailers-only answer (an error) carries grpc-status in its headers.
	code, msg := resp.Trailer.Get("Grpc-Status"), resp.Trailer.Get("Grpc-Message")
	if code == "" {
		code, msg = resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message")
	}
	if code != "0" {
		return fmt.Errorf("health check failed: grpc-status %q %s", code, msg)
	}
	st, err := DecodeResponse(body)
	if err != nil {
		return fmt.Errorf("health check answer: %w", err)
	}
	if st != Serving {
		return fmt.Errorf("health check: %w (%s)", ErrNotServing, st)
	}
	return nil
}

// HTTP sends GET path to the h2c server at addr and returns nil on a 2xx or
// 3xx answer.
func HTTP(ctx context.Context, addr, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return err
	}
	resp, err := roundTrip(ctx, addr, req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
	resp.Body.Close()
	if resp.StatusCode >= 400 {
		return fmt.Errorf("health check answered %s", resp.Status)
	}
	return nil
}

// roundTrip sends req on a new h2c connection to addr, closed once the
// answer's body is.
func roundTrip(ctx context.Context, addr string, req *http.Request) (*http.Response, error) {
	req.Header.Set("User-Agent", UserAgent)
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	cc, err := (&http2.Transport{AllowHTTP: true}).NewClientConn(c)
	if err != nil {
		c.Close()
		return nil, err
	}
	resp, err := cc.RoundTrip(req)
	if err != nil {
		c.Close()
		return nil, err
	}
	resp.Body = &closingBody{ReadCloser: resp.Body, c: c}
	return resp, nil
}

// closingBody closes the connection with the body.
type closingBody struct {
	io.ReadCloser
	c net.Conn
}

func (b *closingBody) Close() error {
	err := b.ReadCloser.Close()
	b.c.Close()
	return err
}

// grpcTimeout writes d as a grpc-timeout header value: at most 8 digits
// and a unit.
func grpcTimeout(d time.Duration) string {
	ms := max(d.Milliseconds(), 1)
	if ms < 1e8 {
		return strconv.FormatInt(ms, 10) + "m"
	}
	return strconv.FormatInt(min(int64(d/time.Second), 99999999), 10) + "S"
}
