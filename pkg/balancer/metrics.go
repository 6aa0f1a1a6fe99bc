package balancer

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the balancer's Prometheus series and counters. The
// per-backend request counters are created when a backend joins and
// deleted when it leaves, so a scrape shows the current set only.
type metrics struct {
	requests *prometheus.CounterVec
	duration prometheus.Histogram
	// none counts answers the gateway gave without a backend (503), by class.
	none [6]prometheus.Counter

	retries, ejections, queueTimeouts atomic.Uint64

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
			Help: "Requests answered, by backend (\"none\" when no backend could be used) and status class.",
		}, []string{"backend", "code"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "herd_gateway_request_duration_seconds",
			Help:    "Time from a request's head being read to its answer being written, retries included.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		access: access, accessEvery: accessEvery,
	}
	for i, c := range codeClasses {
		m.none[i] = m.requests.WithLabelValues("none", c)
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration,
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "herd_gateway_retries_total", Help: "Requests sent again to another backend after a failure.",
			}, func() float64 { return float64(m.retries.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "herd_gateway_ejections_total", Help: "Backends taken out of rotation after a refused or reset connection, or failed health checks.",
			}, func() float64 { return float64(m.ejections.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "herd_gateway_backend_set_swaps_total", Help: "Backend sets swapped in.",
			}, func() float64 { return float64(b.reg.swaps.Load()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "herd_gateway_queued_requests", Help: "Requests waiting for a backend below its cap of requests in flight (--backend-max-conns).",
			}, func() float64 { return float64(b.queue.n.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "herd_gateway_queue_timeouts_total", Help: "Requests answered 503 after waiting the queue timeout for a backend with room.",
			}, func() float64 { return float64(m.queueTimeouts.Load()) }),
			&stateCollector{b: b, desc: prometheus.NewDesc("herd_gateway_backends",
				"Backends in the current set, by state.", []string{"state"}, nil)},
		)
	}
	return m
}

// stateCollector counts backends by state at scrape time.
type stateCollector struct {
	b    *Balancer
	desc *prometheus.Desc
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[string]int{StateUp: 0, StateDown: 0, StateEjected: 0, StateSlowStart: 0}
	for _, st := range c.b.Backends() {
		counts[st.State]++
	}
	for state, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), state)
	}
}

// added creates h's request counters.
func (m *metrics) added(h *host) {
	for i, c := range codeClasses {
		h.codes[i] = m.requests.WithLabelValues(h.hostPort, c)
	}
}

// removed deletes h's request counters.
func (m *metrics) removed(h *host) {
	for _, c := range codeClasses {
		m.requests.DeleteLabelValues(h.hostPort, c)
	}
}

// record accounts for one ended exchange: counters, latency, access log.
func (m *metrics) record(cc *clientConn) {
	x := &cc.x
	h, status := x.last, x.status
	class := classOf(status)
	if h != nil && h.codes[class] != nil {
		h.codes[class].Inc()
	} else {
		m.none[class].Inc()
	}
	took := time.Since(x.started)
	m.duration.Observe(took.Seconds())
	if m.accessEvery > 0 && m.accessN.Add(1)%m.accessEvery == 0 {
		backend := "none"
		if h != nil {
			backend = h.hostPort
		}
		m.access.Info("request", "method", string(cc.method), "path", string(cc.path),
			"status", strconv.Itoa(status), "outcome", x.outcome.String(), "backend", backend, "duration", took,
			"attempts", x.nTried, "request_id", string(cc.reqID), "client", string(cc.remoteIP))
	}
}
