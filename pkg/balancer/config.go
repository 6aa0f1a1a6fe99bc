package balancer

import (
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Balancer. DefaultConfig documents each default; a
// field's zero value means what its comment says.
type Config struct {
	// Service names what is balanced, for error pages and logs.
	Service string
	// DialTimeout bounds connecting to a backend. Default 2 s.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for a backend's response head
	// once the request is sent. Zero: no limit. Default 60 s.
	ResponseHeaderTimeout time.Duration
	// IdleConnTimeout closes keep-alive connections to a backend unused this
	// long. Default 90 s.
	IdleConnTimeout time.Duration
	// ClientIdleTimeout closes a keep-alive client connection that sends no
	// next request for this long, without an answer. Zero: 60 s.
	ClientIdleTimeout time.Duration
	// DrainIdleDelay is how long Shutdown leaves a keep-alive client
	// connection that waits for a request before closing it, counted from
	// StopAccepting (or Shutdown): a client that sends a request on it
	// meanwhile gets an answer with Connection: close, rather than a
	// connection closed under it (a POST it could not send again). Zero:
	// idle connections close at once. Default 1 s.
	DrainIdleDelay time.Duration
	// ClientHeaderTimeout bounds how long a client may take to send a
	// request head: from its first byte (or, on a new connection, from the
	// accept) to its end. When it passes the client is answered 408 and
	// the connection closed, as HAProxy's timeout http-request. Zero: 10 s.
	ClientHeaderTimeout time.Duration
	// MaxIdleConnsPerBackend bounds the keep-alive pool of each backend
	// (of each event loop, and of the goroutines). Default 128.
	MaxIdleConnsPerBackend int
	// Retries is how many other backends a failed request may be sent to:
	// any request that failed to connect, and bodiless GET, HEAD and OPTIONS
	// requests (or any with an Idempotency-Key header) that failed later. A
	// request whose body was read is never retried. 0 to 7; default 2.
	// During a canary, such a request that failed on a canary or baseline
	// backend, or was answered 5xx there, gets one more, on the stable arm
	// (arms.go).
	Retries int
	// EjectFor is how long a backend that refused or reset a connection gets
	// no new requests (passive ejection) when active checks are off. With
	// them on, it is out until Rise checks in a row pass. Default 3 s.
	EjectFor time.Duration
	// Active health checks: GET HealthPath every HealthInterval (0: off),
	// each within HealthTimeout; Fall failures in a row take a backend out,
	// Rise successes bring it back. Defaults /healthz, 2 s, 1 s, 2, 3.
	HealthPath     string
	HealthInterval time.Duration
	HealthTimeout  time.Duration
	Rise, Fall     int
	// Balance chooses the backend of each request: RoundRobin (the
	// default) or LeastRequest.
	Balance Algorithm
	// BackendMaxConns caps the requests in flight to each backend (0, the
	// default: no cap). When every backend is at its cap, requests wait in
	// the gateway, first come first served, for the first one with room,
	// at most QueueTimeout (then 503), as HAProxy's server maxconn and
	// timeout queue. A few per backend keeps the queue in the gateway,
	// where it is fair, instead of in the backends. Default QueueTimeout 5 s.
	BackendMaxConns int
	QueueTimeout    time.Duration
	// SlowStart ramps a backend that just joined or came back from 0 to its
	// full share of requests over this long. Default 0: off.
	SlowStart time.Duration
	// TrustedProxies are the client addresses whose X-Forwarded-For is
	// kept and appended to (load balancers or CDNs in front of the
	// gateway). Any other client's X-Forwarded-For is replaced by its own
	// address, so a client cannot make a backend believe it comes from
	// elsewhere. Default none.
	TrustedProxies []netip.Prefix
	// CanaryPinning honours "X-Herd-Canary: always" (the canary arm) and
	// "never" (the stable arm) on requests from TrustedProxies, for testers
	// to choose the arm during a canary; such requests are not measured.
	// From any other client, or when false (the default), the header is
	// passed on and ignored.
	CanaryPinning bool
	// AccessLog logs one line per request, through Logger named "access":
	// "off" (default), "on", or "sampled" (AccessLogSample of them).
	AccessLog       string
	AccessLogSample float64
	// EventLoop relays the common exchange (a request whose body came with
	// its head, answered with a small Content-Length body) on event loop
	// threads, and the rest on a goroutine per connection; false: a
	// goroutine per connection for everything. Linux only; not with
	// BackendMaxConns. Default true.
	EventLoop bool
	// EventLoopThreads is how many event loops share the client
	// connections (each its own thread); 0: one per two CPUs
	// (GOMAXPROCS), at least one.
	EventLoopThreads int
	// TLS to clients (ServeTLS): a handshake must end within
	// TLSHandshakeTimeout (default 10 s), as net/http's. HSTS, if positive,
	// is the max-age of the Strict-Transport-Security field added to
	// answers over TLS that have none. RedirectHTTPS answers requests on a
	// plain listener with 308 to the same URL over https (HTTPSPort, 443:
	// no port in the URL), but for HealthPath, which is served.
	TLSHandshakeTimeout time.Duration
	HSTS                time.Duration
	RedirectHTTPS       bool
	HTTPSPort           int
	// HTTP/2 to clients: negotiated by ALPN over TLS, and with H2C also on
	// plain listeners for clients that start with the HTTP/2 preface (h2c
	// prior knowledge). MaxConcurrentStreams bounds the streams of one
	// client connection (default 250).
	H2C                  bool
	MaxConcurrentStreams uint32
	// Registerer, if set, receives the balancer's Prometheus metrics.
	Registerer prometheus.Registerer
	// Logger receives the balancer's logs. Default: hclog's default logger.
	Logger hclog.Logger
}

// DefaultConfig returns a Config with the defaults documented on each field.
func DefaultConfig() Config {
	return Config{
		Service:                "service",
		DialTimeout:            2 * time.Second,
		ResponseHeaderTimeout:  60 * time.Second,
		IdleConnTimeout:        90 * time.Second,
		ClientIdleTimeout:      60 * time.Second,
		ClientHeaderTimeout:    10 * time.Second,
		DrainIdleDelay:         time.Second,
		EventLoop:              true,
		MaxIdleConnsPerBackend: 128,
		Retries:                2,
		Balance:                RoundRobin,
		QueueTimeout:           5 * time.Second,
		EjectFor:               3 * time.Second,
		HealthPath:             "/healthz",
		HealthInterval:         2 * time.Second,
		HealthTimeout:          time.Second,
		Rise:                   2,
		Fall:                   3,
		AccessLog:              "off",
		AccessLogSample:        0.01,
		TLSHandshakeTimeout:    10 * time.Second,
		HTTPSPort:              443,
		MaxConcurrentStreams:   250,
	}
}

// Algorithm is how a Balancer chooses the backend of each request.
type Algorithm string

const (
	// RoundRobin sends each request to the next backend in turn, as
	// HAProxy's roundrobin.
	RoundRobin Algorithm = "round-robin"
	// LeastRequest sends each request to the less busy (fewer requests in
	// flight) of two backends picked at random, as Envoy's least_request:
	// a backend that slows down (a pause, a busy host) gets less traffic
	// until it catches up. Like HAProxy's leastconn, at constant cost.
	LeastRequest Algorithm = "least-request"
)

// ParseAlgorithm returns the Algorithm a name spells ("" is RoundRobin).
func ParseAlgorithm(name string) (Algorithm, error) {
	switch a := Algorithm(name); a {
	case "", RoundRobin:
		return RoundRobin, nil
	case LeastRequest:
		return a, nil
	}
	return "", fmt.Errorf("balance %q: want %s or %s", name, RoundRobin, LeastRequest)
}

// Validate reports the first bad setting.
func (c *Config) Validate() error {
	if _, err := accessEvery(c.AccessLog, c.AccessLogSample); err != nil {
		return err
	}
	switch {
	case c.HealthInterval < 0:
		return fmt.Errorf("health interval %s: must not be negative", c.HealthInterval)
	case c.HealthInterval > 0 && (c.HealthTimeout <= 0 || c.HealthTimeout > c.HealthInterval):
		return fmt.Errorf("health timeout %s: want more than 0 and at most the interval %s", c.HealthTimeout, c.HealthInterval)
	case c.HealthInterval > 0 && (c.Rise < 1 || c.Fall < 1):
		return fmt.Errorf("health rise %d and fall %d: want at least 1", c.Rise, c.Fall)
	case c.HealthInterval > 0 && (c.HealthPath == "" || c.HealthPath[0] != '/'):
		return fmt.Errorf("health path %q: want a path starting with /", c.HealthPath)
	case c.Retries < 0 || c.Retries > maxAttempts-1:
		return fmt.Errorf("retries %d: want 0 to %d", c.Retries, maxAttempts-1)
	case c.EventLoopThreads < 0:
		return fmt.Errorf("event loop threads %d: must not be negative", c.EventLoopThreads)
	case c.BackendMaxConns < 0:
		return fmt.Errorf("backend max conns %d: must not be negative", c.BackendMaxConns)
	case c.BackendMaxConns > 0 && c.QueueTimeout <= 0:
		return fmt.Errorf("queue timeout %s: want more than 0 with a backend max conns", c.QueueTimeout)
	case c.DrainIdleDelay < 0:
		return fmt.Errorf("drain idle delay %s: must not be negative", c.DrainIdleDelay)
	case c.SlowStart < 0:
		return fmt.Errorf("slow start %s: must not be negative", c.SlowStart)
	case c.HSTS < 0:
		return fmt.Errorf("hsts %s: must not be negative", c.HSTS)
	case c.HTTPSPort < 0 || c.HTTPSPort > 65535:
		return fmt.Errorf("https port %d: want 1 to 65535", c.HTTPSPort)
	}
	for _, p := range c.TrustedProxies {
		if !p.IsValid() {
			return fmt.Errorf("trusted proxy %s: not a valid prefix", p)
		}
	}
	_, err := ParseAlgorithm(string(c.Balance))
	return err
}

// accessEvery turns the access log settings into "log one request in n"
// (0: none).
func accessEvery(mode string, sample float64) (uint64, error) {
	switch mode {
	case "", "off":
		return 0, nil
	case "on":
		return 1, nil
	case "sampled":
		if sample <= 0 || sample > 1 {
			return 0, fmt.Errorf("access log sample %v: want a fraction in (0, 1]", sample)
		}
		return uint64(math.Round(1 / sample)), nil
	}
	return 0, fmt.Errorf("access log %q: want off, on or sampled", mode)
}

// trusted reports whether addr is one of the trusted proxies.
func (c *Config) trusted(addr netip.Addr) bool {
	for _, p := range c.TrustedProxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}
