package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/internal/testutil"
)

// upgradable is a gateway run from a copy of the binary of its own, which
// the test may replace, with a pid file: after an upgrade the process
// serving is not the one the test started.
type upgradable struct {
	*gatewayProc
	bin, pidFile string
}

func startUpgradable(t *testing.T, extra ...string) *upgradable {
	t.Helper()
	buildAll(t)
	dir := t.TempDir()
	u := &upgradable{bin: filepath.Join(dir, "gateway"), pidFile: filepath.Join(dir, "gateway.pid")}
	copyFile(t, filepath.Join(binDir, "gateway"), u.bin)
	u.gatewayProc = newGateway(t, append([]string{"--pid-file", u.pidFile}, extra...)...)
	u.gatewayProc.args[0] = u.bin
	u.restart(t)
	t.Cleanup(func() { // the process serving last may be a grandchild of the test
		if pid, err := u.pid(); err == nil {
			_ = syscall.Kill(pid, syscall.SIGTERM)
			waitGone(t, pid, 20*time.Second)
		}
	})
	return u
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	require.NoError(t, err)
	tmp := to + ".new"
	require.NoError(t, os.WriteFile(tmp, b, 0o755))
	require.NoError(t, os.Rename(tmp, to)) // as a package manager replaces a binary in use
}

// pid is the serving process, from the pid file.
func (u *upgradable) pid() (int, error) {
	b, err := os.ReadFile(u.pidFile)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

func waitGone(t *testing.T, pid int, within time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool { return !pidAlive(pid) }, within, 10*time.Millisecond, "process %d exits", pid)
}

// upgrade sends SIGHUP and waits until a new process serves and the old one
// has exited; it returns how long that took.
func (u *upgradable) upgrade(t *testing.T) time.Duration {
	t.Helper()
	old, err := u.pid()
	require.NoError(t, err)
	began := time.Now()
	require.NoError(t, syscall.Kill(old, syscall.SIGHUP))
	var pid int
	require.Eventually(t, func() bool {
		pid, err = u.pid()
		return err == nil && pid != old
	}, 30*time.Second, 5*time.Millisecond, "a new process serves")
	waitGone(t, old, 40*time.Second)
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	require.NoError(t, err)
	assert.Equal(t, u.bin, exe, "the new process runs the binary now on disk")
	return time.Since(began)
}

// TestChaosGatewayUpgrades: 20 upgrades in a row (SIGHUP: the binary on
// disk takes over the listening sockets, the view and then the gossip
// identity) under open-loop GET and POST load: not one request fails. A new
// build is put in place before some of them, as a package upgrade does.
func TestChaosGatewayUpgrades(t *testing.T) {
	u := startUpgradable(t)
	startAgent(t, u.gatewayProc, "up-a", "127.0.0.2", 2)
	startAgent(t, u.gatewayProc, "up-b", "127.0.0.3", 2)
	u.waitBackends(t, 4, 30*time.Second)
	l := startMixedLoad(t, u.url, 200)
	time.Sleep(2 * time.Second)
	quiet := time.Now()
	rebuilt := filepath.Join(t.TempDir(), "gateway")
	testutil.GoBuild(t, "./cmd/gateway", rebuilt, "github.com/herd-cluster/herd/internal/cliutil.Version=upgraded")
	var took []time.Duration
	for i := range 20 {
		if i%5 == 4 {
			copyFile(t, rebuilt, u.bin)
		}
		took = append(took, u.upgrade(t))
		assert.Len(t, u.backends(t), 4, "upgrade %d: the new process routes to every backend", i+1)
	}
	done := time.Now()
	time.Sleep(time.Second)
	l.finish()
	slow := slicesMax(took)
	t.Logf("MEASURE 20 gateway upgrades under %d requests (GET and POST /predict, 200/s open loop): failed=%d; "+
		"each took %s median, %s at most (new process serving, old one gone); p99 %s before, %s during the upgrades",
		l.sent.Load(), l.failed.Load(), median(took).Round(time.Millisecond), slow.Round(time.Millisecond),
		l.p99(quiet.Add(-2*time.Second), quiet).Round(time.Microsecond), l.p99(quiet, done).Round(time.Microsecond))
	assert.Zero(t, l.failed.Load(), "failures:\n%s", l.failures())
}

