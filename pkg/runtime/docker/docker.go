// Package docker is the replica driver that runs each replica as a container
// through the Docker Engine API.
//
// An image reference (runtime.Image: name:tag, name@digest or
// name:tag@digest, with a registry host or not) names an image in the engine;
// it is never pulled. With a digest, the engine matches it against the
// digests of images it pulled from a registry (an image built or loaded
// locally has none), and the tag, if any, is only for people: the engine is
// asked for name@digest, as docker run does. Each
// container publishes its service port (8080 by default) on the replica's
// host address, runs with an init process (so the service's PID is not 1 and
// receives SIGTERM properly), and carries labels that say it is Herd's:
//
//	io.herd.managed=true io.herd.service=… io.herd.node=… io.herd.index=…
//	io.herd.image=… io.herd.host-ip=… io.herd.port=…
//
// and, for a canary's replica, io.herd.arm=canary|baseline (runtime.Arm).
// The labels are the driver's whole state: a restarted agent lists its
// containers by label and adopts those still running.
package docker

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"
	"github.com/hashicorp/go-hclog"

	"github.com/herd-cluster/herd/pkg/runtime"
)

// Labels on every container the driver creates.
const (
	LabelManaged = "io.herd.managed"
	LabelService = "io.herd.service"
	LabelNode    = "io.herd.node"
	LabelIndex   = "io.herd.index"
	LabelImage   = "io.herd.image"
	LabelHostIP  = "io.herd.host-ip"
	LabelPort    = "io.herd.port"
	// LabelArm is set on a canary's replicas only: "canary" or "baseline".
	LabelArm = "io.herd.arm"
)

// Config configures a Driver.
type Config struct {
	// Node is the agent's node name: the driver lists only this node's
	// containers, so agents sharing an engine do not adopt each other's.
	// Required.
	Node string
	// ContainerPort is the port the service listens on inside the
	// container; it gets PORT in its environment. Default 8080.
	ContainerPort uint16
	// Network is how replicas are reached: NetworkBridge (default) publishes
	// the container port on the replica's host address; NetworkHost runs the
	// container in the host's network, the service listening on the host
	// address and port itself (no proxy in the path, and nothing that stops
	// with the engine).
	Network string
	// ImageHealthcheck keeps the image's own HEALTHCHECK running in the
	// engine, for `docker ps` to show. Off by default: the agent checks
	// every replica itself, and each of the engine's checks executes a
	// process in the container, every container at the image's interval,
	// which slows the starts of new containers beside running ones (a
	// scale-up). Nothing in Herd reads the engine's health state.
	ImageHealthcheck bool
	// Timeout bounds each call to the engine. Default 30 s.
	Timeout time.Duration
	Logger  hclog.Logger
}

// Network modes.
const (
	NetworkBridge = "bridge"
	NetworkHost   = "host"
)

// Driver runs replicas as containers.
type Driver struct {
	cfg    Config
	cli    *client.Client
	logger hclog.Logger
}

// New connects to the engine named by the environment (DOCKER_HOST,
// DOCKER_API_VERSION, DOCKER_CERT_PATH, DOCKER_TLS_VERIFY), negotiating the
// API version so that old engines (API 1.41) and current ones both work.
// An engine that does not answer is an error naming its address.
func New(ctx context.Context, cfg Config) (*Driver, error) {
	if cfg.Node == "" {
		return nil, errors.New("docker runtime: node name is required")
	}
	if cfg.ContainerPort == 0 {
		cfg.ContainerPort = 8080
	}
	switch cfg.Network {
	case "":
		cfg.Network = NetworkBridge
	case NetworkBridge, NetworkHost:
	default:
		return nil, fmt.Errorf("docker network %q: want bridge or host", cfg.Network)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker runtime: %w", err)
	}
	d := &Driver{cfg: cfg, cli: cli, logger: cfg.Logger.Named("docker")}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := cli.Ping(pctx); err != nil {
		cli.Close()
		return nil, fmt.Errorf("docker engine at %s is not reachable: %s", cli.DaemonHost(), oneLine(err))
	}
	cli.NegotiateAPIVersion(pctx)
	d.logger.Debug("connected to docker engine", "host", cli.DaemonHost(), "api", cli.ClientVersion())
	return d, nil
}

// Close releases the client's connections.
func (d *Driver) Close() error { return d.cli.Close() }

// Host is the engine's address.
func (d *Driver) Host() string { return d.cli.DaemonHost() }

