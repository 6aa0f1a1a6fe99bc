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
	app := &cli.App{
		Name:  "clusterctl",
		Usage: "inspect and operate a Herd cluster through a gateway's admin API",
		Description: `Exit codes:
   0  done
   1  a rollout or rollback failed, was reverted or was aborted; a key operation failed on a member;
      a scale an agent did not take, or (--wait) did not reach in time
   2  it could not be done: bad usage or flags, the admin API unreachable, a wrong or missing token,
      a request the gateway refused (unknown image, a rollout already running, a count beyond the
      hosts' room, ...)`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "addr", Value: "http://127.0.0.1:7070", EnvVars: []string{"HERD_ADDR"},
				Usage: "admin API of a gateway (or agent)"},
			&cli.StringFlag{Name: "token", EnvVars: []string{"HERD_TOKEN"}, Usage: "admin API bearer token"},
			&cli.StringFlag{Name: "ca-cert", EnvVars: []string{"HERD_CA_CERT"},
				Usage: "PEM certificate(s) to trust for an https --addr (the admin API's --admin-tls-cert)"},
		},
		Commands: []*cli.Command{membersCommand(), backendsCommand(), routesCommand(), certsCommand(), forceLeaveCommand(),
			rolloutCommand(), rollbackCommand(), scaleCommand(), autoscaleCommand(), keygenCommand(), keysCommand()},
	}
	couldNotBeDone(app.Commands)
	return app
}

// couldNotBeDone makes every error of a command that does not choose its
// own exit code exit with 2: nothing was done (unreachable, bad token,
// refused). Only an operation that ran and failed exits with 1.
func couldNotBeDone(cmds []*cli.Command) {
	for _, cmd := range cmds {
		couldNotBeDone(cmd.Subcommands)
		if action := cmd.Action; action != nil {
			cmd.Action = func(c *cli.Context) error {
				err := action(c)
				if _, chosen := err.(cli.ExitCoder); err == nil || chosen {
					return err
				}
				return cli.Exit(describe(err), exitError)
			}
		}
	}
}
