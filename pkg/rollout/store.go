package rollout

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/herd-cluster/herd/internal/atomicfile"
	"github.com/herd-cluster/herd/pkg/runtime"
)

// MaxHistory bounds the rollouts kept in the state file besides the current one.
const MaxHistory = 50

// store keeps the coordinator's state in two files, each written atomically
// (internal/atomicfile):
//
//   - path (rollouts.json) holds the last rollout and the ones before it, in
//     the format earlier versions read and write. It is written when a
//     rollout starts and when it ends: a step does not rewrite the history.
//   - progressPath (rollouts.progress.json) holds the running rollout as it
//     stands, and why its batch is reverting if it is, written at every step
//     that changes them. It belongs to the rollout that path names as its
//     current one while that one runs; otherwise it is stale and ignored.
//
// An earlier version reading these files resumes a running rollout from
// where it stood when it started (the hosts are asked for the image again,
// which changes nothing on those that run it). An empty path keeps nothing.
type store struct {
	path, progressPath string
}

func newStore(path string) store {
	if path == "" {
		return store{}
	}
	return store{path: path, progressPath: strings.TrimSuffix(path, ".json") + ".progress.json"}
}

// stateFile is the format of path.
type stateFile struct {
	Current *Rollout  `json:"current,omitempty"`
	History []Rollout `json:"history"` // newest first
}

// progressFile is the format of progressPath.
type progressFile struct {
	Rollout Rollout `json:"rollout"`
	Revert  *revert `json:"revert,omitempty"`
}

// errCorrupt: a state file does not parse, or a running rollout in it is
// one that cannot be resumed.
var errCorrupt = errors.New("corrupt")

// load reads the state: the current (running or last) rollout, why its
// batch is reverting, and the history. Missing files are an empty state; a
// corrupt one is an error naming it.
func (s store) load() (cur *Rollout, rev *revert, history []Rollout, err error) {
	var st stateFile
	if ok, err := readJSON(s.path, &st, hintHistory); err != nil || !ok {
		return nil, nil, nil, err
	}
	cur, history = st.Current, st.History
	from, hint := s.path, hintHistory
	if cur != nil && !cur.Done() {
		var pf progressFile
		ok, err := readJSON(s.progressPath, &pf, hintProgress)
		if err != nil {
			return nil, nil, nil, err
		}
		if ok && pf.Rollout.ID == cur.ID {
			cur, rev = &pf.Rollout, pf.Revert
			from, hint = s.progressPath, hintProgress
		}
	}
	if err := check(cur, rev); err != nil {
		return nil, nil, nil, fmt.Errorf("rollout state %s is %w: %w (%s)", from, errCorrupt, err, hint)
	}
	if cur == nil || cur.Done() {
		rev = nil
	}
	return cur, rev, history, nil
}

// What to do with a corrupt state file, said in the error.
const (
	hintHistory  = "move it away to start with no history"
	hintProgress = "move it away to resume the running rollout from its start"
)

// readJSON reads path into v; false when there is no such file.
func readJSON(path string, v any, hint string) (bool, error) {
	if path == "" {
		return false, nil
	}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("rollout state %s: %w", path, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("rollout state %s is %w: %w (%s)", path, errCorrupt, err, hint)
	}
	return true, nil
}

// check validates what a resumed rollout relies on.
func check(r *Rollout, rev *revert) error {
	if r == nil || r.Done() {
		return nil
	}
	if err := r.Options.Validate(); err != nil {
		return fmt.Errorf("running rollout %s: %w", r.ID, err)
	}
	if _, err := runtime.ParseImage(r.Image); err != nil {
		return fmt.Errorf("running rollout %s: %w", r.ID, err)
	}
	for _, h := range r.Hosts {
		if h.Batch < 1 || h.Batch > len(r.Hosts) || h.Node == "" {
			return fmt.Errorf("running rollout %s: host %q in batch %d of %d hosts", r.ID, h.Node, h.Batch, len(r.Hosts))
		}
		if !h.State.inProgress() {
			return fmt.Errorf("running rollout %s: host %q in state %q", r.ID, h.Node, h.State)
		}
	}
	if rev != nil && rev.Final != StateFailed && rev.Final != StateAborted {
		return fmt.Errorf("running rollout %s: reverting to end %q", r.ID, rev.Final)
	}
	return nil
}

// saveProgress saves the running rollout as it stands.
func (s store) saveProgress(r *Rollout, rev *revert) error {
	return writeJSON(s.progressPath, progressFile{Rollout: *r, Revert: rev})
}

// saveAll saves the current rollout and the history.
func (s store) saveAll(cur *Rollout, history []Rollout) error {
	return writeJSON(s.path, stateFile{Current: cur, History: history})
}

func writeJSON(path string, v any) error {
	if path == "" {
		return nil
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("rollout state %s: %w", path, err)
	}
	return atomicfile.Write(path, b, 0o600)
}
