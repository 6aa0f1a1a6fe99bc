package certs

import (
	"crypto/tls"
	"net/netip"
	"strings"
	"time"
)

// snapshot is what handshakes and readers see of the store. It is never
// changed once published: a reload builds a new one and swaps the pointer.
type snapshot struct {
	exact map[string]*tls.Certificate // by lower-case DNS name
	wild  map[string]*tls.Certificate // "*.example.com" by "example.com"
	def   *tls.Certificate
	pairs []view // by NAME
}

// view is one pair as published: its certificate (nil if it never loaded)
// and the problem of its last reload.
type view struct {
	name, file string
	cert       *tls.Certificate
	loadedAt   time.Time
	problem    string
	isDefault  bool
}

// newSnapshot indexes the certificates of pairs, sorted by NAME. A DNS name
// several certificates cover goes to the one expiring last; on a tie, to
// the first by NAME.
func newSnapshot(pairs []view, defaultName string) *snapshot {
	s := &snapshot{exact: map[string]*tls.Certificate{}, wild: map[string]*tls.Certificate{}, pairs: pairs}
	for i := range pairs {
		v := &pairs[i]
		if v.cert == nil {
			continue
		}
		if v.name == defaultName {
			s.def, v.isDefault = v.cert, true
		}
		for _, name := range v.cert.Leaf.DNSNames {
			m, key := s.exact, normalize(name)
			if rest, ok := strings.CutPrefix(key, "*."); ok {
				m, key = s.wild, rest
			}
			if key == "" {
				continue
			}
			if old := m[key]; old != nil && !old.Leaf.NotAfter.Before(v.cert.Leaf.NotAfter) {
				continue
			}
			m[key] = v.cert
		}
	}
	return s
}

// lookup returns the certificate for a client's server name: the one
// naming it exactly, else a wildcard covering its first label, else the
// default. No name, or an IP address, gets the default.
func (s *snapshot) lookup(serverName string) *tls.Certificate {
	if serverName == "" || isIP(serverName) {
		return s.def
	}
	name := normalize(serverName)
	if c := s.exact[name]; c != nil {
		return c
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		if c := s.wild[name[i+1:]]; c != nil {
			return c
		}
	}
	return s.def
}

// normalize lower-cases a DNS name and drops its trailing dot. It does not
// allocate for a name that is lower case already.
func normalize(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

// isIP reports whether name is an IP address; top-level domains are never
// all digits, so most names are told apart by their last byte.
func isIP(name string) bool {
	if last := name[len(name)-1]; strings.IndexByte(name, ':') < 0 && (last < '0' || last > '9') {
		return false
	}
	_, err := netip.ParseAddr(name)
	return err == nil
}
