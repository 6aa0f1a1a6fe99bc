// Package packaging tests what ships: `make release`, the Vagrantfile and
// its provisioning scripts, the systemd units and their environment files.
package packaging

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"debug/macho"
	"debug/pe"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/internal/testutil"
)

var platforms = map[string]elf.Machine{"linux_amd64": elf.EM_X86_64, "linux_arm64": elf.EM_AARCH64}

var releaseFiles = []string{"agent", "clusterctl", "gateway", "predictor-1.0.0", "predictor-1.1.0"}

// clusterctlOnly are the operators' platforms: clusterctl alone, checked by
// its file format's machine.
var clusterctlOnly = map[string]func(t *testing.T, data []byte){
	"windows_amd64/clusterctl.exe": func(t *testing.T, data []byte) {
		f, err := pe.NewFile(bytes.NewReader(data))
		require.NoError(t, err)
		assert.Equal(t, uint16(pe.IMAGE_FILE_MACHINE_AMD64), f.Machine)
	},
	"darwin_arm64/clusterctl": func(t *testing.T, data []byte) {
		f, err := macho.NewFile(bytes.NewReader(data))
		require.NoError(t, err)
		assert.Equal(t, macho.CpuArm64, f.Cpu)
	},
	"darwin_amd64/clusterctl": func(t *testing.T, data []byte) {
		f, err := macho.NewFile(bytes.NewReader(data))
		require.NoError(t, err)
		assert.Equal(t, macho.CpuAmd64, f.Cpu)
	},
}

// TestRelease: `make release` builds static linux/amd64 and linux/arm64
// binaries carrying the version, clusterctl for Windows and macOS, and
// SHA256SUMS matches them all.
func TestRelease(t *testing.T) {
	testutil.RequireTool(t, "make")
	root := testutil.RepoRoot(t)
	dist := t.TempDir()
	cmd := exec.Command("make", "-s", "release", "DIST="+dist, "VERSION=1.2.3-test")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))

	sums := map[string]string{}
	f, err := os.Open(filepath.Join(dist, "SHA256SUMS"))
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		require.True(t, ok, "SHA256SUMS line %q", sc.Text())
		sums[name] = sum
	}
	var want []string
	for dir := range platforms {
		for _, name := range releaseFiles {
			want = append(want, dir+"/"+name)
		}
	}
	for name := range clusterctlOnly {
		want = append(want, name)
	}
	var got []string
	for name := range sums {
		got = append(got, name)
	}
	sort.Strings(want)
	sort.Strings(got)
	require.Equal(t, want, got, "SHA256SUMS lists every binary")

	for name, sum := range sums {
		data, err := os.ReadFile(filepath.Join(dist, name))
		require.NoError(t, err)
		h := sha256.Sum256(data)
		assert.Equal(t, sum, hex.EncodeToString(h[:]), name)
		if check, ok := clusterctlOnly[name]; ok {
			t.Run(name, func(t *testing.T) { check(t, data) })
			assert.True(t, bytes.Contains(data, []byte("1.2.3-test")), "%s carries the version", name)
			continue
		}

		bin, err := elf.NewFile(bytes.NewReader(data))
		require.NoError(t, err, name)
		assert.Equal(t, platforms[filepath.Dir(name)], bin.Machine, name)
		for _, p := range bin.Progs {
			assert.NotEqual(t, elf.PT_INTERP, p.Type, "%s: static, no dynamic loader", name)
		}
		libs, err := bin.ImportedLibraries()
		require.NoError(t, err)
		assert.Empty(t, libs, name)
	}
	for _, prog := range []string{"gateway", "agent", "clusterctl"} {
		out, err := exec.Command(filepath.Join(dist, "linux_amd64", prog), "--version").CombinedOutput()
		require.NoError(t, err, string(out))
		assert.Equal(t, prog+" version 1.2.3-test\n", string(out))
	}
}

type vagrantMachine struct {
	Box             string `json:"box"`
	Hostname        string `json:"hostname"`
	PrivateNetworks []struct {
		IP string `json:"ip"`
	} `json:"private_networks"`
	ForwardedPorts []struct {
		Guest, Host int
	} `json:"forwarded_ports"`
	Provisions []struct {
		Path string            `json:"path"`
		Env  map[string]string `json:"env"`
	} `json:"provisions"`
}

