package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/internal/testutil"
)

// builtFaults are the faults TestBuiltWithFaults builds in, as the e2e
// harness builds its bad versions: every other /predict request answered
// 500, and the process gone after the 4th.
const builtFaults = "error-rate=0.5,crash-after=4"

// buildBad builds the predictor with builtFaults, as a release would be
// (a static binary, -X main.faults).
func buildBad(t *testing.T) string {
	t.Helper()
	exe := filepath.Join(t.TempDir(), "predictor")
	testutil.GoBuild(t, "./examples/predictor", exe, "main.version=1.1.0-bad", "main.faults="+builtFaults)
	return exe
}

// run is a predictor process on loopback.
type run struct {
	base   string
	stderr *bytes.Buffer
	done   chan struct{}
	err    error // cmd.Wait's, once done is closed
}

func start(t *testing.T, exe string, args ...string) *run {
	t.Helper()
	port := testutil.FreePort(t, "127.0.0.1")
	cmd := exec.Command(exe, args...)
	cmd.Env = []string{"HOST=127.0.0.1", fmt.Sprintf("PORT=%d", port), "HERD_INSTANCE=t"}
	r := &run{base: fmt.Sprintf("http://127.0.0.1:%d", port), stderr: &bytes.Buffer{}, done: make(chan struct{})}
	cmd.Stderr = r.stderr
	require.NoError(t, cmd.Start())
	go func() { r.err = cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // a no-op once it exited
		<-r.done
	})
	return r
}

// exitCode waits for the exit and returns its status.
func (r *run) exitCode(t *testing.T) int {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("still running; stderr:\n%s", r.stderr)
	}
	var exit *exec.ExitError
	if errors.As(r.err, &exit) {
		return exit.ExitCode()
	}
	require.NoError(t, r.err)
	return 0
}

// answer sends req and decodes the whole answer: a crashing process's
// last answer arrives complete.
func answer(t *testing.T, req *http.Request) (int, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var body map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	return resp.StatusCode, body
}

// TestBuiltWithFaults: a binary built with -X main.faults serves those
// faults (1 in 2 /predict answered 500, exit 1 after the 4th answer) while
// its /healthz passes; a flag wins over the fault built in; a bad flag is
// one line and exit 2.
func TestBuiltWithFaults(t *testing.T) {
	exe := buildBad(t)

	t.Run("built in", func(t *testing.T) {
		r := start(t, exe)
		testutil.WaitOK(t, r.base[len("http://"):], "/healthz", 10*time.Second)
		var codes []int
		for n := 1; n <= 4; n++ {
			req := predictGet(r.base)
			if n%2 == 1 {
				req = predictPost(r.base)
			}
			code, body := answer(t, req)
			codes = append(codes, code)
			if code == http.StatusOK {
				assert.Equal(t, "1.1.0-bad", body["version"])
			}
			if n < 4 {
				testutil.WaitOK(t, r.base[len("http://"):], "/healthz", time.Second)
			}
		}
		assert.Equal(t, []int{200, 500, 200, 500}, codes)
		assert.Equal(t, 1, r.exitCode(t), "exit status after the 4th answer")
		assert.Contains(t, r.stderr.String(), "with faults "+builtFaults)
		assert.Contains(t, r.stderr.String(), "predictor: injected fault: crash after answering 4 /predict requests")
	})

	t.Run("flag wins", func(t *testing.T) {
		r := start(t, exe, "serve", "--fault-error-rate", "0")
		testutil.WaitOK(t, r.base[len("http://"):], "/healthz", 10*time.Second)
		for n := 1; n <= 4; n++ {
			code, _ := answer(t, predictGet(r.base))
			assert.Equal(t, http.StatusOK, code, "request %d", n)
		}
		assert.Equal(t, 1, r.exitCode(t), "crash-after stays built in")
	})

	t.Run("flags without serve", func(t *testing.T) {
		r := start(t, exe, "--fault-crash-after", "1", "--fault-error-rate", "1")
		testutil.WaitOK(t, r.base[len("http://"):], "/healthz", 10*time.Second)
		code, _ := answer(t, predictPost(r.base))
		assert.Equal(t, http.StatusInternalServerError, code)
		assert.Equal(t, 1, r.exitCode(t))
	})

	for _, args := range [][]string{
		{"serve", "--fault-error-rate", "5"},
		{"--fault-delay", "fast"},
		{"serve", "--fault-crash-after", "-1"},
		{"serve", "--fault-nope"},
		{"serve", "now"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			r := start(t, exe, args...)
			assert.Equal(t, 2, r.exitCode(t))
			lines := strings.Split(strings.TrimSpace(r.stderr.String()), "\n")
			assert.Len(t, lines, 1, "one line: %q", r.stderr)
			assert.True(t, strings.HasPrefix(lines[0], "predictor: "), lines[0])
		})
	}

	t.Run("help", func(t *testing.T) {
		r := start(t, exe, "--help")
		assert.Equal(t, 0, r.exitCode(t))
		assert.Contains(t, r.stderr.String(), `built with faults "`+builtFaults+`"`)
		assert.Contains(t, r.stderr.String(), "-fault-crash-after")
	})
}

// TestHarnessVariants: the bad versions the e2e harness builds
// (testutil.PredictorFaults of each) are the faults they are named for.
func TestHarnessVariants(t *testing.T) {
	for v, want := range map[string]Faults{
		testutil.PredictorErr5:     {ErrorRate: 0.05},
		testutil.PredictorSlow50:   {Delay: 50 * time.Millisecond},
		testutil.PredictorCrash100: {CrashAfter: 100},
	} {
		got, err := parseFaults(testutil.PredictorFaults(v))
		require.NoError(t, err, v)
		assert.Equal(t, want, got, v)
	}
	assert.Len(t, testutil.PredictorFaultVersions(), 3)
}
