package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/herd-cluster/herd/pkg/api"
)

func autoscaleCommand() *cli.Command {
	return &cli.Command{
		Name:      "autoscale",
		Usage:     "let the gateways scale a service with its load (requests in flight per replica)",
		ArgsUsage: "SERVICE --min N --max N --target-inflight X | SERVICE --off",
		Description: `clusterctl autoscale predictor --min 3 --max 48 --target-inflight 8
   clusterctl autoscale predictor --off
   clusterctl autoscale status [--json]
The deciding gateway (the alive one with the lowest name) reads the requests in flight at
every gateway, averaged over a stable window (60s) and a panic window (6s: a load that
doubles scales up at once), and scales the service between min and max; down only after a
stabilization (5m), within a tolerance band (10%), with a flap budget. Frozen while a rollout
of the service runs. The settings are kept by every gateway. Flags may come before or after
the service. Exit 2: bad settings, an unknown service, or --off when autoscaling is not on.`,
		Flags: autoscaleFlags(),
		Action: func(c *cli.Context) error {
			c, args, err := interspersed(c)
			if err != nil {
				return cli.Exit(err.Error()+" (see clusterctl autoscale --help)", exitError)
			}
			return autoscale(c, args)
		},
		Subcommands: []*cli.Command{{
			Name: "status", Usage: "every autoscaled service: settings, current and desired count, signal, last decisions",
			Flags: []cli.Flag{jsonFlag},
			Action: func(c *cli.Context) error {
				st, err := client(c).AutoscaleStatus(c.Context)
				if err != nil {
					return err
				}
				if c.Bool("json") {
					return printJSON(c.App.Writer, st)
				}
				return printAutoscaleStatus(c.App.Writer, st)
			},
		}},
	}
}

// autoscaleFlags are the settings' flags, each also HERD_AUTOSCALE_<FLAG>
// (HERD_AUTOSCALE_TARGET_INFLIGHT).
func autoscaleFlags() []cli.Flag {
	env := func(name string) []string {
		return []string{"HERD_AUTOSCALE_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))}
	}
	integer := func(name, usage string) cli.Flag { return &cli.IntFlag{Name: name, EnvVars: env(name), Usage: usage} }
	float := func(name, usage string) cli.Flag {
		return &cli.Float64Flag{Name: name, EnvVars: env(name), Usage: usage}
	}
	duration := func(name, usage string) cli.Flag {
		return &cli.DurationFlag{Name: name, EnvVars: env(name), Usage: usage}
	}
	return []cli.Flag{
		integer("min", "fewest replicas (0 allowed)"),
		integer("max", "most replicas"),
		float("target-inflight", "requests in flight per replica to aim at"),
		&cli.BoolFlag{Name: "off", EnvVars: env("off"), Usage: "turn autoscaling off (the count stays)"},
		duration("stable-window", "window of the load's average (default 60s)"),
		duration("panic-window", "short window that scales up at once (default 6s)"),
		float("panic-threshold", "the panic window's desire over the count that scales up at once (default 2)"),
		duration("scale-down-stabilization", "down only to the highest count asked within it (default 5m)"),
		duration("up-cooldown", "after a scale-up, no other before it passes (default 0)"),
		duration("down-cooldown", "after a scale-down, no other before it passes (default 0)"),
		float("tolerance", "band around the count in which the load changes nothing (default 0.1)"),
		integer("flap-budget", "changes of direction allowed per flap window (default 2)"),
		duration("flap-window", "the window of the flap budget (default 10m)"),
		jsonFlag,
	}
}

func autoscale(c *cli.Context, args []string) error {
	if len(args) != 1 {
		return cli.Exit("usage: clusterctl autoscale SERVICE --min N --max N --target-inflight X, or SERVICE --off", exitError)
	}
	req := api.AutoscaleRequest{Off: c.Bool("off")}
	if !req.Off {
		for _, f := range []string{"max", "target-inflight"} {
			if !c.IsSet(f) {
				return cli.Exit("autoscale: --"+f+" is required (or --off)", exitError)
			}
		}
		dur := func(name string) string {
			if !c.IsSet(name) {
				return ""
			}
			return c.Duration(name).String()
		}
		req.AutoscaleSettings = api.AutoscaleSettings{
			Min: c.Int("min"), Max: c.Int("max"), TargetInFlight: c.Float64("target-inflight"),
			StableWindow: dur("stable-window"), PanicWindow: dur("panic-window"),
			ScaleDownStabilization: dur("scale-down-stabilization"), UpCooldown: dur("up-cooldown"),
			DownCooldown: dur("down-cooldown"), FlapWindow: dur("flap-window"),
			Tolerance: c.Float64("tolerance"), FlapBudget: c.Int("flap-budget"), PanicThreshold: c.Float64("panic-threshold"),
		}
	}
	res, err := client(c).Autoscale(c.Context, args[0], req)
	if err != nil {
		return cli.Exit("autoscale refused: "+describe(err), exitError)
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, res)
	}
	w := c.App.Writer
	if res.Off {
		fmt.Fprintf(w, "autoscaling of %s is off; its count stays where it is\n", res.Service)
	} else {
		s := res.Settings
		fmt.Fprintf(w, "autoscaling %s: %d to %d replicas, %g requests in flight each (windows %s stable, %s panic; down after %s)\n",
			res.Service, s.Min, s.Max, s.TargetInFlight, s.StableWindow, s.PanicWindow, s.ScaleDownStabilization)
	}
	if len(res.Missing) > 0 {
		fmt.Fprintf(w, "not taken yet by %s (they learn it when they next start)\n", strings.Join(res.Missing, ", "))
	}
	return nil
}

func printAutoscaleStatus(w io.Writer, st api.AutoscaleStatus) error {
	if len(st.Services) == 0 {
		_, err := fmt.Fprintln(w, "no service is autoscaled")
		return err
	}
	fmt.Fprintf(w, "decided by gateway %s", st.Decider)
	if st.Decider != st.Gateway {
		fmt.Fprintf(w, " (this is %s: the figures are the deciding gateway's)", st.Gateway)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tMIN\tMAX\tTARGET\tCURRENT\tDESIRED\tIN FLIGHT (STABLE/PANIC)\tPER REPLICA\tSTATE")
	for _, s := range st.Services {
		state := "steady"
		switch {
		case s.Frozen != "":
			state = "frozen: " + s.Frozen
		case s.Panicking:
			state = "panic"
		case !s.Deciding:
			state = "-"
		}
		figures := func(v string) string {
			if !s.Deciding {
				return "-"
			}
			return v
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%g\t%s\t%s\t%s\t%s\t%s\n", s.Service, s.Settings.Min, s.Settings.Max, s.Settings.TargetInFlight,
			figures(fmt.Sprint(s.Current)), figures(fmt.Sprint(s.Desired)),
			figures(fmt.Sprintf("%.1f / %.1f", s.Stable, s.Panic)), figures(fmt.Sprintf("%.2f", s.PerReplica)), state)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range st.Services {
		if len(s.Events) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s, last decisions:\n", s.Service)
		for _, e := range s.Events {
			line := fmt.Sprintf("  %s  %s", e.At.Local().Format(time.TimeOnly), e.Reason)
			if e.Error != "" {
				line += " — failed: " + e.Error
			}
			fmt.Fprintln(w, line)
		}
	}
	return nil
}
