package balancer

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the balancer's Prometheus series. The per-backend request
// counters are created when a backend joins and deleted when it leaves, so
// a scrape shows the current set only.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// connections counts client connections by protocol; handshakeErrors
	// the TLS handshakes that failed.
	connections     *prometheus.CounterVec
	conns           [nProtos]prometheus.Counter
	handshakeErrors *prometheus.CounterVec
	// noRoute counts the answers to requests no route took, by class.
	noRoute [6]prometheus.Counter
	// The canaries' measured attempts and the arms' shares (arms.go).
	canaryRequests *prometheus.CounterVec
	canaryWeight   *prometheus.GaugeVec

	access      hclog.Logger
	accessEvery uint64 // log one request in accessEvery (0: none)
	accessN     atomic.Uint64
}

var codeClasses = [6]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

func classOf(status int) int {
	if c := status / 100; c >= 1 && c <= 5 {
		return c
	}
	return 0
}

func newMetrics(b *Balancer, reg prometheus.Registerer, access hclog.Logger, accessEvery uint64) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_gateway_requests_total",
			Help: "Requests answered, by service (\"none\" when no route took them), backend (\"none\" when no backend could be used) and status class.",
		}, []string{"service", "backend", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herd_gateway_request_duration_seconds",
			Help:    "Time from a request's head being read to its answer being written, retries included, by service and client protocol (http, https, h2, h2c).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"service", "proto"}),
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_gateway_connections_total",
			Help: "Client connections accepted, by protocol (http, https, h2, h2c; a TLS connection is counted once its handshake is done).",
		}, []string{"proto"}),
		handshakeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_gateway_tls_handshake_errors_total",
			Help: "TLS handshakes that failed, by reason (timeout, protocol: a version, cipher or certificate the client refused or offered wrong).",
		}, []string{"reason"}),
		canaryRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_gateway_canary_requests_total",
			Help: "Attempts measured during a canary, by service, arm (stable, canary, baseline), the version it runs, and status class (\"failed\": no answer). Only the arms' current versions are kept.",
		}, []string{"service", "arm", "version", "code"}),
		canaryWeight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herd_gateway_canary_weight",
			Help: "Percent of a service's requests each arm gets (stable, canary, baseline), for the services that have had a canary.",
		}, []string{"service", "arm"}),
		access: access, accessEvery: accessEvery,
	}
	for i, c := range codeClasses {
		m.noRoute[i] = m.requests.WithLabelValues("none", "none", c)
	}
	for p := range nProtos {
		m.conns[p] = m.connections.WithLabelValues(p.String())
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.connections, m.handshakeErrors, m.canaryRequests, m.canaryWeight,
			&serviceCollector{b: b})
	}
	return m
}

// serviceCollector reports each service's counters and gauges at scrape
// time.
type serviceCollector struct{ b *Balancer }

var (
	retriesDesc = prometheus.NewDesc("herd_gateway_retries_total",
		"Requests sent again to another backend after a failure, by service.", []string{"service"}, nil)
	ejectionsDesc = prometheus.NewDesc("herd_gateway_ejections_total",
		"Backends taken out of rotation after a refused or reset connection, or failed health checks, by service.", []string{"service"}, nil)
	swapsDesc = prometheus.NewDesc("herd_gateway_backend_set_swaps_total",
		"Backend sets swapped in, by service.", []string{"service"}, nil)
	queuedDesc = prometheus.NewDesc("herd_gateway_queued_requests",
		"Requests waiting for a backend below its cap of requests in flight (--backend-max-conns), by service.", []string{"service"}, nil)
	queueTimeoutsDesc = prometheus.NewDesc("herd_gateway_queue_timeouts_total",
		"Requests answered 503 after waiting the queue timeout for a backend with room, by service.", []string{"service"}, nil)
	inflightDesc = prometheus.NewDesc("herd_gateway_inflight_requests",
		"Requests in flight to a service's backends.", []string{"service"}, nil)
	backendsDesc = prometheus.NewDesc("herd_gateway_backends",
		"Backends in the current set, by service and state.", []string{"service", "state"}, nil)
)

func (c *serviceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{retriesDesc, ejectionsDesc, swapsDesc, queuedDesc, queueTimeoutsDesc, inflightDesc, backendsDesc} {
		ch <- d
	}
}

