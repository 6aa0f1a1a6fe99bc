// Package docs checks that every command the documentation shows is
// exercised: each ```sh block in README.md and docs/*.md is preceded by
// <!-- doc-test: REF, … --> where REF is "run" (this test runs the block
// against a live `make demo` cluster), the name of a test that exercises it,
// or a file of the repository that does (such as .ci/run).
package docs

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/internal/testutil"
)

type block struct {
	file string
	line int
	lang string
	refs []string
	text string
}

var annotation = regexp.MustCompile(`^\s*<!-- doc-test: (.+) -->\s*$`)

// blocks returns the fenced code blocks of a Markdown file with the
// doc-test annotation on the line before each, if any.
func blocks(t *testing.T, path string) []block {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var out []block
	var cur *block
	var prev string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case cur == nil && strings.HasPrefix(trimmed, "```"):
			cur = &block{file: path, line: n, lang: strings.TrimPrefix(trimmed, "```")}
			if m := annotation.FindStringSubmatch(prev); m != nil {
				for _, r := range strings.Split(m[1], ",") {
					cur.refs = append(cur.refs, strings.TrimSpace(r))
				}
			}
		case cur != nil && trimmed == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.text += strings.TrimPrefix(line, "  ") + "\n"
		}
		if trimmed != "" {
			prev = line
		}
	}
	require.NoError(t, sc.Err())
	require.Nil(t, cur, "%s: a code block is not closed", path)
	return out
}

// testNames are the Test functions of the repository.
func testNames(t *testing.T, root string) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	re := regexp.MustCompile(`(?m)^func (Test\w+)\(`)
	require.NoError(t, filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return err
		}
		src, err := os.ReadFile(path)
		for _, m := range re.FindAllSubmatch(src, -1) {
			names[string(m[1])] = true
		}
		return err
	}))
	return names
}

// TestDocs: every sh block is accounted for, and the "run" blocks (the
// README's tour, the operations guide's key rotation, …) run against the
// cluster `make demo` starts, exactly as written.
func TestDocs(t *testing.T) {
	root := testutil.RepoRoot(t)
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	require.NoError(t, err)
	files = append([]string{filepath.Join(root, "README.md")}, files...)
	tests := testNames(t, root)
	var run, hcl []block
	for _, f := range files {
		for _, b := range blocks(t, f) {
			where := fmt.Sprintf("%s:%d", strings.TrimPrefix(b.file, root+"/"), b.line)
			assert.NotEmpty(t, b.lang, "%s: a code block says what it holds (sh, hcl, text)", where)
			if b.lang == "hcl" {
				hcl = append(hcl, b)
			}
			if b.lang != "sh" {
				continue
			}
			if !assert.NotEmpty(t, b.refs, "%s: a sh block without <!-- doc-test: … --> (who runs these commands?)", where) {
				continue
			}
			for _, r := range b.refs {
				switch {
				case r == "run":
					run = append(run, b)
				case strings.HasPrefix(r, "Test"):
					assert.True(t, tests[r], "%s: names %s, which is not a test of this repository", where, r)
				default:
					assert.FileExists(t, filepath.Join(root, r), "%s: names %s", where, r)
				}
			}
		}
	}
	require.GreaterOrEqual(t, len(run), 2, "the tour and the operations guide's blocks run here")
	if t.Failed() {
		return
	}

	require.NotEmpty(t, hcl)
	for _, b := range hcl {
		checkConfigExample(t, b)
	}

	demo := startDemo(t, root)
	key, err := os.ReadFile(filepath.Join(demo, "gossip.key"))
	require.NoError(t, err)
	var all strings.Builder
	for _, b := range run {
		where := fmt.Sprintf("%s:%d", strings.TrimPrefix(b.file, root+"/"), b.line)
		cmd := exec.Command("bash", "--norc", "-e", "-o", "pipefail", "-x", "-c", b.text)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "PATH="+filepath.Join(root, "bin")+":"+os.Getenv("PATH"),
			"HERD_ENCRYPT="+strings.TrimSpace(string(key)))
		began := time.Now()
		out, err := cmd.CombinedOutput()
		t.Logf("%s ran in %s:\n%s", where, time.Since(began).Round(time.Millisecond), testutil.Tail(string(out), 3000))
		require.NoError(t, err, "%s failed", where)
		all.Write(out)
	}
	out := all.String()
	instances := map[string]bool{}
	for _, m := range regexp.MustCompile(`"instance":\s*"([^"]+)"`).FindAllStringSubmatch(out, -1) {
		instances[m[1]] = true
	}
	assert.GreaterOrEqual(t, len(instances), 12, "the tour's 12 requests reach all 12 replicas")
	for _, want := range []string{"host-1", "host-2", "host-3", `"version":"1.0.0"`, `"label":"joy"`,
		"install: done on 4 of 4 members", "remove: done on 4 of 4 members"} {
		assert.True(t, strings.Contains(out, want), "the commands' output shows %s", want)
	}
	finished := regexp.MustCompile(`(?m)^rollout \S+ succeeded: 3 hosts on predictor:(\S+)$`).FindAllStringSubmatch(out, -1)
	require.Len(t, finished, 2, "the tour's rollout and rollback both succeed")
	assert.Equal(t, "1.1.0", finished[0][1])
	assert.Equal(t, "1.0.0", finished[1][1])
}

