package daemon

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/urfave/cli/v2"
)

type settings struct {
	level    string
	replicas int
	interval time.Duration
	join     []string
	json     bool
}

// runWithConfig runs a command shaped like `agent join` with args and the
// config file text, and returns what its action saw.
func runWithConfig(t *testing.T, name, text string, args ...string) (settings, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, []byte(text), 0o600))
	var got settings
	app := &cli.App{Name: "agent", ExitErrHandler: noExit, Commands: []*cli.Command{{
		Name: "join",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "log-level", Value: "info", EnvVars: []string{"HERD_TEST_LOG_LEVEL"}},
			&cli.IntFlag{Name: "replicas", Value: 4},
			&cli.DurationFlag{Name: "interval", Value: time.Second},
			&cli.StringSliceFlag{Name: "join"},
			&cli.BoolFlag{Name: "log-json"},
			ConfigFlag(),
		},
		Before: LoadConfig,
		Action: func(c *cli.Context) error {
			got = settings{c.String("log-level"), c.Int("replicas"), c.Duration("interval"), c.StringSlice("join"), c.Bool("log-json")}
			return nil
		},
	}}}
	err := app.Run(append([]string{"agent", "join", "--config", path}, args...))
	return got, err
}

// noExit keeps urfave/cli from exiting the test binary on an ExitCoder.
func noExit(*cli.Context, error) {}

func TestConfigFileHCLAndJSON(t *testing.T) {
	want := settings{"debug", 12, 250 * time.Millisecond, []string{"10.0.0.1:7946", "10.0.0.2:7946"}, true}
	got, err := runWithConfig(t, "agent.hcl", `
# comments are fine
log_level = "debug"
replicas  = 12
interval  = "250ms"
join      = ["10.0.0.1:7946", "10.0.0.2:7946"]
log-json  = true
`)
	require.NoError(t, err)
	assert.Equal(t, want, got)

	got, err = runWithConfig(t, "agent.json",
		`{"log-level": "debug", "replicas": 12, "interval": "250ms", "join": ["10.0.0.1:7946", "10.0.0.2:7946"], "log-json": true}`)
	require.NoError(t, err)
	assert.Equal(t, want, got)
}

func TestConfigFileFlagsAndEnvironmentWin(t *testing.T) {
	t.Setenv("HERD_TEST_LOG_LEVEL", "warn")
	got, err := runWithConfig(t, "agent.hcl", "log-level = \"debug\"\nreplicas = 12\njoin = [\"a:1\"]\n",
		"--replicas", "3", "--join", "b:2")
	require.NoError(t, err)
	assert.Equal(t, settings{"warn", 3, time.Second, []string{"b:2"}, false}, got)
}

func TestConfigFileErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"unknown", `replica = 3`, "replica: unknown setting; agent join takes: interval, join, log-json, log-level, replicas"},
		{"bad value", `replicas = "many"`, `replicas: "many" is not a valid --replicas`},
		{"bad duration", `interval = "soon"`, `interval: "soon"`},
		{"list for one", `replicas = [1, 2]`, "replicas: takes one value, not a list"},
		{"block", "log-level {\n x = 1\n}", "log-level: want a string, number, boolean or list, not a block"},
		{"itself", `config = "other.hcl"`, "config: a config file cannot name another"},
		{"syntax", `replicas = "3`, "agent.hcl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runWithConfig(t, "agent.hcl", tc.text)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), "--config ")
		})
	}
	err := (&cli.App{ExitErrHandler: noExit, Commands: []*cli.Command{{Name: "x", Flags: []cli.Flag{ConfigFlag()}, Before: LoadConfig,
		Action: func(*cli.Context) error { return nil }}}}).Run([]string{"a", "x", "--config", "/nonexistent/herd.hcl"})
	assert.ErrorContains(t, err, "--config: open /nonexistent/herd.hcl: no such file or directory")
}
