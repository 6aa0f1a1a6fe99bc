// Package process is the replica driver that runs each replica as a local
// process: the embedded runtime for hosts without Docker and for the demo.
//
// An image name:tag resolves to the executable <ImagesDir>/<name>/<tag>,
// the name's slashes making directories: registry:5000/team/predictor:1.1.0
// is <ImagesDir>/registry:5000/team/predictor/1.1.0. A reference with a
// digest is refused (runtime.ErrImageUnsupported): a digest pins content in
// a registry, and this driver has none to check it against.
// The replica gets its address in the environment: HOST, PORT, and
// HERD_INSTANCE, HERD_SERVICE, HERD_REPLICA, HERD_IMAGE. Each replica runs in
// its own process group, so a terminal's Ctrl-C reaches the agent only and
// the agent stops replicas in order. A state file per replica records its
// pid, so an agent restarted after a crash adopts replicas still running.
//
// Files are named after the replica: <service>-<index>.json and .log for
// the agent's own, <service>-canary<index> and <service>-baseline<index>
// for a canary's (runtime.Arm.Name), whose state file records its arm.
package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/herd-cluster/herd/internal/atomicfile"
	"github.com/herd-cluster/herd/pkg/runtime"
)

// Config configures a Driver.
type Config struct {
	// ImagesDir holds the executables: <ImagesDir>/<name>/<tag>, the name's
	// slashes (and a registry host in it) making directories. Required.
	ImagesDir string
	// StateDir holds one state file per replica. Required.
	StateDir string
	// LogDir receives each replica's stdout and stderr as <service>-<index>.log
	// (<service>-canary<index>.log for a canary's replica, and so on).
	// Empty: StateDir.
	LogDir string
	// PollInterval is how often Stop checks whether an adopted process (not
	// this process's child) has exited. Default 20 ms.
	PollInterval time.Duration
	Logger       hclog.Logger
}

// Driver runs replicas as processes.
type Driver struct {
	cfg    Config
	logger hclog.Logger

	mu       sync.Mutex
	children map[int]*child // by pid: processes this Driver started
}

type child struct {
	exited chan struct{}
}

// state is a replica's state file.
type state struct {
	PID       int       `json:"pid"`
	Exe       string    `json:"exe"`
	Service   string    `json:"service"`
	Node      string    `json:"node"`
	Arm       string    `json:"arm,omitempty"` // runtime.Arm; absent for the agent's own replicas
	Index     int       `json:"index"`
	Image     string    `json:"image"`
	HostIP    string    `json:"host_ip"`
	Port      uint16    `json:"port"`
	StartedAt time.Time `json:"started_at"`
}

// ErrNoImagesDir is New's error for a Config without ImagesDir.
var ErrNoImagesDir = errors.New("process runtime: no images dir")

// New returns a Driver, creating its directories.
func New(cfg Config) (*Driver, error) {
	if cfg.ImagesDir == "" {
		return nil, ErrNoImagesDir
	}
	if cfg.StateDir == "" {
		return nil, errors.New("process runtime: state dir is required")
	}
	if cfg.LogDir == "" {
		cfg.LogDir = cfg.StateDir
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 20 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.Default()
	}
	for _, dir := range []string{cfg.StateDir, cfg.LogDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("process runtime: %w", err)
		}
	}
	return &Driver{cfg: cfg, logger: cfg.Logger.Named("process"), children: make(map[int]*child)}, nil
}

// Executable returns the path an image resolves to, or an error wrapping
// runtime.ErrImageNotFound, or runtime.ErrImageUnsupported for a reference
// with a digest or one that does not name a file inside the images dir.
func (d *Driver) Executable(img runtime.Image) (string, error) {
	if img.Digest != "" {
		return "", fmt.Errorf("process runtime: image %s: %w: it has a digest, and the process runtime has no registry "+
			"to check one against; give name:tag", img, runtime.ErrImageUnsupported)
	}
	// ParseImage's grammar already keeps every part a plain file name; an
	// Image built by hand gets the same guarantee here.
	rel := filepath.Join(filepath.FromSlash(img.Name), img.Tag)
	if img.Name == "" || img.Tag == "" || !filepath.IsLocal(rel) {
		return "", fmt.Errorf("process runtime: image %q: %w: not a name:tag inside the images dir",
			img.String(), runtime.ErrImageUnsupported)
	}
	abs, err := filepath.Abs(filepath.Join(d.cfg.ImagesDir, rel))
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%w: %s has no executable at %s", runtime.ErrImageNotFound, img, abs)
	}
	return abs, nil
}

// Resolve checks that img exists.
func (d *Driver) Resolve(_ context.Context, img runtime.Image) error {
	_, err := d.Executable(img)
	return err
}

