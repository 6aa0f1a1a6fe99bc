// Command clusterctl is the operator's client of a gateway's admin API.
package main

import (
	"github.com/urfave/cli/v2"

	"github.com/herd-cluster/herd/internal/cliutil"
)

func main() {
	cliutil.Main(newApp())
}

func newApp() *cli.App {
	return &cli.App{
		Name:  "clusterctl",
		Usage: "inspect and operate a Herd cluster through a gateway's admin API",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "addr", Value: "http://127.0.0.1:7070", EnvVars: []string{"HERD_ADDR"},
				Usage: "admin API of a gateway (or agent)"},
			&cli.StringFlag{Name: "token", EnvVars: []string{"HERD_TOKEN"}, Usage: "admin API bearer token"},
			&cli.StringFlag{Name: "ca-cert", EnvVars: []string{"HERD_CA_CERT"},
				Usage: "PEM certificate(s) to trust for an https --addr (the admin API's --admin-tls-cert)"},
		},
		Commands: []*cli.Command{membersCommand(), backendsCommand(), rolloutCommand(), rollbackCommand(), keygenCommand(), keysCommand()},
	}
}
