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
// rollout last set, so an agent restarted after a rollout comes back on the
// new version rather than on its --image flag.
const DesiredFile = "desired.json"

// desired is the desired state file. Flag records the --image the agent was
// started with when Image was set: an operator who later starts the agent
// with a different --image means it, and the flag wins.
type desired struct {
	Image string `json:"image"`
	Flag  string `json:"flag"`
}

// loadDesired returns the image the agent should run: the recorded one,
// unless the file is absent or was written under another --image flag.
func loadDesired(dir string, flag runtime.Image) (runtime.Image, error) {
	if dir == "" {
		return flag, nil
	}
	path := filepath.Join(dir, DesiredFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return flag, nil
	}
	if err != nil {
		return flag, fmt.Errorf("desired state %s: %w", path, err)
	}
	var d desired
	if err := json.Unmarshal(b, &d); err != nil {
		return flag, fmt.Errorf("desired state %s is corrupt: %w (remove it to start from the configured image)", path, err)
	}
	img, err := runtime.ParseImage(d.Image)
	if err != nil {
		return flag, fmt.Errorf("desired state %s: %w (remove it to start from the configured image)", path, err)
	}
	if d.Flag != flag.String() {
		return flag, nil
	}
	return img, nil
}

func saveDesired(dir string, img, flag runtime.Image) error {
	if dir == "" {
		return nil
	}
	b, err := json.Marshal(desired{Image: img.String(), Flag: flag.String()})
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, DesiredFile), b, 0o644)
}
