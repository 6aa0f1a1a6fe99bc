package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/herd-cluster/herd/pkg/api"
)

const scaleExitHelp = `Exit codes: 0 every agent took its count (with --wait: and reached it, routed);
1 an agent did not answer or refused (the others' change stands), or with --wait a count was not
reached in time or an agent gave up; 2 refused, nothing changed (a count that is negative, 0
without --allow-zero or beyond the hosts' room, an unknown service or node, a rollout of the
service running without --after-rollout) or the gateway could not be reached.`

func scaleFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "node", EnvVars: []string{"HERD_SCALE_NODE"}, Usage: "set this one agent's count instead of the service's total"},
		&cli.BoolFlag{Name: "wait", EnvVars: []string{"HERD_SCALE_WAIT"},
			Usage: "return once every replica is healthy and routed (progress shown)"},
		&cli.DurationFlag{Name: "timeout", Value: 5 * time.Minute, EnvVars: []string{"HERD_SCALE_TIMEOUT"},
			Usage: "with --wait, how long to wait"},
		&cli.BoolFlag{Name: "allow-zero", EnvVars: []string{"HERD_SCALE_ALLOW_ZERO"},
			Usage: "allow a count of 0, which stops the service (or the node's replicas)"},
		&cli.BoolFlag{Name: "after-rollout", EnvVars: []string{"HERD_SCALE_AFTER_ROLLOUT"},
			Usage: "during a rollout of the service, queue the scale behind it instead of refusing"},
		jsonFlag,
	}
}

func scaleCommand() *cli.Command {
	return &cli.Command{
		Name:      "scale",
		Usage:     "set a service's replica count (spread evenly over its agents), or one agent's, live",
		ArgsUsage: "SERVICE N | --node NODE N",
		Description: `clusterctl scale predictor 20           the service's total, spread evenly over its agents
   clusterctl scale predictor 20 --wait    return once all are healthy and routed
   clusterctl scale --node host-2 6        one agent's count
New replicas start on the next ports of each agent's range and are routed once healthy;
removed ones (the highest ports) are withdrawn from every gateway, which acknowledges, and
only then stopped. Flags may come before or after the arguments.
` + scaleExitHelp,
		Flags:        scaleFlags(),
		OnUsageError: scaleUsageError,
		Action: func(c *cli.Context) error {
			c, args, err := interspersed(c)
			if err != nil {
				return cli.Exit(err.Error()+" (see clusterctl scale --help)", exitError)
			}
			return scale(c, args)
		},
		Subcommands: []*cli.Command{{
			Name: "status", Usage: "where a service's replica count stands: replicas, healthy, routed, by agent",
			ArgsUsage: "SERVICE", Flags: []cli.Flag{jsonFlag},
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return cli.Exit("usage: clusterctl scale status SERVICE", exitError)
				}
				st, err := client(c).ScaleStatus(c.Context, c.Args().First())
				if err != nil {
					return err
				}
				if c.Bool("json") {
					return printJSON(c.App.Writer, st)
				}
				return printScaleStatus(c.App.Writer, st)
			},
		}},
	}
}

var negativeFlag = regexp.MustCompile(`flag provided but not defined: -(\d+)$`)

// scaleUsageError says a negative count as such: the flag parser takes
// "-3" for a flag.
func scaleUsageError(c *cli.Context, err error, _ bool) error {
	if m := negativeFlag.FindStringSubmatch(err.Error()); m != nil {
		return cli.Exit("scale refused: replica count -"+m[1]+": must be 0 or more", exitError)
	}
	return cli.Exit(fmt.Sprintf("%v (see clusterctl scale --help)", err), exitError)
}

// interspersed parses flags that follow the arguments ("scale predictor 20
// --wait"), which the command line's parser leaves among them, and returns
// a context with every flag and the arguments alone. "-3" is an argument
// (a count to refuse), not a flag.
func interspersed(c *cli.Context) (*cli.Context, []string, error) {
	rest := c.Args().Slice()
	if !slices.ContainsFunc(rest, func(a string) bool { return strings.HasPrefix(a, "-") }) {
		return c, rest, nil
	}
	set := flag.NewFlagSet(c.Command.Name, flag.ContinueOnError)
	set.SetOutput(io.Discard)
	for _, f := range c.Command.Flags {
		if err := f.Apply(set); err != nil {
			return nil, nil, err
		}
	}
	for _, name := range c.LocalFlagNames() {
		if v := c.Value(name); v != nil && set.Lookup(name) != nil {
			if err := set.Set(name, fmt.Sprint(v)); err != nil {
				return nil, nil, err
			}
		}
	}
	var args []string
	for len(rest) > 0 {
		a := rest[0]
		switch {
		case a == "--":
			args, rest = append(args, rest[1:]...), nil
		case !strings.HasPrefix(a, "-") || isInt(a):
			args, rest = append(args, a), rest[1:]
		default:
			if err := set.Parse(rest); err != nil {
				if m := negativeFlag.FindStringSubmatch(err.Error()); m != nil {
					return nil, nil, fmt.Errorf("scale refused: replica count -%s: must be 0 or more", m[1])
				}
				return nil, nil, err
			}
			rest = set.Args()
		}
	}
	nc := cli.NewContext(c.App, set, c.Lineage()[1])
	nc.Command, nc.Context = c.Command, c.Context
	return nc, args, nil
}

