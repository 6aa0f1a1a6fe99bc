package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/herd-cluster/herd/pkg/api"
)

var jsonFlag = &cli.BoolFlag{Name: "json", Usage: "print JSON for scripts"}

func client(c *cli.Context) *api.Client {
	cl := api.NewClient(c.String("addr"), c.String("token"))
	if ca := c.String("ca-cert"); ca != "" {
		withCA, err := cl.WithCA(ca)
		if err != nil {
			fmt.Fprintln(c.App.ErrWriter, "clusterctl: --ca-cert:", err)
			os.Exit(exitError)
		}
		return withCA
	}
	return cl
}

// describe is err as clusterctl prints it: the client's errors say what
// went wrong, and here gain the flags that set it right.
func describe(err error) string {
	var unreachable *api.UnreachableError
	switch {
	case errors.Is(err, api.ErrUnauthorized):
		return err.Error() + " (--token, HERD_TOKEN)"
	case errors.As(err, &unreachable):
		return err.Error() + " (is a gateway's admin API there? set --addr or HERD_ADDR)"
	case strings.Contains(err.Error(), "gossip encryption is off"):
		return err.Error() + " (start every member with --encrypt / HERD_ENCRYPT to use keys)"
	}
	return err.Error()
}

func membersCommand() *cli.Command {
	return &cli.Command{
		Name:  "members",
		Usage: "list the cluster's members",
		Flags: []cli.Flag{jsonFlag},
		Action: func(c *cli.Context) error {
			members, err := client(c).Members(c.Context)
			if err != nil {
				return err
			}
			return output(c, members, func(members []api.Member) [][]string {
				rows := [][]string{{"NAME", "ADDRESS", "STATUS", "ROLE", "IMAGE", "STATE", "BACKENDS", "PROBLEM"}}
				for _, m := range members {
					rows = append(rows, []string{m.Name, m.Addr, m.Status, dash(m.Role), dash(m.Image), dash(m.State),
						fmt.Sprint(m.Backends), dash(m.Problem)})
				}
				return rows
			})
		},
	}
}

func forceLeaveCommand() *cli.Command {
	return &cli.Command{
		Name:      "force-leave",
		Usage:     "remove a failed member for good (a host that will not come back)",
		ArgsUsage: "NAME",
		Description: `A member that stops without leaving (a crash, a host switched off) stays "failed"
   until reaped, and rollouts are refused while an agent of the service is failed,
   so that it does not return later on an old image. force-leave makes every member
   forget it now. A member that comes back later joins again as new. Alive members
   are refused: stop their agent instead, it leaves by itself.`,
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return cli.Exit("force-leave: want one member NAME (see clusterctl members)", exitError)
			}
			res, err := client(c).ForceLeave(c.Context, c.Args().First())
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(c.App.Writer, "%s removed from the cluster\n", res.Removed)
			return err
		},
	}
}

func backendsCommand() *cli.Command {
	return &cli.Command{
		Name:  "backends",
		Usage: "list the gateway's backends with their state, by service",
		Flags: []cli.Flag{&cli.StringFlag{Name: "service", Aliases: []string{"s"}, Usage: "only this service's"}, jsonFlag},
		Action: func(c *cli.Context) error {
			backends, err := client(c).Backends(c.Context)
			if err != nil {
				return err
			}
			if svc := c.String("service"); svc != "" {
				backends = slices.DeleteFunc(backends, func(b api.Backend) bool { return b.Service != svc })
			}
			return output(c, backends, func(backends []api.Backend) [][]string {
				rows := [][]string{{"SERVICE", "ADDRESS", "NODE", "STATE", "IN-FLIGHT", "REQUESTS", "FAILURES"}}
				for _, b := range backends {
					rows = append(rows, []string{b.Service, b.Addr, b.Node, b.State, fmt.Sprint(b.InFlight),
						fmt.Sprint(b.Requests), fmt.Sprint(b.Failures)})
				}
				return rows
			})
		},
	}
}

func routesCommand() *cli.Command {
	return &cli.Command{
		Name:  "routes",
		Usage: "list the gateway's routes: host, path, service, backends, state (ok / no backends / conflict)",
		Description: "Routes are in precedence order: exact hosts, then wildcards, then any host; within each, the\n" +
			"longest path first. A conflict is a service's claim refused because another claimed the route first.",
		Flags: []cli.Flag{jsonFlag},
		Action: func(c *cli.Context) error {
			routing, err := client(c).Routes(c.Context)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, routing)
			}
			rows := [][]string{{"HOST", "PATH", "SERVICE", "BACKENDS", "STATE"}}
			for _, r := range routing.Routes {
				state := r.State
				if r.State == api.RouteConflict {
					state += " (held by " + r.HeldBy + ")"
				}
				path := r.Path
				if r.StripPrefix {
					path += " (stripped)"
				}
				rows = append(rows, []string{cmp.Or(r.Host, "*"), path, r.Service, fmt.Sprint(r.Backends), state})
			}
			if err := printTable(c.App.Writer, rows); err != nil {
				return err
			}
			switch {
			case !routing.AllServices:
				fmt.Fprintf(c.App.Writer, "this gateway routes service %s only: every request goes to it\n", routing.Default)
			case routing.Default != "":
				fmt.Fprintf(c.App.Writer, "requests no route matches go to service %s\n", routing.Default)
			default:
				fmt.Fprintln(c.App.Writer, "requests no route matches are answered 404")
			}
			return nil
		},
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// output prints v as JSON with --json, else as the table rows makes of it.
func output[T any](c *cli.Context, v T, rows func(T) [][]string) error {
	if c.Bool("json") {
		return printJSON(c.App.Writer, v)
	}
	return printTable(c.App.Writer, rows(v))
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printTable(w io.Writer, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		if _, err := fmt.Fprintln(tw, strings.Join(r, "\t")); err != nil {
			return err
		}
	}
	return tw.Flush()
}
