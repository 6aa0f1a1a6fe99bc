package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// ErrUnauthorized is returned when the server rejects the token (HTTP 401).
var ErrUnauthorized = errors.New("unauthorized: wrong or missing token")

// ErrNoCertificate is returned by WithCA for a file that holds no PEM
// certificate.
var ErrNoCertificate = errors.New("no PEM certificate in it")

// Error is the body of every non-2xx answer.
type Error struct {
	// Error is the server's message, one sentence for a person.
	Error string `json:"error"`
}

// StatusError is an answer other than 2xx (and 401, ErrUnauthorized), with
// the server's message.
type StatusError struct {
	// Status is the HTTP status code.
	Status int
	// Msg is the server's Error message, or the status line and path when
	// the body held none.
	Msg string
}

func (e *StatusError) Error() string { return e.Msg }

// UnreachableError is returned when no answer came from the server: the
// address refuses connections, does not resolve, the TLS handshake failed,
// or the call timed out. Err is why.
type UnreachableError struct {
	// Addr is the client's base URL.
	Addr string
	Err  error
}

func (e *UnreachableError) Error() string { return fmt.Sprintf("cannot reach %s: %v", e.Addr, e.Err) }

// Unwrap returns why.
func (e *UnreachableError) Unwrap() error { return e.Err }

// Client talks to a gateway's or agent's admin API. Its methods are safe to
// call from several goroutines; set its fields before the first call.
type Client struct {
	// Addr is the base URL, such as "http://127.0.0.1:7070".
	Addr string
	// Token is sent as "Authorization: Bearer <Token>" when not empty.
	Token string
	// HTTP sends the requests.
	HTTP *http.Client
	// Timeout bounds each call. Starting a rollout may take longer (every
	// agent is asked for the image, a failed one is waited for) and gets at
	// least 2 minutes; an abort answers once the batch in progress is
	// reverted and gets at least 30 minutes.
	Timeout time.Duration
}

// NewClient returns a Client of the admin API at addr (a URL, or host:port
// for http) with a 10 s call timeout.
func NewClient(addr, token string) *Client {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return &Client{Addr: strings.TrimRight(addr, "/"), Token: token, HTTP: &http.Client{}, Timeout: 10 * time.Second}
}

// WithCA makes the client trust the PEM certificates in caFile, for an
// admin API served over TLS with a certificate signed by a private CA, or
// self-signed. It returns c.
func (c *Client) WithCA(caFile string) (*Client, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s: %w", caFile, ErrNoCertificate)
	}
	c.HTTP.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	return c, nil
}

func (c *Client) get(ctx context.Context, path string, out any) error {
	return c.do(ctx, http.MethodGet, path, nil, out)
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	return c.doWithin(ctx, c.Timeout, method, path, in, out)
}

// doWithin is do with a call timeout of at least within.
func (c *Client) doWithin(ctx context.Context, within time.Duration, method, path string, in, out any) error {
	ctx, cancel := context.WithTimeout(ctx, max(within, c.Timeout))
	defer cancel()
	var reqBody io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		reqBody = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Addr+path, reqBody)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return &UnreachableError{Addr: c.Addr, Err: unwrapURLError(err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read answer from %s: %w", c.Addr, err)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		return ErrUnauthorized
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var e Error
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return &StatusError{Status: resp.StatusCode, Msg: e.Error}
		}
		return &StatusError{Status: resp.StatusCode, Msg: fmt.Sprintf("%s %s", resp.Status, path)}
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%s%s answered something that is not Herd's API: %w", c.Addr, path, err)
	}
	return nil
}

// unwrapURLError drops *url.Error's "Get "http://...": " prefix, which
// repeats the address UnreachableError names.
func unwrapURLError(err error) error {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}
