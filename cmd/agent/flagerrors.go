package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/herd-cluster/herd/internal/daemon"
	"github.com/herd-cluster/herd/pkg/agent"
	"github.com/herd-cluster/herd/pkg/runtime/process"
)

// withFlagErrors runs action and says an error the libraries report in
// their own words in the words of this command line: the flag (and
// variable) that fixes it. A bad or missing setting is bad usage: exit 2.
func withFlagErrors(action cli.ActionFunc) cli.ActionFunc {
	return func(c *cli.Context) error {
		err := action(c)
		var ce *agent.ConfigError
		switch {
		case errors.As(err, &ce):
			flag, env, ok := configFlag(ce.Field)
			if !ok {
				return cli.Exit(err.Error(), 2)
			}
			if ce.Value == "" {
				return cli.Exit(fmt.Sprintf("%s: give %s or %s", ce.Problem, flag, env), 2)
			}
			return cli.Exit(fmt.Sprintf("%s %s: %s", flag, ce.Value, ce.Problem), 2)
		case errors.Is(err, process.ErrNoImagesDir):
			return cli.Exit(fmt.Sprintf("%v: give --images-dir or HERD_IMAGES_DIR", err), 2)
		}
		return daemon.GossipFlagError(err)
	}
}

// configFlag is the flag and environment variable that set an agent.Config
// field; ok is false for a field no flag sets.
func configFlag(field string) (flag, env string, ok bool) {
	switch field {
	case "Node":
		return "--node", "HERD_NODE", true
	case "Replicas":
		return "--replicas", "HERD_REPLICAS", true
	case "MaxReplicas":
		return "--max-replicas", "HERD_MAX_REPLICAS", true
	case "BasePort":
		return "--base-port", "HERD_BASE_PORT", true
	case "HostIP":
		return "--host-ip", "HERD_HOST_IP", true
	case "Join":
		return "--join", "HERD_JOIN", true
	case "Image":
		return "--image", "HERD_IMAGE", true
	case "Service":
		return "--service", "HERD_SERVICE", true
	case "Routes":
		return "--route", "HERD_ROUTE", true
	case "Protocol":
		return "--protocol", "HERD_PROTOCOL", true
	}
	return "", "", false
}
