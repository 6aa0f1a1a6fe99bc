package agent

import (
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/herd-cluster/herd/pkg/membership"
	"github.com/herd-cluster/herd/pkg/route"
	"github.com/herd-cluster/herd/pkg/runtime"
)

// MaxReplicas bounds Config.Replicas and Config.MaxReplicas; it matches
// what one node may announce.
const MaxReplicas = 1000

// Config configures an Agent.
type Config struct {
	// Node is this agent's cluster node name; replicas are named "node/index".
	Node string
	// Service is the name the replicas serve under. Default "predictor".
	Service string
	// Routes are the requests the service takes at the gateways
	// ([host][/path-prefix]); none: the gateways send it what no other
	// service's route takes when it is their only or default service.
	// StripPrefix removes the matched prefix from the path the replicas
	// get.
	Routes      []route.Route
	StripPrefix bool
	// Image is what the replicas run.
	Image runtime.Image
	// Replicas is how many to run at first start, 1 to MaxReplicas. A scale
	// changes the count; the agent records it (DesiredFile) and a restart
	// keeps it, unless Replicas differs from the value it was recorded
	// under: an operator who changes it means it.
	Replicas int
	// MaxReplicas bounds the count a scale may set: the replicas use ports
	// BasePort to BasePort+MaxReplicas-1 (and never beyond 65535). 1 to the
	// MaxReplicas constant. Default that constant.
	MaxReplicas int
	// BasePort is replica 0's host port; replica i listens on BasePort+i.
	BasePort uint16
	// HostIP is the address the replicas are reachable at. Required.
	HostIP netip.Addr
	// Join lists gossip addresses of members to join. Required.
	Join []string

	// Protocol is how the replicas are spoken to, announced to the
	// gateways: HTTP/1.1 (""), h2c, or gRPC. It picks the health check too:
	// GET HealthPath over HTTP/1.1 or h2c, or for gRPC the standard
	// grpc.health.v1.Health/Check of the server as a whole (SERVING passes).
	Protocol membership.Protocol
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
	// SyncTimeout bounds the wait for every live gateway to acknowledge that it
	// stopped routing to replicas being withdrawn (the drain deadline): a
	// replacement whose withdrawal a live gateway has not acknowledged by
	// then fails, and the replica is kept. Longer than Serf takes to declare
	// a gateway that went away failed. Default 15 s.
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
		MaxReplicas:       MaxReplicas,
		BasePort:          8000,
		HealthPath:        "/healthz",
		HealthInterval:    time.Second,
		HealthTimeout:     time.Second,
		ReplaceAfter:      3,
		StartTimeout:      30 * time.Second,
		StopGrace:         30 * time.Second,
		SyncTimeout:       15 * time.Second,
		RestartBackoff:    time.Second,
		MaxRestartBackoff: time.Minute,
		Logger:            hclog.Default(),
	}
}

// Validate reports the first problem with c, as a *ConfigError.
func (c *Config) Validate() error {
	switch {
	case c.Node == "":
		return &ConfigError{Field: "Node", Problem: "no node name"}
	case c.MaxReplicas < 1 || c.MaxReplicas > MaxReplicas:
		return &ConfigError{Field: "MaxReplicas", Value: strconv.Itoa(c.MaxReplicas),
			Problem: fmt.Sprintf("must be between 1 and %d", MaxReplicas)}
	case !membership.ValidServiceName(c.Service):
		return &ConfigError{Field: "Service", Value: strconv.Quote(c.Service),
			Problem: "want lower-case letters, digits, '.', '_' or '-', at most 63"}
	case len(c.Routes) > route.MaxPerService:
		return &ConfigError{Field: "Routes", Value: strconv.Itoa(len(c.Routes)),
			Problem: fmt.Sprintf("at most %d routes per service", route.MaxPerService)}
	case !validProtocol(c.Protocol):
		return &ConfigError{Field: "Protocol", Value: string(c.Protocol), Problem: "want http, h2c or grpc"}
	case c.Replicas < 1 || c.Replicas > c.maxCount():
		return &ConfigError{Field: "Replicas", Value: strconv.Itoa(c.Replicas),
			Problem: fmt.Sprintf("must be between 1 and %d", c.maxCount())}
	case c.BasePort == 0:
		return &ConfigError{Field: "BasePort", Value: "0", Problem: "must be between 1 and 65535"}
	case int(c.BasePort)+c.Replicas-1 > 65535:
		return &ConfigError{Field: "BasePort", Value: strconv.Itoa(int(c.BasePort)),
			Problem: fmt.Sprintf("with %d replicas needs ports up to %d, beyond 65535", c.Replicas, int(c.BasePort)+c.Replicas-1)}
	case !c.HostIP.IsValid():
		return &ConfigError{Field: "HostIP", Problem: "no host address for the replicas"}
	case c.HostIP.IsUnspecified():
		return &ConfigError{Field: "HostIP", Value: c.HostIP.String(), Problem: "not an address replicas can be reached at"}
	case len(c.Join) == 0:
		return &ConfigError{Field: "Join", Problem: "no join address"}
	case c.Image.Name == "":
		return &ConfigError{Field: "Image", Problem: "no image"}
	}
	return nil
}

// ConfigError is a Config setting an Agent cannot run with. Field names the
// Config field, so that a command line can name its own flag for it.
type ConfigError struct {
	// Field is the Config field at fault: "Node", "Service", "Routes",
	// "Protocol", "Replicas", "MaxReplicas", "BasePort", "HostIP", "Join"
	// or "Image".
	Field string
	// Value is the value at fault, as text; empty when the setting is
	// missing.
	Value string
	// Problem says what is wrong with Value ("must be between 1 and 1000"),
	// or, when Value is empty, what is missing ("no join address").
	Problem string
}

// Error reads "replica count 0: must be between 1 and 1000", or for a
// missing setting just the problem: "no join address".
func (e *ConfigError) Error() string {
	if e.Value == "" {
		return e.Problem
	}
	return settingName(e.Field) + " " + e.Value + ": " + e.Problem
}

// settingName is a Config field in words.
func settingName(field string) string {
	switch field {
	case "Replicas":
		return "replica count"
	case "MaxReplicas":
		return "maximum replica count"
	case "BasePort":
		return "base port"
	case "HostIP":
		return "host address"
	case "Service":
		return "service name"
	case "Routes":
		return "route count"
	case "Protocol":
		return "protocol"
	default:
		return field
	}
}

func validProtocol(p membership.Protocol) bool {
	_, err := membership.ParseProtocol(string(p))
	return err == nil
}

func (c *Config) port(index int) uint16 { return c.BasePort + uint16(index) }

// maxCount is MaxReplicas, the constant for a Config that never set it.
func (c *Config) maxCount() int {
	if c.MaxReplicas == 0 {
		return MaxReplicas
	}
	return c.MaxReplicas
}

// portRoom is how many replicas fit between BasePort and 65535, at most
// maxCount: the most a scale may ask for.
func (c *Config) portRoom() (int, string) {
	if n := 65536 - int(c.BasePort); n < c.maxCount() {
		return max(n, 0), fmt.Sprintf("its ports from %d end at 65535", c.BasePort)
	}
	return c.maxCount(), fmt.Sprintf("its maximum is %d", c.maxCount())
}
