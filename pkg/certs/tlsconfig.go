package certs

import (
	"crypto/tls"
	"slices"
)

// cipherSuites are the TLS 1.2 suites TLSConfig allows: ECDHE key exchange
// (forward secrecy) with an AEAD, for ECDSA and RSA certificates. TLS 1.3
// suites are not configurable and all modern. crypto/tls orders them by
// its own preference (AES-GCM with AES hardware, else ChaCha20-Poly1305).
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// curves are the key exchanges TLSConfig allows: the hybrid post-quantum
// X25519MLKEM768 (crypto/tls's default first choice since Go 1.24, TLS 1.3
// only), then X25519, then P-256. crypto/tls ignores the order of the list
// and applies its own, which is this one.
var curves = []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256}

// nextProtos are the application protocols TLSConfig offers by ALPN, in
// the server's order of preference.
var nextProtos = []string{"h2", "http/1.1"}

// TLSConfig returns a server configuration that takes its certificates
// from s: TLS 1.2 and 1.3 only, the TLS 1.2 cipher suites limited to ECDHE
// with AES-GCM or ChaCha20-Poly1305, key exchange by X25519MLKEM768,
// X25519 or P-256, and "h2" then "http/1.1" offered by ALPN.
//
// Session resumption is on, with ticket keys crypto/tls makes and rotates
// itself in the returned Config (see the package comment): build the
// Config once per listener and keep it, for resumption to work across
// connections.
func (s *Store) TLSConfig() *tls.Config {
	return &tls.Config{
		GetCertificate:   s.GetCertificate,
		MinVersion:       tls.VersionTLS12,
		MaxVersion:       tls.VersionTLS13,
		CipherSuites:     slices.Clone(cipherSuites),
		CurvePreferences: slices.Clone(curves),
		NextProtos:       slices.Clone(nextProtos),
	}
}
