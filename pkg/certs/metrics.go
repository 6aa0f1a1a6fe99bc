package certs

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the store's Prometheus series. The expiry gauges are
// computed at scrape time from the certificates served.
type metrics struct {
	loaded, refused prometheus.Counter
}

var (
	expiryDesc = prometheus.NewDesc("herd_gateway_tls_cert_expiry_seconds",
		"Seconds until each certificate served expires (negative once it has), by NAME.", []string{"name"}, nil)
	daysLeftDesc = prometheus.NewDesc("herd_gateway_tls_cert_days_left",
		"Whole days until each certificate served expires (negative once it has), by NAME: the expiry in the unit an operator's alert reads.", []string{"name"}, nil)
	certsDesc = prometheus.NewDesc("herd_gateway_tls_certs",
		"Certificates served.", nil, nil)
)

func newMetrics(s *Store, reg prometheus.Registerer) (*metrics, error) {
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "herd_gateway_tls_reloads_total",
		Help: "Certificate pairs whose files changed after start: loaded, or refused (not valid, or removed) and the previous one kept. A refusal counts once for the same files.",
	}, []string{"result"})
	m := &metrics{loaded: reloads.WithLabelValues("loaded"), refused: reloads.WithLabelValues("refused")}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{reloads, &collector{s: s}} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register tls metrics: %w", err)
		}
	}
	return m, nil
}

// collector reports the gauges of the certificates served.
type collector struct{ s *Store }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- expiryDesc
	ch <- daysLeftDesc
	ch <- certsDesc
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	now, n := c.s.cfg.Now(), 0
	for _, v := range c.s.snap.Load().pairs {
		if v.cert == nil {
			continue
		}
		n++
		left := v.cert.Leaf.NotAfter.Sub(now)
		ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue, left.Seconds(), v.name)
		ch <- prometheus.MustNewConstMetric(daysLeftDesc, prometheus.GaugeValue, float64(daysLeft(left)), v.name)
	}
	ch <- prometheus.MustNewConstMetric(certsDesc, prometheus.GaugeValue, float64(n))
}