// Start starts one replica.
func (d *Driver) Start(_ context.Context, spec runtime.Spec) (runtime.Replica, error) {
	exe, err := d.Executable(spec.Image)
	if err != nil {
		return runtime.Replica{}, err
	}
	if !spec.Arm.Valid() {
		return runtime.Replica{}, fmt.Errorf("start replica %d: unknown arm %q", spec.Index, spec.Arm)
	}
	logPath := filepath.Join(d.cfg.LogDir, spec.Service+"-"+spec.Arm.Name(spec.Index)+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return runtime.Replica{}, fmt.Errorf("replica %d log: %w", spec.Index, err)
	}
	defer logFile.Close() // the child holds its own descriptor
	cmd := exec.Command(exe)
	cmd.Env = append(environWithoutHerd(),
		"HOST="+spec.HostIP.String(),
		"PORT="+strconv.Itoa(int(spec.Port)),
		"HERD_INSTANCE="+spec.Instance(),
		"HERD_SERVICE="+spec.Service,
		"HERD_REPLICA="+strconv.Itoa(spec.Index),
		"HERD_IMAGE="+spec.Image.String(),
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return runtime.Replica{}, fmt.Errorf("start replica %d (%s): %w", spec.Index, exe, err)
	}
	st := state{
		PID: cmd.Process.Pid, Exe: exe, Service: spec.Service, Node: spec.Node, Arm: string(spec.Arm), Index: spec.Index,
		Image: spec.Image.String(), HostIP: spec.HostIP.String(), Port: spec.Port, StartedAt: time.Now().UTC(),
	}
	c := &child{exited: make(chan struct{})}
	d.mu.Lock()
	d.children[st.PID] = c
	d.mu.Unlock()
	go func() {
		_ = cmd.Wait() // reap; the exit is seen through Running and health
		close(c.exited)
		d.mu.Lock()
		delete(d.children, st.PID)
		d.mu.Unlock()
	}()
	if err := d.writeState(st); err != nil {
		_ = d.kill(st.PID)
		return runtime.Replica{}, err
	}
	return st.replica(true), nil
}

// List returns the replicas recorded in the state dir, with whether each
// still runs.
func (d *Driver) List(_ context.Context) ([]runtime.Replica, error) {
	entries, err := os.ReadDir(d.cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("list replicas: %w", err)
	}
	var out []runtime.Replica
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		path := filepath.Join(d.cfg.StateDir, e.Name())
		st, err := readState(path)
		if err != nil {
			d.logger.Warn("ignoring unreadable replica state file", "file", path, "error", err)
			continue
		}
		out = append(out, st.replica(d.alive(st)))
	}
	return out, nil
}

// Stop sends SIGTERM to the replica's process group, waits up to grace for
// it to exit, then kills it; and forgets the replica.
func (d *Driver) Stop(ctx context.Context, r runtime.Replica, grace time.Duration) error {
	path := d.statePath(r.Service, r.Arm, r.Index)
	st, err := readState(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stop replica %d: %w", r.Index, err)
	}
	if d.alive(st) {
		_ = syscall.Kill(-st.PID, syscall.SIGTERM)
		if !d.waitExit(ctx, st, grace) {
			d.logger.Warn("replica did not stop in time; killing", "index", r.Index, "pid", st.PID, "grace", grace)
			_ = d.kill(st.PID)
			d.waitExit(context.Background(), st, grace)
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("stop replica %d: %w", r.Index, err)
	}
	return nil
}

func (d *Driver) kill(pid int) error { return syscall.Kill(-pid, syscall.SIGKILL) }

// child is the process this Driver started with pid, or nil for an adopted one.
func (d *Driver) child(pid int) *child {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.children[pid]
}

// waitExit waits until st's process is gone, up to grace or ctx's end.
func (d *Driver) waitExit(ctx context.Context, st state, grace time.Duration) bool {
	timer := time.NewTimer(grace)
	defer timer.Stop()
	if c := d.child(st.PID); c != nil {
		select {
		case <-c.exited:
			return true
		case <-timer.C:
		case <-ctx.Done():
		}
		return false
	}
	tick := time.NewTicker(d.cfg.PollInterval)
	defer tick.Stop()
	for d.alive(st) {
		select {
		case <-tick.C:
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// alive tells whether st's process runs: the pid exists, is not a zombie,
// and still runs st's executable (not a recycled pid).
func (d *Driver) alive(st state) bool {
	if c := d.child(st.PID); c != nil {
		select {
		case <-c.exited:
			return false
		default:
			return true
		}
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", st.PID))
	if err != nil || strings.TrimSuffix(exe, " (deleted)") != st.Exe {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", st.PID))
	if err != nil {
		return false
	}
	// Field 3, after the parenthesised command name, is the state.
	if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
		return false
	}
	return true
}

func (d *Driver) statePath(service string, arm runtime.Arm, index int) string {
	return filepath.Join(d.cfg.StateDir, service+"-"+arm.Name(index)+".json")
}

// writeState writes atomically: temp file, fsync, rename.
func (d *Driver) writeState(st state) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(d.statePath(st.Service, runtime.Arm(st.Arm), st.Index), b, 0o644)
}

func readState(path string) (state, error) {
	var st state
	b, err := os.ReadFile(path)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("corrupt state file %s: %w", path, err)
	}
	if st.PID <= 1 || st.Exe == "" {
		return st, fmt.Errorf("corrupt state file %s: no pid or executable", path)
	}
	if !runtime.Arm(st.Arm).Valid() {
		return st, fmt.Errorf("state file %s: unknown arm %q", path, st.Arm)
	}
	return st, nil
}

func (st state) replica(running bool) runtime.Replica {
	img, _ := runtime.ParseImage(st.Image)
	r := runtime.Replica{
		ID: strconv.Itoa(st.PID), Service: st.Service, Node: st.Node, Arm: runtime.Arm(st.Arm), Index: st.Index, Image: img,
		Port: st.Port, Running: running, StartedAt: st.StartedAt, PID: st.PID,
	}
	r.HostIP, _ = netip.ParseAddr(st.HostIP)
	return r
}

// environWithoutHerd is the agent's environment less its own HERD_*
// settings (a replica must not inherit the admin token or gossip key).
func environWithoutHerd() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HERD_") {
			env = append(env, kv)
		}
	}
	return env
}
