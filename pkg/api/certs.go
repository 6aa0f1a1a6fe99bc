package api

import (
	"context"
	"time"
)

// Cert is one certificate a gateway's TLS listener serves, as GET /v1/certs
// shows it.
type Cert struct {
	// Name is the pair's name: its certificate file's base without the
	// extension, or its folder's name for certbot's fullchain.pem.
	Name string `json:"name"`
	// DNSNames are the names the certificate covers (its DNS SANs).
	DNSNames []string `json:"dns_names"`
	// Issuer is the issuer's common name, or its full DN if it has none.
	Issuer    string    `json:"issuer,omitempty"`
	NotBefore time.Time `json:"not_before,omitzero"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	// DaysLeft is how many whole days remain until NotAfter; negative once
	// it has passed.
	DaysLeft int `json:"days_left"`
	// File is the certificate file.
	File string `json:"file"`
	// LoadedAt is when the certificate served was read; zero for a pair
	// that never loaded.
	LoadedAt time.Time `json:"loaded_at,omitzero"`
	// Default: served to clients no other certificate matches.
	Default bool `json:"default,omitempty"`
	// ExpiresSoon: NotAfter is within the gateway's warning window (14 days
	// by default), or past.
	ExpiresSoon bool `json:"expires_soon,omitempty"`
	// Problem is why the pair's files were last refused (the certificate
	// served is then the previous one) or are missing; empty when the
	// certificate served is what the files hold.
	Problem string `json:"problem,omitempty"`
}

// Certs returns the certificates of the gateway's TLS listener (GET
// /v1/certs), sorted by name. A gateway without --tls-listen answers 404
// (a StatusError).
func (c *Client) Certs(ctx context.Context) ([]Cert, error) {
	var out []Cert
	return out, c.get(ctx, "/v1/certs", &out)
}
