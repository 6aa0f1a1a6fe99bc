package certs

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/internal/testutil"
)

// expiryMetrics is the exposition of the store's gauges for these
// seconds left, by NAME.
func expiryMetrics(left map[string]string) string {
	out := "# HELP herd_gateway_tls_cert_expiry_seconds Seconds until each certificate served expires (negative once it has), by NAME.\n" +
		"# TYPE herd_gateway_tls_cert_expiry_seconds gauge\n"
	for _, name := range sortedKeys(left) {
		out += fmt.Sprintf("herd_gateway_tls_cert_expiry_seconds{name=%q} %s\n", name, left[name])
	}
	return out + fmt.Sprintf("# HELP herd_gateway_tls_certs Certificates served.\n# TYPE herd_gateway_tls_certs gauge\nherd_gateway_tls_certs %d\n", len(left))
}

func assertExpiryMetrics(t *testing.T, reg *prometheus.Registry, left map[string]string) {
	t.Helper()
	assert.NoError(t, promtest.GatherAndCompare(reg, strings.NewReader(expiryMetrics(left)),
		"herd_gateway_tls_cert_expiry_seconds", "herd_gateway_tls_certs"))
}

// assertDaysLeft checks the days-left gauge of each NAME.
func assertDaysLeft(t *testing.T, reg *prometheus.Registry, days map[string]string) {
	t.Helper()
	out := "# HELP herd_gateway_tls_cert_days_left Whole days until each certificate served expires (negative once it has), by NAME: the expiry in the unit an operator's alert reads.\n" +
		"# TYPE herd_gateway_tls_cert_days_left gauge\n"
	for _, name := range sortedKeys(days) {
		out += fmt.Sprintf("herd_gateway_tls_cert_days_left{name=%q} %s\n", name, days[name])
	}
	assert.NoError(t, promtest.GatherAndCompare(reg, strings.NewReader(out), "herd_gateway_tls_cert_days_left"))
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

	assertExpiryMetrics(t, e.reg, map[string]string{"soon": "867600", "later": "5.184e+06"}) // 10 d 1 h, 60 d
	assertDaysLeft(t, e.reg, map[string]string{"soon": "10", "later": "60"})

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
	assertExpiryMetrics(t, e.reg, map[string]string{"soon": "-86400", "later": "4.23e+06"}) // -1 d; 49 d less 1 h
	assertDaysLeft(t, e.reg, map[string]string{"soon": "-1", "later": "48"})
}