// evalVagrantfile runs the repository's Vagrantfile, copied to dir, under
// Ruby with a stand-in for Vagrant, and returns the machines it defines.
func evalVagrantfile(t *testing.T, ruby, dir string) (map[string]vagrantMachine, string, error) {
	t.Helper()
	root := testutil.RepoRoot(t)
	src, err := os.ReadFile(filepath.Join(root, "Vagrantfile"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "Vagrantfile"), src, 0o644))
	cmd := exec.Command(ruby, filepath.Join(root, "test", "packaging", "testdata", "vagrant_stub.rb"), filepath.Join(dir, "Vagrantfile"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, stderr.String(), err
	}
	var machines map[string]vagrantMachine
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &machines), stdout.String())
	return machines, stderr.String(), nil
}

// TestVagrantfile: the Vagrantfile is valid Ruby and, evaluated, defines a
// gateway and three hosts on one private network, provisioned by scripts
// that exist and are shellcheck-clean, with one generated gossip key kept
// across runs; without `make release` it stops with the fix.
func TestVagrantfile(t *testing.T) {
	ruby := testutil.RequireTool(t, "ruby")
	root := testutil.RepoRoot(t)
	out, err := exec.Command(ruby, "-c", filepath.Join(root, "Vagrantfile")).CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Equal(t, "Syntax OK\n", string(out))

	dir := t.TempDir()
	_, stderr, err := evalVagrantfile(t, ruby, dir)
	require.Error(t, err)
	assert.Contains(t, stderr, "dist/linux_amd64/gateway is missing; run `make release` first")

	require.NoError(t, os.MkdirAll(filepath.Join(dir, "dist", "linux_amd64"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "dist", "linux_amd64", "gateway"), nil, 0o755))
	machines, stderr, err := evalVagrantfile(t, ruby, dir)
	require.NoError(t, err, stderr)
	require.ElementsMatch(t, []string{"(all)", "gateway", "host-1", "host-2", "host-3"}, keys(machines))
	assert.Equal(t, "debian/bookworm64", machines["(all)"].Box)

	gw := machines["gateway"]
	require.Len(t, gw.PrivateNetworks, 1)
	assert.Equal(t, "192.168.56.10", gw.PrivateNetworks[0].IP)
	key := ""
	for name, m := range machines {
		if name == "(all)" {
			continue
		}
		assert.Equal(t, name, m.Hostname)
		require.Len(t, m.Provisions, 1, name)
		p := m.Provisions[0]
		assert.FileExists(t, filepath.Join(root, p.Path), name)
		k, err := base64.StdEncoding.DecodeString(p.Env["HERD_ENCRYPT"])
		require.NoError(t, err, name)
		assert.Len(t, k, 32, "%s: a 32-byte gossip key", name)
		if key == "" {
			key = p.Env["HERD_ENCRYPT"]
		}
		assert.Equal(t, key, p.Env["HERD_ENCRYPT"], "%s: one key for the cluster", name)
		assert.Equal(t, m.PrivateNetworks[0].IP, p.Env["HERD_IP"], name)
		if name != "gateway" {
			assert.Equal(t, "vagrant/provision-host.sh", p.Path)
			assert.Equal(t, "192.168.56.10:7946", p.Env["HERD_JOIN"], name)
		}
	}
	assert.Len(t, gw.Provisions[0].Env["HERD_TOKEN"], 32)

	again, _, err := evalVagrantfile(t, ruby, dir)
	require.NoError(t, err)
	assert.Equal(t, key, again["host-1"].Provisions[0].Env["HERD_ENCRYPT"], "the key is generated once")
}