// Resolve fails with runtime.ErrImageNotFound when img is not in the engine.
func (d *Driver) Resolve(ctx context.Context, img runtime.Image) error {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	if _, err := d.cli.ImageInspect(ctx, engineRef(img)); err != nil {
		if cerrdefs.IsNotFound(err) {
			return fmt.Errorf("image %s: %w in the docker engine at %s (build or load it there; Herd never pulls)",
				img, runtime.ErrImageNotFound, d.cli.DaemonHost())
		}
		return fmt.Errorf("image %s: %s", img, oneLine(err))
	}
	return nil
}

// engineRef is img as the engine looks it up: with a digest, name@digest (a
// tag beside a digest is dropped, as docker run does); else name:tag.
func engineRef(img runtime.Image) string {
	if img.Digest != "" {
		return img.Name + "@" + img.Digest
	}
	return img.String()
}

// ContainerName is the name of replica spec's container:
// herd-<service>-<node>-<index>, or for a canary's replica
// herd-<service>-<node>-canary<index> (baseline<index>): no name of one
// arm is a name of another (runtime.Arm.Name).
func ContainerName(spec runtime.Spec) string {
	return "herd-" + spec.Service + "-" + sanitize(spec.Node) + "-" + spec.Arm.Name(spec.Index)
}

// Start creates and starts the container for spec. A host port taken by
// something else is runtime.ErrPortInUse naming the port; the half-created
// container is removed.
func (d *Driver) Start(ctx context.Context, spec runtime.Spec) (runtime.Replica, error) {
	if !spec.Arm.Valid() {
		return runtime.Replica{}, fmt.Errorf("replica %d: unknown arm %q", spec.Index, spec.Arm)
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	name := ContainerName(spec)
	// A container of that name left behind (exited, or from a crashed start)
	// would block the name.
	if err := d.cli.ContainerRemove(ctx, name, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return runtime.Replica{}, fmt.Errorf("replica %d: remove stale container %s: %s", spec.Index, name, oneLine(err))
	}
	cport := nat.Port(strconv.Itoa(int(d.cfg.ContainerPort)) + "/tcp")
	listenHost, listenPort := "0.0.0.0", d.cfg.ContainerPort
	if d.cfg.Network == NetworkHost {
		// The service binds the host port itself: check it first, since a
		// bind failure inside the container would only show as an exit.
		if err := runtime.CheckPortFree(spec.HostIP, spec.Port); err != nil {
			return runtime.Replica{}, fmt.Errorf("replica %d: %w", spec.Index, err)
		}
		listenHost, listenPort = spec.HostIP.String(), spec.Port
	}
	init := true
	cfg := &container.Config{
		Image: engineRef(spec.Image),
		Env: []string{
			"HOST=" + listenHost,
			"PORT=" + strconv.Itoa(int(listenPort)),
			"HERD_INSTANCE=" + spec.Instance(),
			"HERD_SERVICE=" + spec.Service,
			"HERD_REPLICA=" + strconv.Itoa(spec.Index),
			"HERD_IMAGE=" + spec.Image.String(),
		},
		Labels: map[string]string{
			LabelManaged: "true",
			LabelService: spec.Service,
			LabelNode:    spec.Node,
			LabelIndex:   strconv.Itoa(spec.Index),
			LabelImage:   spec.Image.String(),
			LabelHostIP:  spec.HostIP.String(),
			LabelPort:    strconv.Itoa(int(spec.Port)),
		},
	}
	if spec.Arm != runtime.ArmStable {
		cfg.Labels[LabelArm] = string(spec.Arm)
	}
	host := &container.HostConfig{
		Init: &init,
		// The agent restarts replicas itself, with health checks and backoff.
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
		LogConfig: container.LogConfig{Type: "json-file", Config: map[string]string{
			"max-size": "10m", "max-file": "3",
		}},
	}
	if !d.cfg.ImageHealthcheck {
		cfg.Healthcheck = &container.HealthConfig{Test: []string{"NONE"}}
	}
	if d.cfg.Network == NetworkHost {
		host.NetworkMode = container.NetworkMode(NetworkHost)
	} else {
		cfg.ExposedPorts = nat.PortSet{cport: struct{}{}}
		host.PortBindings = nat.PortMap{cport: {{HostIP: spec.HostIP.String(), HostPort: strconv.Itoa(int(spec.Port))}}}
	}
	created, err := d.cli.ContainerCreate(ctx, cfg, host, nil, nil, name)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return runtime.Replica{}, fmt.Errorf("replica %d: image %s: %w", spec.Index, spec.Image, runtime.ErrImageNotFound)
		}
		return runtime.Replica{}, fmt.Errorf("replica %d: create container: %s", spec.Index, oneLine(err))
	}
	if err := d.cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		d.remove(created.ID)
		if isPortInUse(err) {
			return runtime.Replica{}, fmt.Errorf("replica %d: port %d on %s: %w", spec.Index, spec.Port, spec.HostIP, runtime.ErrPortInUse)
		}
		return runtime.Replica{}, fmt.Errorf("replica %d: start container: %s", spec.Index, oneLine(err))
	}
	info, err := d.cli.ContainerInspect(ctx, created.ID)
	if err != nil {
		return runtime.Replica{}, fmt.Errorf("replica %d: inspect container: %s", spec.Index, oneLine(err))
	}
	r, _ := fromLabels(info.ID, info.Config.Labels)
	r.Running = info.State.Running
	r.PID = info.State.Pid
	r.StartedAt, _ = time.Parse(time.RFC3339Nano, info.State.StartedAt)
	d.logger.Debug("container started", "name", name, "id", shortID(info.ID), "addr", r.Addr())
	return r, nil
}

