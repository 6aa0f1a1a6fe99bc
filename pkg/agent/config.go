package agent

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/herd-cluster/herd/pkg/runtime"
)

// MaxReplicas bounds --replicas; it matches what one node may announce.
const MaxReplicas = 1000

// Config configures an Agent.
type Config struct {
	// Node is this agent's cluster node name; replicas are named "node/index".
	Node string
	// Service is the name the replicas serve under. Default "predictor".
	Service string
	// Image is what the replicas run.
	Image runtime.Image
	// Replicas is how many to run, 1 to MaxReplicas.
	Replicas int
	// BasePort is replica 0's host port; replica i listens on BasePort+i.
	BasePort uint16
	// HostIP is the address the replicas are reachable at. Required.
	HostIP netip.Addr
	// Join lists gossip addresses of members to join. Required.
	Join []string

	// HealthPath is the replicas' HTTP health endpoint. Default "/healthz".
	HealthPath string
	// HealthInterval is how often each replica is checked. Default 1 s.
	HealthInterval time.Duration
	// HealthTimeout bounds one check. Default 1 s.
	HealthTimeout time.Duration
	// ReplaceAfter is how many consecutive failed checks make a running
	// replica be replaced. One failed check already withdraws it from the
	// gateways. Default 3.
	ReplaceAfter int
	// StartTimeout is how long a new replica has to pass its first check.
	// Default 30 s.
	StartTimeout time.Duration
	// StopGrace is how long a replica has between SIGTERM and SIGKILL to
	// finish in-flight requests. Default 30 s.
	StopGrace time.Duration
	// DataDir holds the desired state file (DesiredFile). Empty: the desired
	// image is not persisted.
	DataDir string
	// KeepReplicas: on shutdown, drain and leave the cluster but leave the
	// replicas running, for the next agent on this host to adopt (an agent
	// upgrade or restart does not restart the service). Otherwise shutdown
	// stops them after the drain.
	KeepReplicas bool
	// SyncTimeout bounds the wait for every gateway to acknowledge that it
	// stopped routing to replicas being withdrawn. Default 5 s.
	SyncTimeout time.Duration
	// RestartBackoff is the wait before restarting a failed replica the
	// second time in a row; it doubles on each further failure up to
	// MaxRestartBackoff. The first restart is immediate. Defaults 1 s, 1 min.
	RestartBackoff    time.Duration
	MaxRestartBackoff time.Duration

	Logger hclog.Logger
}

// DefaultConfig returns a Config with the defaults documented on each field.
func DefaultConfig() Config {
	return Config{
		Service:           "predictor",
		Replicas:          1,
		BasePort:          8000,
		HealthPath:        "/healthz",
		HealthInterval:    time.Second,
		HealthTimeout:     time.Second,
		ReplaceAfter:      3,
		StartTimeout:      30 * time.Second,
		StopGrace:         30 * time.Second,
		SyncTimeout:       5 * time.Second,
		RestartBackoff:    time.Second,
		MaxRestartBackoff: time.Minute,
		Logger:            hclog.Default(),
	}
}

// Validate reports the first problem with c, in words for the command line.
func (c *Config) Validate() error {
	switch {
	case c.Node == "":
		return errors.New("node name is required")
	case c.Replicas < 1 || c.Replicas > MaxReplicas:
		return fmt.Errorf("--replicas %d: must be between 1 and %d", c.Replicas, MaxReplicas)
	case c.BasePort == 0:
		return errors.New("--base-port must be between 1 and 65535")
	case int(c.BasePort)+c.Replicas-1 > 65535:
		return fmt.Errorf("--base-port %d with --replicas %d needs ports up to %d, beyond 65535",
			c.BasePort, c.Replicas, int(c.BasePort)+c.Replicas-1)
	case !c.HostIP.IsValid() || c.HostIP.IsUnspecified():
		return fmt.Errorf("--host-ip %q: need the address replicas are reachable at", c.HostIP)
	case len(c.Join) == 0:
		return errors.New("no join address: give --join or HERD_JOIN")
	case c.Image.Name == "":
		return errors.New("--image is required")
	}
	return nil
}

func (c *Config) port(index int) uint16 { return c.BasePort + uint16(index) }
