package certs

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Run reads the files again every Config.ReloadInterval until ctx ends,
// as Reload does, except that a pair that fails is reported only once it
// reads the same on two polls in a row: a pair caught between the writes
// of its two files (certbot renews fullchain.pem, then privkey.pem) is
// taken at the next poll without a false alarm. A good pair is taken at
// the first poll.
func (s *Store) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.ReloadInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// Each problem is logged by the pass; the joined error only
			// repeats them.
			_ = s.pass(true)
		}
	}
}

// Reload reads every pair once (on SIGHUP, say). A pair whose files
// changed replaces the one served only if it is valid (see Load); if not,
// the one served is kept, the refusal is logged (once for the same
// files), counted, and shown in its Info.Problem. A new pair is added. A
// pair whose files are gone keeps being served, with a warning: a missing
// file is more often a deployment half done than a wish to stop serving
// a name, and dropping it would hand its clients the default certificate;
// restart to drop it. The error joins the problems of every pair, one line
// each; nil when all are served as their files say.
func (s *Store) Reload() error { return s.pass(false) }

// pass reads every pair, replaces those changed and valid, and publishes
// the result. With settle, a bad read is reported only when it is the
// same as the pair's previous one.
func (s *Store) pass(settle bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	var errs []error
	srcs, err := s.collect()
	if err != nil {
		s.logOnce("dir", hclog.Error, "certificate directory unreadable; keeping the certificates loaded", "error", err)
		errs = append(errs, err)
	} else {
		delete(s.logged, "dir")
	}
	byName, dupErrs := s.dedupe(srcs)
	errs = append(errs, dupErrs...)

	changed := false
	for _, name := range sortedKeys(byName) {
		p := s.pairs[name]
		if p == nil {
			p = &pair{src: byName[name]}
			s.pairs[name] = p
		}
		c, err := s.update(p, observe(byName[name]), now, settle)
		changed = changed || c
		errs = append(errs, err)
	}
	for _, name := range sortedKeys(s.pairs) {
		if _, ok := byName[name]; ok {
			continue
		}
		p := s.pairs[name]
		if p.cert == nil { // never served: nothing to keep
			delete(s.pairs, name)
			changed = true
			continue
		}
		c, err := s.update(p, removed(p), now, settle)
		changed = changed || c
		errs = append(errs, err)
	}
	if changed {
		s.publish()
	}
	s.checkExpiry(now)
	return errors.Join(errs...)
}

// dedupe keeps one source per NAME: the one served, else the first by
// certificate path. The others are logged once and returned as errors.
func (s *Store) dedupe(srcs []source) (map[string]source, []error) {
	byName := make(map[string]source, len(srcs))
	var errs []error
	for _, src := range srcs {
		prev, ok := byName[src.name]
		if !ok {
			byName[src.name] = src
			continue
		}
		keep, drop := prev, src
		if p := s.pairs[src.name]; p != nil && p.cert != nil && p.src.cert == src.cert {
			keep, drop = src, prev
		}
		byName[src.name] = keep
		err := fmt.Errorf("%s: name %q already taken by %s; ignored", drop.cert, drop.name, keep.cert)
		s.logOnce("dup "+drop.cert, hclog.Error, "certificate ignored", "error", err)
		errs = append(errs, err)
	}
	return byName, errs
}

// removed is the observation of a pair gone from the directory, or whose
// files are both gone.
func removed(p *pair) observation {
	o := observation{src: p.src, removed: true,
		err: fmt.Errorf("%s: removed; still serving the certificate loaded at %s until a restart",
			p.src.cert, p.loadedAt.UTC().Format(time.RFC3339))}
	o.sum = sha256.Sum256([]byte("removed\x00" + p.src.cert))
	return o
}

// update applies one observation to p and reports whether what is
// published changed, and p's problem if it has one.
func (s *Store) update(p *pair, o observation, now time.Time, settle bool) (changed bool, err error) {
	if !o.removed && o.err != nil && bothMissing(o.src) && p.cert != nil {
		o = removed(p) // an explicit pair whose files are gone
	}
	if p.cert != nil && o.err == nil && o.sum == p.sum { // as served
		p.hasPending = false
		if p.problem == "" {
			return false, nil
		}
		s.log.Info("certificate files are back to the ones served", "name", o.src.name, "file", o.src.cert)
		p.src, p.problem, p.refused = o.src, "", [32]byte{}
		return true, nil
	}
	var cert *tls.Certificate
	err = o.err
	if err == nil {
		cert, err = parsePair(o.src, o.certPEM, o.keyPEM, now)
	}
	if err == nil {
		verb := "certificate replaced"
		if p.cert == nil {
			verb = "certificate loaded"
		}
		*p = pair{src: o.src, cert: cert, sum: o.sum, loadedAt: now}
		s.logLoaded(o.src, cert, verb)
		s.metrics.loaded.Inc()
		return true, nil
	}
	if p.problem == err.Error() && p.refused == o.sum { // reported already
		return false, err
	}
	if settle && (!p.hasPending || p.pending != o.sum) {
		p.pending, p.hasPending = o.sum, true
		return false, nil
	}
	p.hasPending, p.refused, p.problem = false, o.sum, err.Error()
	s.metrics.refused.Inc()
	switch {
	case o.removed:
		s.log.Warn("certificate files removed; still serving the last good ones", "name", o.src.name, "file", o.src.cert)
	case p.cert != nil:
		s.log.Error("certificate refused; still serving the last good one", "name", o.src.name, "error", err)
	default:
		s.log.Error("certificate refused", "name", o.src.name, "error", err)
	}
	return true, err
}

// bothMissing reports whether neither file of src exists.
func bothMissing(src source) bool { return !exists(src.cert) && !exists(src.key) }

// checkExpiry logs the certificates served that expire within WarnWithin,
// or have expired, at most once every warnEvery each.
func (s *Store) checkExpiry(now time.Time) {
	for _, name := range sortedKeys(s.pairs) {
		p := s.pairs[name]
		if p.cert == nil {
			continue
		}
		left := p.cert.Leaf.NotAfter.Sub(now)
		if left >= s.cfg.WarnWithin || (!p.warnedAt.IsZero() && now.Sub(p.warnedAt) < warnEvery) {
			continue
		}
		p.warnedAt = now
		notAfter := p.cert.Leaf.NotAfter.UTC().Format(time.RFC3339)
		if left <= 0 {
			s.log.Error("certificate expired; still serving it for want of a valid replacement",
				"name", name, "file", p.src.cert, "not_after", notAfter)
			continue
		}
		s.log.Warn("certificate expires soon", "name", name, "file", p.src.cert, "not_after", notAfter,
			"days_left", daysLeft(left))
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
