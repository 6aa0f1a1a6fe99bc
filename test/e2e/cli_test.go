package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/internal/testutil"
	"github.com/herd-cluster/herd/pkg/api"
)

var programs = []string{"gateway", "agent", "clusterctl"}

// TestCLIVersionHelpAndExitCodes: every binary has --version and documents
// its exit codes in --help; a bad flag exits with 2 and names the help.
func TestCLIVersionHelpAndExitCodes(t *testing.T) {
	// Parallel, with TestAutoscale: see harness_test.go.
	t.Parallel()
	buildAll(t)
	for _, prog := range programs {
		out, code := runToEnd(t, nil, prog, "--version")
		assert.Zero(t, code, prog)
		assert.True(t, strings.HasPrefix(out, prog+" version "), "%s --version: %q", prog, out)
	}
	for _, args := range [][]string{{"gateway", "run", "--help"}, {"agent", "join", "--help"}, {"clusterctl", "--help"}} {
		out, code := runToEnd(t, nil, args...)
		assert.Zero(t, code, args)
		assert.Contains(t, out, "Exit codes:", args)
		assert.Contains(t, out, "  2  ", args)
	}
	for _, args := range [][]string{{"gateway", "run", "--bogus"}, {"agent", "join", "--replicas", "many"},
		{"clusterctl", "members", "--bogus"}, {"clusterctl", "--bogus", "members"}} {
		code, last := runBinary(t, args...)
		assert.Equal(t, 2, code, args)
		assert.Contains(t, last, "see "+args[0], args)
	}
}

// TestCLICompletion: the bash script from `completion bash` completes
// commands and flags from the binary itself; the zsh one is valid zsh and
// gets names with descriptions.
func TestCLICompletion(t *testing.T) {
	// Parallel, with TestAutoscale: see harness_test.go.
	t.Parallel()
	buildAll(t)
	bash := testutil.RequireTool(t, "bash")
	complete := func(prog string, words ...string) []string {
		t.Helper()
		script := fmt.Sprintf(`source <(%s completion bash) || exit 1
COMP_WORDS=(%s); COMP_CWORD=%d; _herd_%s; printf '%%s\n' "${COMPREPLY[@]}"`,
			prog, strings.Join(words, " "), len(words)-1, prog)
		cmd := exec.Command(bash, "--norc", "-c", script)
		cmd.Env = []string{"PATH=" + binDir + ":/usr/bin:/bin"}
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
		return strings.Fields(string(out))
	}
	assert.Equal(t, []string{"rollout", "rollback"}, complete("clusterctl", "clusterctl", "rol"))
	assert.Equal(t, []string{"--batch", "--baseline"}, complete("clusterctl", "clusterctl", "rollout", "--ba"))
	assert.Subset(t, complete("clusterctl", "clusterctl", "keys", "''"), []string{"install", "use", "remove", "list"})
	assert.Contains(t, complete("gateway", "gateway", "run", "--health-"), "--health-rise")
	assert.Contains(t, complete("agent", "agent", "join", "--rep"), "--replicas")

	zsh := testutil.RequireTool(t, "zsh")
	for _, prog := range programs {
		out, code := runToEnd(t, nil, prog, "completion", "zsh")
		require.Zero(t, code)
		cmd := exec.Command(zsh, "-n")
		cmd.Stdin = strings.NewReader(out)
		msg, err := cmd.CombinedOutput()
		assert.NoError(t, err, "%s completion zsh: %s", prog, msg)
	}
	out, code := runToEnd(t, []string{"0=zsh"}, "clusterctl", "--generate-bash-completion")
	require.Zero(t, code)
	assert.Contains(t, out, "rollout:replace the running image")
	code, last := runBinary(t, "clusterctl", "completion", "fish")
	assert.Equal(t, 2, code)
	assert.Equal(t, "clusterctl: usage: clusterctl completion bash|zsh", last)
}

// TestConfigFiles: a gateway and an agent configured by --config files (HCL
// and JSON) form a cluster; a flag overrides the file; a typo in a file is
// refused naming the key.
func TestConfigFiles(t *testing.T) {
	// Parallel, with TestAutoscale: see harness_test.go.
	t.Parallel()
	buildAll(t)
	dir := t.TempDir()
	listen := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t, "127.0.0.1"))
	admin := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t, "127.0.0.1"))
	gossip := fmt.Sprintf("127.0.0.1:%d", testutil.FreePortRange(t, 1, "127.0.0.1"))
	gwConfig := filepath.Join(dir, "gateway.hcl")
	require.NoError(t, os.WriteFile(gwConfig, []byte(fmt.Sprintf(`# /etc/herd/gateway.hcl
node           = "edge-1"
listen         = "%s"
admin          = "127.0.0.1:1"  # overridden on the command line
bind           = "%s"
data-dir       = "%s"
gossip_profile = "%s"
token          = "from-file"
health-rise    = 1
`, listen, gossip, filepath.Join(dir, "gw"), gossipProfile())), 0o600))
	startProc(t, "gateway", "gateway", "run", "--config", gwConfig, "--admin", admin)
	g := &gatewayProc{url: "http://" + listen, admin: admin, gossip: gossip, token: "from-file"}
	g.waitReady(t)

	agConfig := filepath.Join(dir, "agent.json")
	base := testutil.FreePortRange(t, 2, "127.0.0.2")
	require.NoError(t, os.WriteFile(agConfig, []byte(fmt.Sprintf(`{
  "node": "host-cfg", "join": [%q], "bind": "127.0.0.2:%d", "admin": "127.0.0.2:%d",
  "replicas": 2, "base-port": %d, "runtime": "process", "images-dir": %q,
  "data-dir": %q, "gossip-profile": %q, "health-interval": "200ms"
}`, gossip, testutil.FreePortRange(t, 1, "127.0.0.2"), testutil.FreePort(t, "127.0.0.2"), base,
		filepath.Join(binDir, "images"), filepath.Join(dir, "agent"), gossipProfile())), 0o600))
	startProc(t, "host-cfg", "agent", "join", "--config", agConfig)
	g.waitBackends(t, 2, 30*time.Second)
	members, err := api.NewClient(admin, "from-file").Members(context.Background())
	require.NoError(t, err)
	names := []string{}
	for _, m := range members {
		names = append(names, m.Name)
	}
	assert.ElementsMatch(t, []string{"edge-1", "host-cfg"}, names)
	resp, err := http.Get(g.url + "/version")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	bad := filepath.Join(dir, "bad.hcl")
	require.NoError(t, os.WriteFile(bad, []byte("replica = 3\n"), 0o600))
	code, last := runBinary(t, "agent", "join", "--config", bad)
	assert.Equal(t, 2, code)
	assert.True(t, strings.HasPrefix(last, "agent: --config "+bad+": replica: unknown setting; agent join takes: "), last)
}
