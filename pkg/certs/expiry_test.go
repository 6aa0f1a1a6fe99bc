package certs

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/internal/testutil"
)

// gauge is the value of the gauge name{name=label} in reg; ok is false if
// it has none.
func gauge(t *testing.T, reg *prometheus.Registry, name, label string) (v float64, ok bool) {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "name" && lp.GetValue() == label {
					return m.GetGauge().GetValue(), true
				}
			}
			if label == "" && len(m.GetLabel()) == 0 {
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

// TestExpiryWarning: a certificate within WarnWithin of its expiry is
// flagged and logged once a day; the metric says how long each has left.
func TestExpiryWarning(t *testing.T) {
	ca := testutil.NewCA(t)
	e := newEnv(t)
	now := time.Now().Truncate(time.Second)
	clk := &clock{t: now}
	e.cfg.Now = clk.Now
	soon := ca.Issue(t, testutil.Leaf{Names: []string{"soon.test"}, NotAfter: now.Add(10*24*time.Hour + time.Hour)})
	soon.Write(t, e.dir, "soon")
	later := ca.Issue(t, testutil.Leaf{Names: []string{"later.test"}, NotAfter: now.Add(60 * 24 * time.Hour)})
	later.Write(t, e.dir, "later")
	s := e.load(t)

	infos := s.Certs()
	require.Len(t, infos, 2)
	assert.False(t, infos[0].ExpiresSoon)
	assert.Equal(t, 60, infos[0].DaysLeft)
	assert.True(t, infos[1].ExpiresSoon)
	assert.Equal(t, 10, infos[1].DaysLeft)
	assert.Equal(t, 1, e.logs.count("certificate expires soon"), "only the one close to expiry")
	assert.Contains(t, e.logs.String(), "days_left=10")

	v, ok := gauge(t, e.reg, "herd_gateway_tls_cert_expiry_seconds", "soon")
	require.True(t, ok)
	assert.InDelta(t, (10*24*time.Hour + time.Hour).Seconds(), v, 1)
	v, ok = gauge(t, e.reg, "herd_gateway_tls_cert_expiry_seconds", "later")
	require.True(t, ok)
	assert.InDelta(t, (60 * 24 * time.Hour).Seconds(), v, 1)
	v, _ = gauge(t, e.reg, "herd_gateway_tls_certs", "")
	assert.Equal(t, 2.0, v)

	clk.Add(time.Hour)
	require.NoError(t, s.Reload())
	assert.Equal(t, 1, e.logs.count("certificate expires soon"), "once a day")
	clk.Add(24 * time.Hour)
	require.NoError(t, s.Reload())
	assert.Equal(t, 2, e.logs.count("certificate expires soon"))
	assert.Equal(t, 9, s.Certs()[1].DaysLeft)

	// Past its expiry with no replacement: still served, logged as expired.
	clk.Add(10 * 24 * time.Hour)
	require.NoError(t, s.Reload())
	assert.Equal(t, 1, e.logs.count("certificate expired; still serving it"))
	assert.Equal(t, -1, s.Certs()[1].DaysLeft)
	v, _ = gauge(t, e.reg, "herd_gateway_tls_cert_expiry_seconds", "soon")
	assert.Less(t, v, 0.0)
}