// TestShellScripts: the provisioning and helper scripts are shellcheck-clean.
func TestShellScripts(t *testing.T) {
	shellcheck := testutil.RequireTool(t, "shellcheck")
	root := testutil.RepoRoot(t)
	scripts, err := filepath.Glob(filepath.Join(root, "vagrant", "*.sh"))
	require.NoError(t, err)
	more, err := filepath.Glob(filepath.Join(root, "scripts", "*.sh"))
	require.NoError(t, err)
	require.NotEmpty(t, scripts)
	var rel []string
	for _, s := range append(scripts, more...) {
		r, _ := filepath.Rel(root, s)
		rel = append(rel, r)
	}
	cmd := exec.Command(shellcheck, append([]string{"-x"}, rel...)...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	assert.NoError(t, err, string(out))
}

// TestSystemdUnits: the units pass systemd-analyze verify in a scratch root
// holding the binaries and environment files where the units expect them,
// and every variable in the environment files and the provisioning
// scripts' is one the program reads.
func TestSystemdUnits(t *testing.T) {
	analyze := testutil.RequireTool(t, "systemd-analyze")
	root := testutil.RepoRoot(t)
	sysroot := t.TempDir()
	bins := filepath.Join(sysroot, "usr", "local", "bin")
	for _, prog := range []string{"gateway", "agent"} {
		testutil.GoBuild(t, "./cmd/"+prog, filepath.Join(bins, prog))
	}
	copyTree(t, "/usr/lib/systemd/system", filepath.Join(sysroot, "usr", "lib", "systemd", "system"))
	kill, err := exec.LookPath("kill") // the gateway's ExecReload
	require.NoError(t, err)
	copyFile(t, kill, filepath.Join(sysroot, "bin", "kill"))
	require.NoError(t, os.Chmod(filepath.Join(sysroot, "bin", "kill"), 0o755))
	units := filepath.Join(sysroot, "etc", "systemd", "system")
	for _, f := range []string{"herd-gateway.service", "herd-agent.service"} {
		copyFile(t, filepath.Join(root, "examples", "systemd", f), filepath.Join(units, f))
	}
	for _, f := range []string{"gateway.env", "agent.env"} {
		copyFile(t, filepath.Join(root, "examples", "systemd", f), filepath.Join(sysroot, "etc", "herd", f))
	}
	cmd := exec.Command(analyze, "verify", "--root="+sysroot, "/etc/systemd/system/herd-gateway.service", "/etc/systemd/system/herd-agent.service")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Empty(t, string(out), "systemd-analyze has nothing to say about the units")

	for _, unit := range []struct{ prog, sub, unit, env string }{
		{"gateway", "run", "herd-gateway.service", "gateway.env"},
		{"agent", "join", "herd-agent.service", "agent.env"},
	} {
		text, err := os.ReadFile(filepath.Join(root, "examples", "systemd", unit.unit))
		require.NoError(t, err)
		assert.Contains(t, string(text), "EnvironmentFile=/etc/herd/"+unit.env)
		assert.Contains(t, string(text), "Restart=on-failure")
		assert.Contains(t, string(text), "ExecStart=/usr/local/bin/"+unit.prog+" "+unit.sub+"\n")

		help, err := exec.Command(filepath.Join(bins, unit.prog), unit.sub, "--help").CombinedOutput()
		require.NoError(t, err)
		known := map[string]bool{}
		for _, m := range regexp.MustCompile(`\$(HERD_[A-Z_]+)`).FindAllStringSubmatch(string(help), -1) {
			known[m[1]] = true
		}
		script := map[string]string{"gateway": "provision-gateway.sh", "agent": "provision-host.sh"}[unit.prog]
		for _, file := range []string{filepath.Join("examples", "systemd", unit.env), filepath.Join("vagrant", script)} {
			data, err := os.ReadFile(filepath.Join(root, file))
			require.NoError(t, err)
			vars := regexp.MustCompile(`(?m)^"?\s*"?(HERD_[A-Z_]+)=`).FindAllStringSubmatch(string(data), -1)
			require.NotEmpty(t, vars, file)
			for _, v := range vars {
				assert.True(t, known[v[1]], "%s sets %s, which %s %s does not read", file, v[1], unit.prog, unit.sub)
			}
		}
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Dir(dst), 0o755))
	require.NoError(t, os.WriteFile(dst, data, 0o644))
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(dst), 0o755))
	out, err := exec.Command("cp", "-a", src, dst).CombinedOutput()
	require.NoError(t, err, string(out))
}
