// Package cliutil is what every Herd program's command line shares: the
// version, how errors reach the terminal and become exit codes, and shell
// completion. It imports no part of the cluster (no membership, no logger),
// so clusterctl links only the standard library and urfave/cli with it; the
// daemons' flags and wiring are in internal/daemon.
package cliutil

import (
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
)

// Version is set at build time: -ldflags "-X .../internal/cliutil.Version=1.2.3".
var Version = "dev"

// usageExits makes a bad flag exit with 2, like a bad value does.
func usageExits(app *cli.App) {
	onUsage := func(c *cli.Context, err error, _ bool) error {
		return cli.Exit(fmt.Sprintf("%v (see %s --help)", err, c.Command.HelpName), 2)
	}
	app.OnUsageError = func(c *cli.Context, err error, sub bool) error {
		return cli.Exit(fmt.Sprintf("%v (see %s --help)", err, app.Name), 2)
	}
	var walk func([]*cli.Command)
	walk = func(cmds []*cli.Command) {
		for _, cmd := range cmds {
			if cmd.OnUsageError == nil {
				cmd.OnUsageError = onUsage
			}
			walk(cmd.Subcommands)
		}
	}
	walk(app.Commands)
}

// Main runs app and turns an error into one line on stderr and exit code 1
// (2 for usage errors, which urfave/cli reports itself).
func Main(app *cli.App) {
	app.Version = Version
	app.EnableBashCompletion = true
	app.Commands = append(app.Commands, completionCommand(app.Name))
	usageExits(app)
	// Errors come back here to be printed once, prefixed with the program's
	// name (urfave/cli would print an ExitCoder's message and exit itself).
	app.ExitErrHandler = func(*cli.Context, error) {}
	if err := app.Run(os.Args); err != nil {
		if err.Error() != "" {
			fmt.Fprintf(os.Stderr, "%s: %v\n", app.Name, err)
		}
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			os.Exit(ec.ExitCode())
		}
		os.Exit(1)
	}
}
