package daemon

import (
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/hcl"
	"github.com/urfave/cli/v2"
)

// ConfigFlag is --config: a file of settings for the command's flags.
func ConfigFlag() cli.Flag {
	return &cli.StringFlag{Name: "config", EnvVars: []string{"HERD_CONFIG"},
		Usage: "read settings from this HCL or JSON file (keys are flag names; flags and HERD_* variables win over it)"}
}

// LoadConfig applies the --config file, if any, to the flags of the running
// command that the command line and the environment left unset. It is a
// command's Before. Keys are flag names ("log-level" or "log_level"); a list
// sets a repeatable flag. An unknown key, a block, or a value the flag does
// not accept is an error naming the file and the key: a typo in a config
// file must not be silently ignored.
func LoadConfig(c *cli.Context) error {
	if err := loadConfig(c); err != nil {
		return cli.Exit(err.Error(), 2) // bad usage, like a bad flag
	}
	return nil
}

func loadConfig(c *cli.Context) error {
	path := c.String("config")
	if path == "" {
		return nil
	}
	src, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var settings map[string]any
	if err := hcl.Unmarshal(src, &settings); err != nil {
		return fmt.Errorf("--config %s: %w", path, err)
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		if err := applySetting(c, key, settings[key]); err != nil {
			return fmt.Errorf("--config %s: %s: %w", path, key, err)
		}
	}
	return nil
}

func applySetting(c *cli.Context, key string, value any) error {
	name := strings.ReplaceAll(key, "_", "-")
	flag := lookupFlag(c.Command.Flags, name)
	switch {
	case flag == nil:
		return fmt.Errorf("unknown setting; %s %s takes: %s", c.App.Name, c.Command.Name, strings.Join(settingNames(c.Command.Flags), ", "))
	case name == "config":
		return fmt.Errorf("a config file cannot name another")
	case c.IsSet(name):
		return nil // the command line or the environment wins
	}
	values, err := settingValues(value)
	if err != nil {
		return err
	}
	if _, repeatable := flag.(*cli.StringSliceFlag); !repeatable && len(values) != 1 {
		return fmt.Errorf("takes one value, not a list")
	}
	for _, v := range values {
		if err := c.Set(name, v); err != nil {
			return fmt.Errorf("%q is not a valid --%s: %w", v, name, err)
		}
	}
	return nil
}

// settingValues turns an HCL or JSON value into flag values.
func settingValues(value any) ([]string, error) {
	switch v := value.(type) {
	case string, bool, int, int64, float64:
		return []string{fmt.Sprint(v)}, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, err := settingValues(e)
			if err != nil || len(s) != 1 {
				return nil, fmt.Errorf("a list holds strings or numbers only")
			}
			out = append(out, s[0])
		}
		return out, nil
	}
	return nil, fmt.Errorf("want a string, number, boolean or list, not a block")
}

func lookupFlag(flags []cli.Flag, name string) cli.Flag {
	for _, f := range flags {
		if slices.Contains(f.Names(), name) {
			return f
		}
	}
	return nil
}

func settingNames(flags []cli.Flag) []string {
	var names []string
	for _, f := range flags {
		if n := f.Names()[0]; n != "config" && n != "help" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}
