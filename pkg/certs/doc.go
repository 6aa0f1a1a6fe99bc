// Package certs holds the certificates the gateway's TLS listener serves:
// it loads them from files, picks one by the name a client asks for (SNI),
// reloads them as their files change, and reports them (Certs, metrics)
// with their expiry. It imports the standard library, go-hclog and the
// Prometheus client only.
//
// # Layout
//
// Config.Dir holds, side by side:
//
//	NAME.crt and NAME.key                  a certificate (leaf first, then
//	                                       intermediates) and its key, PEM
//	NAME/fullchain.pem and NAME/privkey.pem the layout certbot writes under
//	                                       /etc/letsencrypt/live
//
// Symbolic links are followed (certbot's live files are links into
// ../../archive, Kubernetes' secret files are links into ..data). Names
// starting with "." are skipped, and so are other files and folders with
// neither file. A certificate file without its key file, or the reverse, is
// an error naming it. Config.Pairs adds pairs file by file, named after the
// certificate file without its extension (or its folder, for
// fullchain.pem). NAME identifies a pair in Info, in metrics and in
// Config.Default; two pairs may not share one.
//
// Keys are PKCS #8, PKCS #1 (RSA) or SEC 1 (EC), unencrypted. Both ECDSA
// and RSA work; ECDSA P-256 is the cheaper: a full TLS 1.3 handshake, both
// ends in one process, takes about half the CPU time it takes with RSA 2048
// (BenchmarkHandshake: 1.25 ms against 2.47 ms on a 2-core AMD EPYC).
//
// # Choosing a certificate
//
// For a client's server name, GetCertificate returns, in this order: the
// certificate whose DNS names (SANs) hold it, compared without case; the
// certificate with a wildcard for its first label (*.example.com covers
// a.example.com, not a.b.example.com nor example.com); the default, which
// is Config.Default or else the first pair by NAME at Load (a pair added
// later does not take over). A client sending no name, or an IP address,
// gets the default. A certificate's common name is not a name it covers, as
// for every current client. When several certificates cover a name at the
// same step, the one expiring last is chosen (on a tie, the first by NAME):
// a renewed certificate installed beside the old one takes over at once.
// The choice does not depend on the client's abilities (an old client
// without ECDSA does not get an RSA certificate instead).
//
// A handshake loads one atomic pointer to an immutable index and looks the
// name up in two maps, without a lock; a reload builds a new index and
// swaps the pointer, so handshakes in flight are unaffected.
//
// # Reloading
//
// Load refuses to start on any bad pair (see Load). After that, Reload (on
// SIGHUP) and Run (every Config.ReloadInterval, 1 s by default) read every
// file again and compare the bytes with those served, so a change is seen
// whatever made it: a file written in place, a link swapped, a folder
// renamed. A changed pair is checked as at Load before it replaces the one
// served; if it does not parse, its key does not match, or it has expired
// or is not valid yet, it is refused and the one served kept. A refusal
// is logged once for the same files (one line naming the file and why),
// counted in herd_gateway_tls_reloads_total{result="refused"} and shown in
// Info.Problem until the files are fixed. Run reports a bad pair only once
// it reads the same on two polls, so a renewal caught between its two files
// is no false alarm. A new pair is added. A pair whose files are removed
// keeps being served, with a warning and an Info.Problem, until a restart:
// a missing file is more often a deployment half done than a wish to stop
// serving a name, and dropping it would hand that name's clients the
// default certificate.
//
// # Expiry
//
// A certificate served that expires within Config.WarnWithin (14 days by
// default), or has expired for want of a valid replacement, is logged at
// most once a day and flagged in Info.ExpiresSoon;
// herd_gateway_tls_cert_expiry_seconds{name} says how long it has left.
//
// # Session resumption
//
// TLSConfig leaves session tickets on, with crypto/tls's automatic keys
// (read in crypto/tls's common.go, Config.ticketKeys, as of Go 1.26): a
// random key is made at the first handshake and a new one every 24 hours
// (ticketKeyRotation); tickets are issued with the newest and accepted
// under any key less than 7 days old (ticketKeyLifetime); a ticket whose
// secret is more than 7 days old is not resumed (maxSessionTicketLifetime;
// in TLS 1.2 that counts from the full handshake, TLS 1.3 makes a fresh
// secret, and a fresh ECDHE exchange, at every resumption). The keys live
// in memory in the *tls.Config:
// a restart, or another gateway, means a full handshake. A resumed session
// skips GetCertificate (the client already verified the certificate), so a
// reload applies to full handshakes only.
package certs