func isInt(s string) bool {
	_, err := strconv.Atoi(s)
	return err == nil
}

func scale(c *cli.Context, args []string) error {
	node := c.String("node")
	want := 2
	usage := "usage: clusterctl scale SERVICE N, or clusterctl scale --node NODE N"
	if node != "" {
		want = 1
	}
	if len(args) != want {
		return cli.Exit(usage, exitError)
	}
	n, err := strconv.Atoi(args[want-1])
	switch {
	case err != nil:
		return cli.Exit(fmt.Sprintf("scale: %q is not a replica count; %s", args[want-1], usage), exitError)
	case n < 0:
		return cli.Exit(fmt.Sprintf("scale refused: replica count %d: must be 0 or more", n), exitError)
	}
	req := api.ScaleRequest{Replicas: n, AllowZero: c.Bool("allow-zero"), AfterRollout: c.Bool("after-rollout"), Reason: "clusterctl"}
	var res api.ScaleResult
	if node != "" {
		res, err = client(c).ScaleNode(c.Context, node, req)
	} else {
		res, err = client(c).Scale(c.Context, args[0], req)
	}
	if err != nil {
		msg := describe(err)
		if !strings.HasPrefix(msg, "scale refused") && !strings.HasPrefix(msg, "a rollout") {
			var se *api.StatusError
			if errors.As(err, &se) {
				msg = "scale refused: " + msg
			}
		}
		return cli.Exit(msg+scaleHint(err), exitError)
	}
	w := c.App.Writer
	if !c.Bool("wait") {
		if c.Bool("json") {
			if err := printJSON(w, res); err != nil {
				return err
			}
		} else if err := printScaleResult(w, res); err != nil {
			return err
		}
		if failed := res.Failed(); len(failed) > 0 {
			return cli.Exit(failedLine(failed), exitFailed)
		}
		return nil
	}
	if !c.Bool("json") {
		if err := printScaleResult(w, res); err != nil {
			return err
		}
	}
	return waitScale(c, res)
}

// scaleHint is what the operator can do about a refused scale.
func scaleHint(err error) string {
	var se *api.StatusError
	if !errors.As(err, &se) {
		return ""
	}
	switch {
	case se.Status == http.StatusConflict:
		return "; wait for it (clusterctl rollout status), or queue the scale behind it with --after-rollout"
	case strings.Contains(se.Msg, "zero must be allowed explicitly"):
		return " (--allow-zero)"
	}
	return ""
}

func failedLine(failed []api.ScaleAgent) string {
	var parts []string
	for _, a := range failed {
		parts = append(parts, a.Error)
	}
	return "not every agent took its count (the others' change stands): " + strings.Join(parts, "; ")
}

func printScaleResult(w io.Writer, r api.ScaleResult) error {
	what := fmt.Sprintf("service %s to %d", r.Service, r.Replicas)
	if r.Node != "" {
		what = fmt.Sprintf("%s (service %s) to %d", r.Node, r.Service, r.Replicas)
	}
	if r.Queued {
		fmt.Fprintf(w, "scale of %s queued: it runs once the rollout of %s has ended\n", what, r.Service)
	} else {
		fmt.Fprintf(w, "scale of %s\n", what)
	}
	rows := [][]string{{"NODE", "FROM", "TO", "RESULT"}}
	for _, a := range r.Agents {
		result := "ok"
		switch {
		case a.Error != "":
			result = a.Error
		case r.Queued:
			result = "queued"
		}
		rows = append(rows, []string{a.Node, fmt.Sprint(a.Previous), fmt.Sprint(a.Replicas), result})
	}
	return printTable(w, rows)
}

