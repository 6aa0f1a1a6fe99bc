package main

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/herd-cluster/herd/internal/gatewayd"
	"github.com/herd-cluster/herd/pkg/balancer"
	"github.com/herd-cluster/herd/pkg/certs"
)

// tlsFlags are the flags of the TLS listener and of HTTP/2 in clear.
func tlsFlags(d balancer.Config) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "tls-listen", EnvVars: []string{"HERD_TLS_LISTEN"},
			Usage: "client traffic address over TLS (HTTP/2 and HTTP/1.1 by ALPN), with --tls-cert-dir or --tls-cert"},
		&cli.StringFlag{Name: "tls-cert-dir", EnvVars: []string{"HERD_TLS_CERT_DIR"},
			Usage: "certificates for --tls-listen: every NAME.crt with NAME.key, and NAME/fullchain.pem with NAME/privkey.pem; changes are picked up within 2 s"},
		&cli.StringSliceFlag{Name: "tls-cert", EnvVars: []string{"HERD_TLS_CERT"},
			Usage: "a PEM certificate file (leaf, then intermediates) for --tls-listen, with its --tls-key; repeatable"},
		&cli.StringSliceFlag{Name: "tls-key", EnvVars: []string{"HERD_TLS_KEY"},
			Usage: "the PEM private key file of the --tls-cert in the same position; repeatable"},
		&cli.StringFlag{Name: "tls-default-cert", EnvVars: []string{"HERD_TLS_DEFAULT_CERT"},
			Usage: "the NAME of the certificate for clients sending no server name, or one no certificate covers (default: the first by NAME)"},
		&cli.DurationFlag{Name: "tls-handshake-timeout", Value: d.TLSHandshakeTimeout, EnvVars: []string{"HERD_TLS_HANDSHAKE_TIMEOUT"},
			Usage: "how long a client may take to complete its TLS handshake"},
		&cli.BoolFlag{Name: "redirect-https", EnvVars: []string{"HERD_REDIRECT_HTTPS"},
			Usage: "answer requests on --listen with 308 to the same URL on --tls-listen (except the health path)"},
		&cli.DurationFlag{Name: "hsts", EnvVars: []string{"HERD_HSTS"},
			Usage: "send Strict-Transport-Security with this max-age on answers over TLS, such as 8760h (0: none)"},
		&cli.BoolFlag{Name: "h2c", EnvVars: []string{"HERD_H2C"},
			Usage: "also serve HTTP/2 in clear (prior knowledge) on --listen"},
	}
}

// applyTLS reads the TLS flags into the balancer's and the process's
// configuration. A flag without the others it needs is a usage error.
func applyTLS(c *cli.Context, bc *balancer.Config, gc *gatewayd.Config) error {
	bc.H2C = c.Bool("h2c")
	if bc.TLSHandshakeTimeout = c.Duration("tls-handshake-timeout"); bc.TLSHandshakeTimeout <= 0 {
		return usage("--tls-handshake-timeout %s: want more than 0", bc.TLSHandshakeTimeout)
	}
	listen, dir := c.String("tls-listen"), c.String("tls-cert-dir")
	certFiles, keyFiles := c.StringSlice("tls-cert"), c.StringSlice("tls-key")
	if listen == "" {
		for _, name := range []string{"tls-cert-dir", "tls-cert", "tls-key", "tls-default-cert", "redirect-https", "hsts"} {
			if c.IsSet(name) {
				return usage("--%s: only with --tls-listen", name)
			}
		}
		return nil
	}
	_, port, err := net.SplitHostPort(listen)
	p, perr := strconv.Atoi(port)
	if err != nil || perr != nil || p < 0 || p > 65535 {
		return usage("--tls-listen %q: want [host]:port", listen)
	}
	if dir == "" && len(certFiles) == 0 && len(keyFiles) == 0 {
		return usage("--tls-listen: the certificates too: --tls-cert-dir DIR, or --tls-cert FILE --tls-key FILE")
	}
	if len(certFiles) != len(keyFiles) {
		return usage("--tls-cert and --tls-key go in pairs (%d certificates, %d keys)", len(certFiles), len(keyFiles))
	}
	if d := c.Duration("hsts"); d < 0 || d > 0 && d < time.Second {
		return usage("--hsts %s: want 0 (none) or at least 1s", d)
	}
	bc.RedirectHTTPS, bc.HSTS = c.Bool("redirect-https"), c.Duration("hsts")
	if p != 0 { // port 0 (any free port, for tests): redirects go to 443
		bc.HTTPSPort = p
	}

	cc := certs.DefaultConfig()
	cc.Dir, cc.Default = dir, c.String("tls-default-cert")
	for i := range certFiles {
		cc.Pairs = append(cc.Pairs, certs.Pair{Cert: certFiles[i], Key: keyFiles[i]})
	}
	gc.TLSListen, gc.TLSListenName, gc.Certs = listen, "--tls-listen", cc
	switch {
	case dir == "":
		gc.CertsName = "--tls-cert"
	case len(certFiles) == 0:
		gc.CertsName = "--tls-cert-dir"
	default:
		gc.CertsName = "--tls-cert-dir/--tls-cert"
	}
	return nil
}

// usage is a usage error: one line, exit code 2.
func usage(format string, args ...any) error {
	return cli.Exit(fmt.Sprintf(format, args...), 2)
}
