package certs

import (
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Store holds the certificates a TLS listener serves and reloads them as
// their files change. Its methods are safe for concurrent use.
type Store struct {
	cfg         Config
	log         hclog.Logger
	defaultName string
	snap        atomic.Pointer[snapshot]
	metrics     *metrics

	mu     sync.Mutex       // serializes reload passes; guards what follows
	pairs  map[string]*pair // by NAME
	logged map[string]string
}

// pair is the reload state of one NAME.
type pair struct {
	src      source
	cert     *tls.Certificate // the one served; nil if it never loaded
	sum      [32]byte         // of the files cert was read from
	loadedAt time.Time
	warnedAt time.Time // of cert's last expiry warning

	// A bad read is reported once it reads the same on two polls in a row:
	// pending is its first.
	pending    [32]byte
	hasPending bool
	refused    [32]byte // the bad read problem describes
	problem    string
}

// Load reads every pair of cfg.Dir and cfg.Pairs and returns a Store
// serving them. It fails, with one line naming the file at fault, when the
// directory does not exist or holds no pair, a certificate file has no key
// file or the reverse, two pairs share a NAME, a certificate does not
// parse, a key does not parse or does not match its certificate, a
// certificate has expired or is not valid yet, or cfg.Default names no
// pair.
func Load(cfg Config) (*Store, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Store{cfg: cfg, log: cfg.Logger.Named("tls"), pairs: map[string]*pair{}, logged: map[string]string{}}
	srcs, err := s.collect()
	if err != nil {
		return nil, err
	}
	if len(srcs) == 0 {
		if cfg.Dir == "" {
			return nil, errors.New("no certificate pair configured")
		}
		return nil, fmt.Errorf("%s: no certificate pair in it (want NAME%s with NAME%s, or NAME/%s with NAME/%s)",
			cfg.Dir, certExt, keyExt, chainFile, privFile)
	}
	now := cfg.Now()
	for _, src := range srcs {
		if p := s.pairs[src.name]; p != nil {
			return nil, fmt.Errorf("%s: name %q already taken by %s", src.cert, src.name, p.src.cert)
		}
		o := observe(src)
		if o.err != nil {
			return nil, o.err
		}
		cert, err := parsePair(src, o.certPEM, o.keyPEM, now)
		if err != nil {
			return nil, err
		}
		s.pairs[src.name] = &pair{src: src, cert: cert, sum: o.sum, loadedAt: now}
		s.logLoaded(src, cert, "certificate loaded")
	}
	if s.defaultName, err = s.chooseDefault(); err != nil {
		return nil, err
	}
	if s.metrics, err = newMetrics(s, cfg.Registerer); err != nil {
		return nil, err
	}
	s.publish()
	s.checkExpiry(now)
	return s, nil
}

// chooseDefault returns cfg.Default if a pair has that NAME, else the
// first NAME. Kept from then on: a pair added later does not take over.
func (s *Store) chooseDefault() (string, error) {
	names := make([]string, 0, len(s.pairs))
	for name := range s.pairs {
		names = append(names, name)
	}
	slices.Sort(names)
	switch {
	case s.cfg.Default == "":
		return names[0], nil
	case s.pairs[s.cfg.Default] == nil:
		return "", fmt.Errorf("default certificate %q: no certificate of that name (loaded: %s)",
			s.cfg.Default, strings.Join(names, ", "))
	}
	return s.cfg.Default, nil
}

// collect lists the pairs of Dir, then the explicit ones.
func (s *Store) collect() ([]source, error) {
	var srcs []source
	if s.cfg.Dir != "" {
		var err error
		if srcs, err = scanDir(s.cfg.Dir); err != nil {
			return nil, err
		}
	}
	for _, p := range s.cfg.Pairs {
		srcs = append(srcs, source{name: pairName(p.Cert), cert: p.Cert, key: p.Key})
	}
	return srcs, nil
}

// observation is what one read of a pair found.
type observation struct {
	src             source
	certPEM, keyPEM []byte
	err             error    // the pair is incomplete or a file unreadable
	removed         bool     // the pair is gone from the directory
	sum             [32]byte // of all the above
}

// observe reads src's files.
func observe(src source) observation {
	o := observation{src: src, err: src.err}
	if o.err == nil {
		o.certPEM, o.err = readFile(src.cert)
	}
	if o.err == nil {
		o.keyPEM, o.err = readFile(src.key)
	}
	h := sha256.New()
	for _, b := range [][]byte{[]byte(src.cert), o.certPEM, []byte(src.key), o.keyPEM} {
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	if o.err != nil {
		fmt.Fprintf(h, "error:%s", o.err)
	}
	h.Sum(o.sum[:0])
	return o
}

// GetCertificate returns the certificate for a client's server name: the
// one naming it exactly (without case), else the one whose wildcard covers
// its first label (*.example.com covers a.example.com, not a.b.example.com
// nor example.com), else the default. A client sending no name, or an IP
// address, gets the default. When several certificates cover a name, the
// one expiring last is chosen. It never fails and takes no lock: set it as
// tls.Config.GetCertificate, or use TLSConfig.
func (s *Store) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.snap.Load().lookup(hello.ServerName), nil
}

// publish swaps in a snapshot of the pairs as they are now. Called with mu
// held, or from Load.
func (s *Store) publish() {
	views := make([]view, 0, len(s.pairs))
	for name, p := range s.pairs {
		if p.cert == nil && p.problem == "" {
			continue // a new pair whose first bad read awaits a second poll
		}
		views = append(views, view{name: name, file: p.src.cert, cert: p.cert, loadedAt: p.loadedAt, problem: p.problem})
	}
	slices.SortFunc(views, func(a, b view) int { return strings.Compare(a.name, b.name) })
	s.snap.Store(newSnapshot(views, s.defaultName))
}

// logLoaded logs that cert was loaded from src.
func (s *Store) logLoaded(src source, cert *tls.Certificate, msg string) {
	s.log.Info(msg, "name", src.name, "file", src.cert, "dns_names", cert.Leaf.DNSNames,
		"issuer", issuerName(cert.Leaf), "not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
}

// logOnce logs msg at level under key unless the last message logged under
// key was the same.
func (s *Store) logOnce(key string, level hclog.Level, msg string, args ...any) {
	text := fmt.Sprint(msg, args)
	if s.logged[key] == text {
		return
	}
	s.logged[key] = text
	s.log.Log(level, msg, args...)
}
