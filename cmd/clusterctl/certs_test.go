package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/herd-cluster/herd/pkg/api"
)

func TestCertRows(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	rows := certRows([]api.Cert{
		{Name: "a", DNSNames: []string{"a.test", "*.a.test"}, Issuer: "R11", NotAfter: t0.Add(90 * 24 * time.Hour), DaysLeft: 90,
			File: "/c/a.crt", LoadedAt: t0, Default: true},
		{Name: "b", DNSNames: []string{"b.test"}, Issuer: "R11", NotAfter: t0.Add(24 * time.Hour), DaysLeft: 1, File: "/c/b.crt",
			LoadedAt: t0, ExpiresSoon: true, Problem: "/c/b.key: private key does not match certificate /c/b.crt"},
		{Name: "c", File: "/c/c.crt", Problem: "/c/c.key: no PEM private key in it"},
	})
	assert.Equal(t, [][]string{
		{"NAME", "DNS NAMES", "ISSUER", "NOT-AFTER", "DAYS-LEFT", "FILE", "LOADED-AT", "PROBLEM"},
		{"a (default)", "a.test,*.a.test", "R11", "2027-03-01T12:00:00Z", "90", "/c/a.crt", "2026-12-01T12:00:00Z", "-"},
		{"b", "b.test", "R11", "2026-12-02T12:00:00Z", "1", "/c/b.crt", "2026-12-01T12:00:00Z",
			"expires soon; /c/b.key: private key does not match certificate /c/b.crt"},
		{"c", "-", "-", "-", "-", "/c/c.crt", "-", "/c/c.key: no PEM private key in it"},
	}, rows)
}
