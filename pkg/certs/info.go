package certs

import (
	"crypto/x509"
	"math"
	"slices"
	"time"
)

// Info describes one certificate pair, for the admin API and clusterctl
// certs.
type Info struct {
	// Name is the pair's NAME: its certificate file's base without the
	// extension, or its folder's name for fullchain.pem.
	Name string
	// DNSNames are the names the certificate covers (its DNS SANs).
	DNSNames []string
	// Issuer is the issuer's common name, or its full DN if it has none.
	Issuer string
	// NotBefore and NotAfter bound the certificate's validity.
	NotBefore, NotAfter time.Time
	// DaysLeft is how many whole days remain until NotAfter; negative once
	// it has passed.
	DaysLeft int
	// File is the certificate file.
	File string
	// LoadedAt is when the certificate served was read.
	LoadedAt time.Time
	// Default is true for the certificate served to clients no other
	// certificate matches.
	Default bool
	// ExpiresSoon is true when NotAfter is within Config.WarnWithin, or
	// past.
	ExpiresSoon bool
	// Problem is why the pair's files were last refused or are missing;
	// empty when the certificate served is what the files hold. A pair
	// that never loaded has only Name, File and Problem.
	Problem string
}

// Certs describes every pair, sorted by Name.
func (s *Store) Certs() []Info {
	snap, now := s.snap.Load(), s.cfg.Now()
	out := make([]Info, 0, len(snap.pairs))
	for _, v := range snap.pairs {
		out = append(out, v.info(now, s.cfg.WarnWithin))
	}
	return out
}

func (v view) info(now time.Time, warnWithin time.Duration) Info {
	in := Info{Name: v.name, File: v.file, Problem: v.problem}
	if v.cert == nil {
		return in
	}
	leaf := v.cert.Leaf
	left := leaf.NotAfter.Sub(now)
	in.DNSNames = slices.Clone(leaf.DNSNames)
	in.Issuer = issuerName(leaf)
	in.NotBefore, in.NotAfter = leaf.NotBefore, leaf.NotAfter
	in.DaysLeft = daysLeft(left)
	in.LoadedAt = v.loadedAt
	in.Default = v.isDefault
	in.ExpiresSoon = left < warnWithin
	return in
}

// issuerName is c's issuer's common name, or its full DN.
func issuerName(c *x509.Certificate) string {
	if c.Issuer.CommonName != "" {
		return c.Issuer.CommonName
	}
	return c.Issuer.String()
}

// daysLeft is left in whole days, rounded down.
func daysLeft(left time.Duration) int {
	return int(math.Floor(left.Hours() / 24))
}
