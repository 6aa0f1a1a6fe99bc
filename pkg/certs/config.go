package certs

import (
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
)

// Pair names a certificate file and its private key file, both PEM. The
// certificate file holds the leaf first, then any intermediates.
type Pair struct {
	Cert, Key string
}

// Config configures a Store. DefaultConfig documents each default; a
// field's zero value means what its comment says.
type Config struct {
	// Dir holds certificate pairs: NAME.crt with NAME.key, and folders
	// NAME/ with fullchain.pem and privkey.pem (certbot's live/ layout).
	// Symbolic links are followed; names starting with "." are skipped.
	// Empty: no directory, Pairs only.
	Dir string
	// Pairs are certificate pairs named one by one, besides Dir's. A pair
	// is named after its certificate file without its extension, or after
	// the folder holding it when that file is fullchain.pem.
	Pairs []Pair
	// Default is the NAME of the certificate served to a client that sends
	// no server name, or one no certificate covers. Empty: the first
	// certificate by NAME at Load.
	Default string
	// ReloadInterval is how often Run reads the files again. Zero: 1 s.
	ReloadInterval time.Duration
	// WarnWithin is how close to its expiry a certificate is logged (at
	// most once a day) and flagged in Info.ExpiresSoon. Zero: 14 days.
	WarnWithin time.Duration
	// Registerer, if set, receives the store's Prometheus metrics.
	Registerer prometheus.Registerer
	// Logger receives the store's logs. Default: hclog's default logger.
	Logger hclog.Logger
	// Now is the clock certificates are checked against. Default:
	// time.Now.
	Now func() time.Time
}

const (
	defaultReloadInterval = time.Second
	defaultWarnWithin     = 14 * 24 * time.Hour
	// warnEvery is how often a certificate close to its expiry is logged.
	warnEvery = 24 * time.Hour
)

// DefaultConfig returns a Config with the defaults documented on each field.
func DefaultConfig() Config {
	return Config{
		ReloadInterval: defaultReloadInterval,
		WarnWithin:     defaultWarnWithin,
		Logger:         hclog.Default(),
		Now:            time.Now,
	}
}

// withDefaults returns c with its zero fields set, or the first bad setting.
func (c Config) withDefaults() (Config, error) {
	switch {
	case c.ReloadInterval < 0:
		return c, fmt.Errorf("reload interval %s: must not be negative", c.ReloadInterval)
	case c.WarnWithin < 0:
		return c, fmt.Errorf("warn within %s: must not be negative", c.WarnWithin)
	}
	d := DefaultConfig()
	if c.ReloadInterval == 0 {
		c.ReloadInterval = d.ReloadInterval
	}
	if c.WarnWithin == 0 {
		c.WarnWithin = d.WarnWithin
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	for _, p := range c.Pairs {
		if p.Cert == "" || p.Key == "" {
			return c, fmt.Errorf("pair %q %q: want both a certificate and a key file", p.Cert, p.Key)
		}
	}
	return c, nil
}