// TestChaosGatewayBrokenUpgrade: a new binary that exits at once, then one
// that never says it is ready: each time the old process keeps serving,
// says why, and no request fails; the good binary back, the upgrade works.
func TestChaosGatewayBrokenUpgrade(t *testing.T) {
	u := startUpgradable(t, "--upgrade-timeout", "2s")
	startAgent(t, u.gatewayProc, "bu-a", "127.0.0.2", 2)
	u.waitBackends(t, 2, 30*time.Second)
	l := startMixedLoad(t, u.url, 100)
	good := filepath.Join(t.TempDir(), "gateway.good")
	copyFile(t, u.bin, good)
	pid, err := u.pid()
	require.NoError(t, err)
	for _, tc := range []struct{ script, says string }{
		{"#!/bin/sh\necho 'broken build' >&2\nexit 3\n", "exit status 3"},
		{"#!/bin/sh\nexec sleep 30\n", "timed out"},
	} {
		script := filepath.Join(t.TempDir(), "broken")
		require.NoError(t, os.WriteFile(script, []byte(tc.script), 0o755))
		copyFile(t, script, u.bin)
		before := strings.Count(u.output(), "upgrade failed")
		require.NoError(t, syscall.Kill(pid, syscall.SIGHUP))
		require.Eventually(t, func() bool { return strings.Count(u.output(), "upgrade failed") > before },
			10*time.Second, 20*time.Millisecond, "the old process says the upgrade failed")
		assert.Contains(t, lastLine(u.output(), "upgrade failed"), tc.says)
		now, err := u.pid()
		require.NoError(t, err)
		assert.Equal(t, pid, now, "the old process serves on")
		_, err = getVersion(t, u.url)
		assert.NoError(t, err)
	}
	copyFile(t, good, u.bin)
	u.upgrade(t)
	time.Sleep(500 * time.Millisecond)
	l.finish()
	t.Logf("MEASURE broken upgrades (exits; never ready): old process kept serving; %d requests, %d failed",
		l.sent.Load(), l.failed.Load())
	assert.Zero(t, l.failed.Load(), "failures:\n%s", l.failures())
}

// TestChaosGatewayStopStart: stop then start (a systemd restart), and a
// crash then start, under open-loop load. The new process binds gossip
// first (waiting for the old one to let go of it), restores the view the
// old one saved, and opens its traffic port only then: no request that
// reaches it fails, none is answered 503 for lack of backends. Requests sent
// while no process listens are refused: that gap is measured.
func TestChaosGatewayStopStart(t *testing.T) {
	g := startGateway(t)
	startAgent(t, g, "ss-a", "127.0.0.2", 2)
	startAgent(t, g, "ss-b", "127.0.0.3", 2)
	g.waitBackends(t, 4, 30*time.Second)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		l := startMixedLoad(t, g.url, 200)
		time.Sleep(time.Second)
		stopped := time.Now()
		g.signal(sig)
		<-g.done // systemd starts the new process once the old one has exited
		exited := time.Now()
		g.proc = startProc(t, "gateway", g.args...)
		started := time.Now()
		g.waitReady(t)
		time.Sleep(time.Second)
		l.finish()
		var refused, beforeStop, other int
		var refusedFrom, refusedTo, firstNew time.Time
		for _, s := range l.samples() {
			switch {
			case s.err == "":
				if s.start.After(started) && (firstNew.IsZero() || s.at.Before(firstNew)) {
					firstNew = s.at
				}
			case strings.Contains(s.err, "connection refused"):
				refused++
				if refusedFrom.IsZero() || s.start.Before(refusedFrom) {
					refusedFrom = s.start
				}
				if s.start.After(refusedTo) {
					refusedTo = s.start
				}
			case s.start.Before(started) && !strings.Contains(s.err, "503"):
				// Sent before the new process was started, so it reached the
				// old one: a keep-alive connection it closed as the request
				// went out, or (SIGKILL) a connection the dying socket took
				// and reset, which the exit seen here can trail.
				beforeStop++
			default:
				other++
			}
		}
		t.Logf("MEASURE gateway %s then start, under %d requests (200/s open loop, GET and POST): nothing listened for %s "+
			"(%d requests refused); the old process exited %s after the signal, the new one answered %s after its start; "+
			"%d failed on the old process's closing connections, %d other",
			sig, l.sent.Load(), refusedTo.Sub(refusedFrom).Round(time.Millisecond), refused,
			exited.Sub(stopped).Round(time.Millisecond), firstNew.Sub(started).Round(time.Millisecond), beforeStop, other)
		t.Logf("first failures:\n%s", l.failures())
		assert.Zero(t, other, "no request that reached the new process failed, none answered 503:\n%s", l.failures())
		assert.Len(t, g.backends(t), 4)
	}
}

func lastLine(out, containing string) string {
	lines := strings.Split(out, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], containing) {
			return lines[i]
		}
	}
	return ""
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}

func slicesMax(d []time.Duration) time.Duration {
	m := d[0]
	for _, x := range d {
		m = max(m, x)
	}
	return m
}