// Stop sends SIGTERM, kills the container after grace, and removes it. A
// container already gone is not an error.
func (d *Driver) Stop(ctx context.Context, r runtime.Replica, grace time.Duration) error {
	secs := int((grace + time.Second - 1) / time.Second)
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout+grace)
	defer cancel()
	err := d.cli.ContainerStop(ctx, r.ID, container.StopOptions{Timeout: &secs})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("replica %d: stop container %s: %s", r.Index, shortID(r.ID), oneLine(err))
	}
	err = d.cli.ContainerRemove(ctx, r.ID, container.RemoveOptions{Force: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("replica %d: remove container %s: %s", r.Index, shortID(r.ID), oneLine(err))
	}
	return nil
}

// List returns this node's Herd containers, running or not. Containers whose
// labels do not parse are logged and left alone.
func (d *Driver) List(ctx context.Context) ([]runtime.Replica, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	list, err := d.cli.ContainerList(ctx, container.ListOptions{
		All:     true,
		Filters: filters.NewArgs(filters.Arg("label", LabelManaged+"=true"), filters.Arg("label", LabelNode+"="+d.cfg.Node)),
	})
	if err != nil {
		return nil, fmt.Errorf("list containers at %s: %s", d.cli.DaemonHost(), oneLine(err))
	}
	out := make([]runtime.Replica, 0, len(list))
	for _, c := range list {
		r, err := fromLabels(c.ID, c.Labels)
		if err != nil {
			d.logger.Warn("ignoring container with bad Herd labels", "id", shortID(c.ID), "error", err)
			continue
		}
		r.Running = c.State == container.StateRunning
		r.StartedAt = time.Unix(c.Created, 0)
		out = append(out, r)
	}
	return out, nil
}

func (d *Driver) remove(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.Timeout)
	defer cancel()
	if err := d.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		d.logger.Warn("could not remove container", "id", shortID(id), "error", oneLine(err))
	}
}

func fromLabels(id string, l map[string]string) (runtime.Replica, error) {
	r := runtime.Replica{ID: id, Service: l[LabelService], Node: l[LabelNode], Arm: runtime.Arm(l[LabelArm])}
	if !r.Arm.Valid() {
		return r, fmt.Errorf("label %s=%q: not an arm", LabelArm, l[LabelArm])
	}
	var err error
	if r.Index, err = strconv.Atoi(l[LabelIndex]); err != nil || r.Index < 0 {
		return r, fmt.Errorf("label %s=%q: not a replica index", LabelIndex, l[LabelIndex])
	}
	if r.Image, err = runtime.ParseImage(l[LabelImage]); err != nil {
		return r, fmt.Errorf("label %s: %w", LabelImage, err)
	}
	if r.HostIP, err = netip.ParseAddr(l[LabelHostIP]); err != nil {
		return r, fmt.Errorf("label %s=%q: not an IP address", LabelHostIP, l[LabelHostIP])
	}
	port, err := strconv.ParseUint(l[LabelPort], 10, 16)
	if err != nil || port == 0 {
		return r, fmt.Errorf("label %s=%q: not a port", LabelPort, l[LabelPort])
	}
	r.Port = uint16(port)
	return r, nil
}

// isPortInUse recognises the engine's wording for a taken host port across
// versions ("address already in use", "port is already allocated").
func isPortInUse(err error) bool {
	s := err.Error()
	return strings.Contains(s, "address already in use") || strings.Contains(s, "port is already allocated")
}

// sanitize keeps a node name valid in a container name ([a-zA-Z0-9_.-]).
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
			return r
		}
		return '_'
	}, s)
}

func shortID(id string) string { return id[:min(12, len(id))] }

// oneLine flattens the engine's multi-line error texts.
func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }
