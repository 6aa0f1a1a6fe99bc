package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/herd-cluster/herd/pkg/api"
)

// Exit codes of the rollout commands.
const (
	exitFailed = 1 // the rollout failed, was reverted or aborted
	exitError  = 2 // it could not start or be followed (refused, busy, unreachable)
)

const rolloutExitHelp = `Exit codes: 0 the rollout succeeded; 1 it failed, was reverted or was aborted;
2 it was refused (unknown image, another rollout running) or the gateway could not be reached.`

// serviceFlag names the service a rollout command is about; without it,
// the only service the cluster runs.
var serviceFlag = &cli.StringFlag{Name: "service", Aliases: []string{"s"},
	Usage: "the service (default: the only one the cluster runs)"}

func rolloutFlags() []cli.Flag {
	return append([]cli.Flag{
		serviceFlag,
		&cli.IntFlag{Name: "batch", Value: 1, EnvVars: []string{"HERD_ROLLOUT_BATCH"}, Usage: "hosts replaced at a time"},
		&cli.DurationFlag{Name: "min-healthy", Value: 5 * time.Second, EnvVars: []string{"HERD_ROLLOUT_MIN_HEALTHY"},
			Usage: "how long a batch must stay healthy before the next"},
		&cli.DurationFlag{Name: "deadline", Value: 2 * time.Minute, EnvVars: []string{"HERD_ROLLOUT_DEADLINE"},
			Usage: "how long a batch has to become healthy"},
		&cli.BoolFlag{Name: "no-auto-revert", EnvVars: []string{"HERD_ROLLOUT_NO_AUTO_REVERT"},
			Usage: "leave a failed batch on the new image"},
		&cli.BoolFlag{Name: "detach", EnvVars: []string{"HERD_ROLLOUT_DETACH"}, Usage: "start the rollout and return at once"},
		jsonFlag,
	}, canaryFlags()...)
}

func optionsFrom(c *cli.Context, image string) (api.RolloutOptions, error) {
	o := api.RolloutOptions{
		Service: c.String("service"), Image: image, Batch: c.Int("batch"), MinHealthy: api.Duration(c.Duration("min-healthy")),
		Deadline: api.Duration(c.Duration("deadline")), NoAutoRevert: c.Bool("no-auto-revert"),
	}
	var err error
	o.Canary, err = canaryOptionsFrom(c)
	return o, err
}

func rolloutCommand() *cli.Command {
	return &cli.Command{
		Name:        "rollout",
		Usage:       "replace the running image with IMAGE, host by host, with zero downtime",
		ArgsUsage:   "IMAGE",
		Description: "Waits and shows progress (use --detach to return at once).\n" + rolloutExitHelp,
		Flags:       rolloutFlags(),
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 && strings.HasPrefix(c.Args().Get(1), "-") {
				return cli.Exit(fmt.Sprintf("flags go before the image: clusterctl rollout %s %s",
					strings.Join(c.Args().Tail(), " "), c.Args().First()), exitError)
			}
			if c.NArg() != 1 {
				return cli.Exit("usage: clusterctl rollout [flags] IMAGE (for example predictor:1.1.0)", exitError)
			}
			return startAndFollow(c, func(ctx context.Context, o api.RolloutOptions) (api.Rollout, error) {
				return client(c).StartRollout(ctx, o)
			}, c.Args().First())
		},
		Subcommands: []*cli.Command{
			{
				Name: "status", Usage: "show a rollout's progress (default: the running or last one)", ArgsUsage: "[ID]",
				Flags: []cli.Flag{serviceFlag, jsonFlag},
				Action: func(c *cli.Context) error {
					id := c.Args().First()
					if id == "" {
						id = "current"
					}
					r, err := client(c).Rollout(c.Context, c.String("service"), id)
					if err != nil {
						return err
					}
					if c.Bool("json") {
						return printJSON(c.App.Writer, r)
					}
					return printRollout(c.App.Writer, r)
				},
			},
			{
				Name: "history", Usage: "list rollouts, newest first (every service's, without --service)",
				Flags: []cli.Flag{serviceFlag, jsonFlag},
				Action: func(c *cli.Context) error {
					rs, err := client(c).Rollouts(c.Context, c.String("service"))
					if err != nil {
						return err
					}
					return output(c, rs, func(rs []api.Rollout) [][]string {
						rows := [][]string{{"ID", "SERVICE", "IMAGE", "PREVIOUS", "STATE", "STARTED", "TOOK", "MESSAGE"}}
						for _, r := range rs {
							took := "-"
							if !r.Finished.IsZero() {
								took = r.Finished.Sub(r.Created).Round(100 * time.Millisecond).String()
							}
							rows = append(rows, []string{r.ID, dash(r.Service), r.Image, dash(r.Previous), r.State,
								r.Created.Local().Format(time.DateTime), took, dash(r.Message)})
						}
						return rows
					})
				},
			},
			{
				Name:  "abort",
				Usage: "stop the running rollout; its batch in progress goes back to the previous image, its canary is removed",
				Flags: []cli.Flag{serviceFlag, jsonFlag},
				Action: rolloutAction(func(c *cli.Context) (api.Rollout, error) {
					return client(c).AbortRollout(c.Context, c.String("service"))
				}),
			},
			{
				Name:  "promote",
				Usage: "skip the running canary's remaining steps: remove it and replace the hosts",
				Flags: []cli.Flag{serviceFlag, jsonFlag},
				Action: rolloutAction(func(c *cli.Context) (api.Rollout, error) {
					r, err := client(c).PromoteRollout(c.Context, c.String("service"))
					var se *api.StatusError
					if errors.As(err, &se) && se.Status == http.StatusConflict {
						return r, cli.Exit("promote: "+se.Msg, exitError)
					}
					return r, err
				}),
			},
		},
	}
}

// rolloutAction runs an action on the running rollout and prints it.
func rolloutAction(fn func(c *cli.Context) (api.Rollout, error)) cli.ActionFunc {
	return func(c *cli.Context) error {
		r, err := fn(c)
		if err != nil {
			return err
		}
		if c.Bool("json") {
			return printJSON(c.App.Writer, r)
		}
		return printRollout(c.App.Writer, r)
	}
}

func rollbackCommand() *cli.Command {
	flags := rolloutFlags()
	return &cli.Command{
		Name:        "rollback",
		Usage:       "roll back to the image before the last rollout, as a rollout of its own",
		Description: rolloutExitHelp,
		Flags:       flags,
		Action: func(c *cli.Context) error {
			return startAndFollow(c, func(ctx context.Context, o api.RolloutOptions) (api.Rollout, error) {
				return client(c).Rollback(ctx, o)
			}, "")
		},
	}
}

func startAndFollow(c *cli.Context, start func(context.Context, api.RolloutOptions) (api.Rollout, error), image string) error {
	o, err := optionsFrom(c, image)
	if err != nil {
		return cli.Exit(err.Error(), exitError)
	}
	r, err := start(c.Context, o)
	if err != nil {
		msg := describe(err)
		if !strings.HasPrefix(msg, "rollout refused") { // the gateway's refusals say it already
			msg = "rollout refused: " + msg
		}
		return cli.Exit(msg+refusalHint(err), exitError)
	}
	if c.Bool("detach") {
		if c.Bool("json") {
			return printJSON(c.App.Writer, r)
		}
		fmt.Fprintf(c.App.Writer, "rollout %s of %s to %s started; follow it with `clusterctl rollout status%s %s`\n",
			r.ID, dash(r.Service), r.Image, serviceArg(r.Service), r.ID)
		return nil
	}
	w := c.App.Writer
	tty := isTerminal(w) && !c.Bool("json")
	var last string
	lines := 0
	for {
		if !c.Bool("json") {
			if tty {
				if lines > 0 {
					fmt.Fprintf(w, "\033[%dA\033[J", lines)
				}
				var b strings.Builder
				_ = printRollout(&b, r)
				fmt.Fprint(w, b.String())
				lines = strings.Count(b.String(), "\n")
			} else {
				for _, l := range progressLines(r) {
					if !strings.Contains(last, l+"\n") {
						fmt.Fprintln(w, l)
					}
				}
				last = strings.Join(progressLines(r), "\n") + "\n"
			}
		}
		if r.Done() {
			break
		}
		select {
		case <-c.Context.Done():
			return cli.Exit("stopped following; the rollout goes on: `clusterctl rollout status`", exitError)
		case <-time.After(250 * time.Millisecond):
		}
		next, err := client(c).Rollout(c.Context, r.Service, r.ID)
		if err != nil {
			return cli.Exit("following the rollout: "+describe(err), exitError)
		}
		r = next
	}
	if c.Bool("json") {
		if err := printJSON(w, r); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(w, "rollout %s %s: %s\n", r.ID, r.State, r.Message)
	}
	if !r.Succeeded() {
		return cli.Exit("", exitFailed)
	}
	return nil
}

// progressLines are the plain-output lines for r: one per host and state.
func progressLines(r api.Rollout) []string {
	var out []string
	for _, h := range r.Hosts {
		l := fmt.Sprintf("%s %s: %s", r.ID, h.Node, h.State)
		if h.Error != "" {
			l += " (" + h.Error + ")"
		}
		out = append(out, l)
	}
	return append(canaryLines(r), out...)
}

func printRollout(w io.Writer, r api.Rollout) error {
	done := 0
	for _, h := range r.Hosts {
		if h.State == api.HostHealthy {
			done++
		}
	}
	const width = 30
	fill := 0
	if len(r.Hosts) > 0 {
		fill = done * width / len(r.Hosts)
	}
	fmt.Fprintf(w, "rollout %s  %s  %s → %s  %s\n", r.ID, dash(r.Service), dash(r.Previous), r.Image, r.State)
	fmt.Fprintf(w, "[%s%s] %d/%d hosts\n", strings.Repeat("#", fill), strings.Repeat(".", width-fill), done, len(r.Hosts))
	rows := [][]string{{"HOST", "BATCH", "STATE", "FOR"}}
	for _, h := range r.Hosts {
		since := "-"
		if !h.Started.IsZero() {
			end := time.Now()
			if !h.Finished.IsZero() {
				end = h.Finished
			}
			since = end.Sub(h.Started).Round(100 * time.Millisecond).String()
		}
		rows = append(rows, []string{h.Node, fmt.Sprint(h.Batch), h.State, since})
	}
	if err := printTable(w, rows); err != nil {
		return err
	}
	if r.Canary != nil {
		printCanary(w, r.Canary)
	}
	if r.Message != "" {
		fmt.Fprintln(w, r.Message)
	}
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// busyServiceRe finds the service a busy refusal names.
var busyServiceRe = regexp.MustCompile(`service "([a-z0-9._-]+)" is being rolled out`)

// serviceArg is " --service NAME", or nothing for no name.
func serviceArg(name string) string {
	if name == "" {
		return ""
	}
	return " --service " + name
}

// failedAgentsRe finds the agents a refusal names as failed.
var failedAgentsRe = regexp.MustCompile(`: ([^:]+) (?:is|are) failed and did not come back`)

// refusalHint is what the operator can do about a refused rollout: the
// gateway says what is wrong, the CLI which command helps.
func refusalHint(err error) string {
	var se *api.StatusError
	if !errors.As(err, &se) {
		return ""
	}
	if se.Status == http.StatusConflict {
		svc := ""
		if m := busyServiceRe.FindStringSubmatch(se.Msg); m != nil {
			svc = serviceArg(m[1])
		}
		return "; wait for it, or `clusterctl rollout abort" + svc + "`"
	}
	if m := failedAgentsRe.FindStringSubmatch(se.Msg); m != nil {
		first, _, _ := strings.Cut(m[1], ", ")
		return "; wait until `clusterctl members` shows it alive, or remove it for good with `clusterctl force-leave " + first + "`"
	}
	return ""
}