func printScaleStatus(w io.Writer, st api.ScaleStatus) error {
	fmt.Fprintln(w, scaleLine(st))
	rows := [][]string{{"NODE", "STATUS", "REPLICAS", "HEALTHY", "ROUTED", "PROBLEM"}}
	for _, a := range st.Agents {
		routed := "-"
		if a.Routed >= 0 {
			routed = fmt.Sprint(a.Routed)
		}
		rows = append(rows, []string{a.Node, a.Status, fmt.Sprint(a.Replicas), fmt.Sprint(a.Healthy), routed, dash(a.Problem)})
	}
	if err := printTable(w, rows); err != nil {
		return err
	}
	if q := st.Queued; q != nil {
		fmt.Fprintf(w, "queued: a scale to %d, behind rollout %s (since %s)\n", q.Replicas, q.Rollout, q.Since.Local().Format(time.DateTime))
	}
	if o := st.LastQueued; o != nil && o.Error != "" {
		fmt.Fprintf(w, "the last queued scale (to %d) did not go through: %s\n", o.Replicas, o.Error)
	}
	return nil
}

// scaleLine is the service's count in one line.
func scaleLine(st api.ScaleStatus) string {
	routed := "not routed by this gateway"
	if st.Routed >= 0 {
		routed = fmt.Sprintf("%d routed", st.Routed)
	}
	line := fmt.Sprintf("%s: %d replicas, %d healthy, %s", st.Service, st.Replicas, st.Healthy, routed)
	if st.Rollout != "" {
		line += "; rollout " + st.Rollout + " running"
	}
	return line
}

// waitScale follows the service's status until the counts res asked for
// are reached (healthy, routed), an agent gives up, or --timeout passes.
func waitScale(c *cli.Context, res api.ScaleResult) error {
	w := c.App.Writer
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
	defer cancel()
	quiet := c.Bool("json")
	last := ""
	watch := &scaleWatch{res: res, announced: map[string]bool{}}
	var st api.ScaleStatus
	for {
		var err error
		st, err = client(c).ScaleStatus(ctx, res.Service)
		if err != nil && ctx.Err() == nil {
			return cli.Exit("following the scale: "+describe(err), exitError)
		}
		if err == nil {
			if line := scaleLine(st); !quiet && line != last {
				fmt.Fprintln(w, line)
				last = line
			}
			done, problem := watch.progress(st)
			if problem != "" {
				_ = printScaleStatus(w, st)
				return cli.Exit(problem, exitFailed)
			}
			if done {
				break
			}
		}
		select {
		case <-ctx.Done():
			if c.Context.Err() != nil {
				return cli.Exit("stopped following; the scale goes on: `clusterctl scale status "+res.Service+"`", exitError)
			}
			_ = printScaleStatus(w, st)
			return cli.Exit(fmt.Sprintf("not reached within %s (--timeout): %s", c.Duration("timeout"), scaleLine(st)), exitFailed)
		case <-time.After(250 * time.Millisecond):
		}
	}
	if quiet {
		if err := printJSON(w, st); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(w, "done: %s\n", scaleLine(st))
	}
	if failed := res.Failed(); len(failed) > 0 {
		return cli.Exit(failedLine(failed), exitFailed)
	}
	return nil
}

// scaleWatch follows a scale's progress across status reads.
type scaleWatch struct {
	res api.ScaleResult
	// announced: the agent was seen taking the count asked (announcing it,
	// or withdrawing the replicas beyond it), so a count other than that
	// afterwards, with a problem, is a scale-down it gave up; before, its
	// tags may just not say so yet.
	announced map[string]bool
}

// progress says whether the agents that took their count (or, for a
// queued scale once it ran, the service or node) have reached it, or why
// waiting longer is pointless.
func (sw *scaleWatch) progress(st api.ScaleStatus) (done bool, problem string) {
	res := sw.res
	if res.Queued {
		switch {
		case st.Queued != nil:
			return false, ""
		case st.LastQueued != nil && st.LastQueued.Error != "":
			return false, "the queued scale did not go through: " + st.LastQueued.Error
		}
		return st.Reached(res.Node, res.Replicas), ""
	}
	done = true
	for _, a := range res.Agents {
		if a.Error != "" {
			continue
		}
		i := slices.IndexFunc(st.Agents, func(s api.ScaleAgentStatus) bool { return s.Node == a.Node })
		if i < 0 {
			return false, a.Node + " is no longer a member"
		}
		s := st.Agents[i]
		if s.Status != "alive" {
			return false, fmt.Sprintf("%s is %s", a.Node, s.Status)
		}
		// An agent scaling down announces the count it had until the
		// replicas beyond the new one have stopped.
		if s.Replicas == a.Replicas || (s.Healthy <= a.Replicas && s.Replicas > a.Replicas) {
			sw.announced[a.Node] = true
		}
		if sw.announced[a.Node] && s.Replicas != a.Replicas && s.Problem != "" {
			return false, s.Problem
		}
		one := api.ScaleStatus{Agents: []api.ScaleAgentStatus{s}}
		done = done && one.Reached(a.Node, a.Replicas)
	}
	return done, ""
}
