package balancer

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the balancer's Prometheus series. The per-backend request
// counters are created when a backend joins and deleted when it leaves, so
// a scrape shows the current set only.
type metrics struct {
	requests *prometheus.CounterVec
	duration prometheus.Histogram
	// none counts answers the gateway gave without a backend (503), by class.
	none [6]prometheus.Counter
}

var codeClasses = [6]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

func classOf(status int) int {
	if c := status / 100; c >= 1 && c <= 5 {
		return c
	}
	return 0
}

func newMetrics(b *Balancer, reg prometheus.Registerer) *metrics {
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
	}
	for i, c := range codeClasses {
		m.none[i] = m.requests.WithLabelValues("none", c)
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration,
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "herd_gateway_retries_total", Help: "Requests sent again to another backend after a failure.",
			}, func() float64 { return float64(b.retries.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "herd_gateway_ejections_total", Help: "Backends taken out of rotation after a refused or reset connection, or failed health checks.",
			}, func() float64 { return float64(b.ejections.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "herd_gateway_backend_set_swaps_total", Help: "Backend sets swapped in.",
			}, func() float64 { return float64(b.swaps.Load()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "herd_gateway_queued_requests", Help: "Requests waiting for a backend below --backend-max-conns.",
			}, func() float64 { return float64(b.queue.n.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "herd_gateway_queue_timeouts_total", Help: "Requests answered 503 after waiting --queue-timeout for a backend with room.",
			}, func() float64 { return float64(b.queueTimeouts.Load()) }),
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

// startedMetrics creates be's request counters.
func (m *metrics) startedMetrics(be *backend) {
	for i, c := range codeClasses {
		be.codes[i] = m.requests.WithLabelValues(be.hostPort, c)
	}
}

func (m *metrics) retiredMetrics(be *backend) {
	for _, c := range codeClasses {
		m.requests.DeleteLabelValues(be.hostPort, c)
	}
}

// record accounts for one answered request: counters, latency, access log.
func (b *Balancer) record(be *backend, status int, st *relayState, cc *clientConn) {
	class := classOf(status)
	if be != nil && be.codes[class] != nil {
		be.codes[class].Inc()
	} else {
		b.m.none[class].Inc()
	}
	took := time.Since(st.started)
	b.m.duration.Observe(took.Seconds())
	if b.accessEvery > 0 && b.accessN.Add(1)%b.accessEvery == 0 {
		backend := "none"
		if be != nil {
			backend = be.hostPort
		}
		b.access.Info("request", "method", string(cc.method), "path", string(cc.path),
			"status", strconv.Itoa(status), "backend", backend, "duration", took, "attempts", st.attempts,
			"request_id", string(cc.reqID), "client", string(cc.remoteIP))
	}
}
