package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/herd-cluster/herd/internal/atomicfile"
	"github.com/herd-cluster/herd/pkg/runtime"
)

// DesiredFile is the agent's desired state in its data dir: the image a
// rollout last set and the replica count a scale last set, so an agent
// restarted after either comes back on them rather than on its --image and
// --replicas flags.
const DesiredFile = "desired.json"

// desired is the desired state file. Flag records the --image the agent was
// started with when Image was set, ReplicasFlag the --replicas when
// Replicas was: an operator who later starts the agent with a different
// flag means it, and the flag wins. Replicas is absent in files written
// before scaling existed.
type desired struct {
	Image        string `json:"image"`
	Flag         string `json:"flag"`
	Replicas     *int   `json:"replicas,omitempty"`
	ReplicasFlag int    `json:"replicas_flag,omitempty"`
}

// wanted is what the agent should run.
type wanted struct {
	image    runtime.Image
	replicas int
}

// loadDesired returns what the agent should run: the recorded image and
// count, each unless the file is absent or was written under another flag.
func loadDesired(dir string, flag runtime.Image, flagReplicas int) (wanted, error) {
	w := wanted{image: flag, replicas: flagReplicas}
	if dir == "" {
		return w, nil
	}
	path := filepath.Join(dir, DesiredFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return w, nil
	}
	if err != nil {
		return w, fmt.Errorf("desired state %s: %w", path, err)
	}
	var d desired
	if err := json.Unmarshal(b, &d); err != nil {
		return w, fmt.Errorf("desired state %s is corrupt: %w (remove it to start from the configured image)", path, err)
	}
	img, err := runtime.ParseImage(d.Image)
	if err != nil {
		return w, fmt.Errorf("desired state %s: %w (remove it to start from the configured image)", path, err)
	}
	if d.Replicas != nil && (*d.Replicas < 0 || *d.Replicas > MaxReplicas) {
		return w, fmt.Errorf("desired state %s: replica count %d out of range 0-%d (remove it to start from the configured count)",
			path, *d.Replicas, MaxReplicas)
	}
	if d.Flag == flag.String() {
		w.image = img
	}
	if d.Replicas != nil && d.ReplicasFlag == flagReplicas {
		w.replicas = *d.Replicas
	}
	return w, nil
}

// saveDesired records img and count as the desired state, with the flags
// they override.
func (a *Agent) saveDesired(img runtime.Image, count int) error {
	if a.cfg.DataDir == "" {
		return nil
	}
	b, err := json.Marshal(desired{Image: img.String(), Flag: a.cfg.Image.String(), Replicas: &count, ReplicasFlag: a.cfg.Replicas})
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(a.cfg.DataDir, DesiredFile), b, 0o644)
}