func (c *serviceCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[string]map[string]int{}
	for _, st := range c.b.Backends() {
		if counts[st.Service] == nil {
			counts[st.Service] = map[string]int{StateUp: 0, StateDown: 0, StateEjected: 0, StateSlowStart: 0}
		}
		counts[st.Service][st.State]++
	}
	for name, s := range *c.b.services.Load() {
		ch <- prometheus.MustNewConstMetric(retriesDesc, prometheus.CounterValue, float64(s.retries.Load()), name)
		ch <- prometheus.MustNewConstMetric(ejectionsDesc, prometheus.CounterValue, float64(s.ejections.Load()), name)
		ch <- prometheus.MustNewConstMetric(swapsDesc, prometheus.CounterValue, float64(s.reg.swaps.Load()), name)
		ch <- prometheus.MustNewConstMetric(queuedDesc, prometheus.GaugeValue, float64(s.queue.n.Load()), name)
		ch <- prometheus.MustNewConstMetric(queueTimeoutsDesc, prometheus.CounterValue, float64(s.queueTimeouts.Load()), name)
		ch <- prometheus.MustNewConstMetric(inflightDesc, prometheus.GaugeValue, float64(s.inflight()), name)
		states := counts[name]
		if states == nil {
			states = map[string]int{StateUp: 0, StateDown: 0, StateEjected: 0, StateSlowStart: 0}
		}
		for state, n := range states {
			ch <- prometheus.MustNewConstMetric(backendsDesc, prometheus.GaugeValue, float64(n), name, state)
		}
	}
}

// added creates h's request counters.
func (m *metrics) added(service string, h *host) {
	for i, c := range codeClasses {
		h.codes[i] = m.requests.WithLabelValues(service, h.hostPort, c)
	}
}

// removed deletes h's request counters.
func (m *metrics) removed(service string, h *host) {
	for _, c := range codeClasses {
		m.requests.DeleteLabelValues(service, h.hostPort, c)
	}
}

// Client protocols, as the metrics' proto label and the access log say
// them.
type proto uint8

const (
	protoHTTP  proto = iota // HTTP/1.x in clear
	protoHTTPS              // HTTP/1.x over TLS
	protoH2                 // HTTP/2 over TLS
	protoH2C                // HTTP/2 in clear (prior knowledge)
	nProtos
)

var protoNames = [nProtos]string{"http", "https", "h2", "h2c"}

func (p proto) String() string { return protoNames[p] }

// ended is one ended request, as the metrics and the access log take it.
type ended struct {
	svc      *Service // nil: no route took it
	h        *host    // the last backend tried; nil: none
	proto    proto
	status   int
	outcome  outcome
	took     time.Duration
	attempts int
	// For the access log only.
	method, path, reqID, client []byte
	tls                         string // "TLS 1.3 h2", or ""
}

// record accounts for one ended exchange of the HTTP/1 relays.
func (m *metrics) record(cc *clientConn) {
	x := &cc.x
	e := ended{svc: x.svc, h: x.last, proto: cc.proto, status: x.status, outcome: x.outcome, took: time.Since(x.started),
		attempts: x.nTried}
	if m.accessEvery > 0 {
		e.method, e.path, e.reqID, e.client, e.tls = cc.method, cc.path, cc.reqID, cc.remoteIP, cc.tlsSummary
	}
	m.observe(&e)
}

// observe counts an ended request, observes its latency, and logs it when
// the access log takes it.
func (m *metrics) observe(e *ended) {
	class := classOf(e.status)
	service := "none"
	switch {
	case e.h != nil && e.h.codes[class] != nil:
		e.h.codes[class].Inc()
		service = e.svc.name
	case e.svc != nil:
		e.svc.none[class].Inc()
		service = e.svc.name
	default:
		m.noRoute[class].Inc()
	}
	if e.svc != nil {
		e.svc.observer(e.proto).Observe(e.took.Seconds())
	}
	if m.accessEvery > 0 && m.accessN.Add(1)%m.accessEvery == 0 {
		backend := "none"
		if e.h != nil {
			backend = e.h.hostPort
		}
		fields := []any{"method", string(e.method), "path", string(e.path),
			"status", strconv.Itoa(e.status), "outcome", e.outcome.String(), "service", service, "backend", backend,
			"duration", e.took, "attempts", e.attempts, "proto", e.proto.String(), "request_id", string(e.reqID),
			"client", string(e.client)}
		if e.tls != "" {
			fields = append(fields, "tls", e.tls)
		}
		m.access.Info("request", fields...)
	}
}