// checkConfigExample loads a config file example of the docs (its first
// line names /etc/herd/agent.hcl or gateway.hcl) with the real binary: the
// file must load, so the run stops only at the bad --log-level given after it.
func checkConfigExample(t *testing.T, b block) {
	t.Helper()
	args := map[string][]string{"agent.hcl": {"agent", "join"}, "gateway.hcl": {"gateway", "run"}}
	first, _, _ := strings.Cut(b.text, "\n")
	cmd, ok := args[filepath.Base(strings.TrimSpace(strings.TrimPrefix(first, "#")))]
	require.True(t, ok, "%s:%d: the example's first line names /etc/herd/agent.hcl or gateway.hcl", b.file, b.line)
	path := filepath.Join(t.TempDir(), "example.hcl")
	require.NoError(t, os.WriteFile(path, []byte(b.text), 0o600))
	bin := filepath.Join(t.TempDir(), cmd[0])
	testutil.GoBuild(t, "./cmd/"+cmd[0], bin)
	out, err := exec.Command(bin, append(cmd[1:], "--config", path, "--log-level", "nonsense")...).CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), `--log-level "nonsense"`, "%s:%d: the example loads: %s", b.file, b.line, out)
}

// startDemo runs `make demo` as a user would, waits until it says ready,
// and stops it with Ctrl-C (SIGINT to its process group) when the test ends,
// waiting until every process it started has exited.
func startDemo(t *testing.T, root string) string {
	t.Helper()
	for _, addr := range []string{"127.0.0.1:8080", "127.0.0.1:7070"} {
		if c, err := (&net.Dialer{Timeout: time.Second}).Dial("tcp", addr); err == nil {
			c.Close()
			t.Fatalf("%s is in use: the demo and the README's commands need it", addr)
		}
	}
	dir := t.TempDir()
	var log bytes.Buffer
	cmd := exec.Command("make", "-s", "demo")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "DEMO_DIR="+dir)
	cmd.Stdout, cmd.Stderr = &syncWriter{buf: &log}, &syncWriter{buf: &log}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		killLeftovers(t, dir)
		if t.Failed() {
			logDemoWarnings(t, dir)
		}
	})
	deadline := time.Now().Add(3 * time.Minute)
	for !strings.Contains(logString(&log), "ready:") {
		select {
		case <-done:
			t.Fatalf("make demo exited:\n%s", logString(&log))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("make demo not ready after 3 minutes:\n%s", logString(&log))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("make demo:\n%s", logString(&log))
	return dir
}

// logDemoWarnings shows what the demo's processes logged above info level
// (a member marked failed, a deploy request not answered, …), for a failure
// that the commands' output does not explain.
func logDemoWarnings(t *testing.T, dir string) {
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, f := range logs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var lines []string
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "[WARN]") || strings.Contains(l, "[ERROR]") {
				lines = append(lines, l)
			}
		}
		t.Logf("%s, warnings and errors:\n%s", filepath.Base(f), testutil.Tail(strings.Join(lines, "\n"), 3000))
	}
}

var logMu sync.Mutex

// syncWriter lets the demo's stdout and stderr share one buffer.
type syncWriter struct{ buf *bytes.Buffer }

func (w *syncWriter) Write(p []byte) (int, error) {
	logMu.Lock()
	defer logMu.Unlock()
	return w.buf.Write(p)
}

func logString(b *bytes.Buffer) string {
	logMu.Lock()
	defer logMu.Unlock()
	return b.String()
}

// killLeftovers waits for the processes whose command line names dir (the
// demo's gateway, agents and replicas) to exit after Ctrl-C, and fails the
// test, killing them, if any is still there after 30 s.
func killLeftovers(t *testing.T, dir string) {
	t.Helper()
	var left []int
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if left = processesNaming(dir); len(left) == 0 {
			return
		}
	}
	for _, pid := range left {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	t.Errorf("Ctrl-C left %d demo processes running (killed): %v", len(left), left)
}

func processesNaming(s string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte(s)) {
			pids = append(pids, pid)
		}
	}
	return pids
}
