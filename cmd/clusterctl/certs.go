package main

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/herd-cluster/herd/pkg/api"
)

func certsCommand() *cli.Command {
	return &cli.Command{
		Name:  "certs",
		Usage: "list the certificates of the gateway's TLS listener: names, issuer, expiry, file, when loaded, problem",
		Description: "A problem is a replacement refused (it does not parse, its key does not match, or it expired):\n" +
			"   the certificate listed, loaded earlier, is still the one served. \"expires soon\" is within 14 days.",
		Flags: []cli.Flag{jsonFlag},
		Action: func(c *cli.Context) error {
			list, err := client(c).Certs(c.Context)
			var se *api.StatusError
			if errors.As(err, &se) && se.Status == http.StatusNotFound {
				return cli.Exit("this gateway serves no TLS (it was started without --tls-listen)", exitError)
			}
			if err != nil {
				return err
			}
			return output(c, list, certRows)
		},
	}
}

func certRows(list []api.Cert) [][]string {
	rows := [][]string{{"NAME", "DNS NAMES", "ISSUER", "NOT-AFTER", "DAYS-LEFT", "FILE", "LOADED-AT", "PROBLEM"}}
	for _, in := range list {
		name := in.Name
		if in.Default {
			name += " (default)"
		}
		problem := in.Problem
		if in.ExpiresSoon && in.DaysLeft >= 0 {
			problem = joinNonEmpty("expires soon", problem)
		} else if in.ExpiresSoon {
			problem = joinNonEmpty("expired", problem)
		}
		days := "-"
		if !in.NotAfter.IsZero() {
			days = fmt.Sprint(in.DaysLeft)
		}
		rows = append(rows, []string{name, dash(strings.Join(in.DNSNames, ",")), dash(in.Issuer), timeOrDash(in.NotAfter),
			days, in.File, timeOrDash(in.LoadedAt), dash(problem)})
	}
	return rows
}

func timeOrDash(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func joinNonEmpty(a, b string) string {
	if b == "" {
		return a
	}
	return a + "; " + b
}
