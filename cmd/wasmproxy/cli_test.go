package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// holdPort listens on a free 127.0.0.1 port for the test's lifetime: a
// process that tried to bind it would fail with "address in use".
func holdPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// addHeaderConfig is examples/add-header's bootstrap with its plugin
// built from source and its listener, upstream and admin on ports this
// test holds.
func addHeaderConfig(t *testing.T) string {
	t.Helper()
	root := repoRoot(t)
	text, err := os.ReadFile(filepath.Join(root, "examples", "add-header", "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	code := buildPlugin(t, "examples/add-header")
	s := strings.NewReplacer(
		"address: 0.0.0.0\n          port_value: 18000", fmt.Sprintf("address: 127.0.0.1\n          port_value: %d", holdPort(t)),
		"port_value: 8099", fmt.Sprintf("port_value: %d", holdPort(t)),
		"port_value: 8001", fmt.Sprintf("port_value: %d", holdPort(t)),
		"./main.wasm", code,
	).Replace(string(text))
	path := filepath.Join(t.TempDir(), "envoy.yaml")
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestModeValidate: --mode validate builds and starts the plugin, binds
// nothing (the listener, upstream and admin ports are held by this test,
// so a bind would fail the run), prints Envoy's "configuration '<path>'
// OK" and exits 0; a config whose plugin cannot load exits 1 naming it.
func TestModeValidate(t *testing.T) {
	cfg := addHeaderConfig(t)
	stdout, stderr, code := runCLI(t, "--mode", "validate", "-c", cfg, "-l", "debug")
	if code != 0 || stdout != fmt.Sprintf("configuration '%s' OK\n", cfg) {
		t.Fatalf("exit %d, stdout %q\n%s", code, stdout, stderr)
	}
	// The plugin ran its start-up: it was loaded, not just parsed.
	if !strings.Contains(stderr, "][wasm] ") {
		t.Errorf("no wasm log line at debug:\n%s", stderr)
	}

	text, _ := os.ReadFile(cfg)
	broken := filepath.Join(t.TempDir(), "broken.yaml")
	missing := filepath.Join(t.TempDir(), "missing.wasm")
	if err := os.WriteFile(broken, []byte(regexp.MustCompile(`filename: \S+`).ReplaceAllString(string(text), "filename: "+missing)), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code = runCLI(t, "--mode", "validate", "-c", broken)
	if code != 1 || stdout != "" || !strings.Contains(stderr, `plugin "add_header" (`+missing+`): reading code`) {
		t.Errorf("broken config: exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}
}

// TestEnvoyFlags: Envoy's options as golden command lines — accepted
// ones run (checked with --mode validate), unsupported ones and bad
// values are errors naming the flag.
func TestEnvoyFlags(t *testing.T) {
	cfg := addHeaderConfig(t)
	for _, args := range [][]string{
		{"--drain-time-s", "30"},
		{"--drain-time-s", "30s"}, // the duration form wasmproxy took before
		{"--parent-shutdown-time-s", "60", "--disable-hot-restart", "--file-flush-interval-msec", "500"},
		{"--local-address-ip-version", "v6", "--concurrency", "2", "--base-id", "3"},
		{"--log-format-escaped", "--log-format", "%L %n %v"},
		{"--config-yaml", "node: {id: from-yaml}", "--service-node", "n", "--service-cluster", "c", "--service-zone", "z"},
		{"--runtime-monitor-slack", "0"}, // wasmproxy's own (e2e TestRuntimeMonitorSlack)
	} {
		_, stderr, code := runCLI(t, append([]string{"--mode", "validate", "-c", cfg}, args...)...)
		if code != 0 {
			t.Errorf("%v: exit %d\n%s", args, code, stderr)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--hot-restart-version"}, "wasmproxy: --hot-restart-version: Envoy's option, not supported yet by wasmproxy\n"},
		{[]string{"--restart-epoch", "1", "--enable-core-dump", "-c", cfg}, "wasmproxy: --restart-epoch, --enable-core-dump: Envoy's option, not supported yet by wasmproxy\n"},
		{[]string{"--mode", "init_only", "-c", cfg}, "wasmproxy: --mode \"init_only\": want serve or validate (Envoy's init_only is not supported yet)\n"},
		{[]string{"--drain-time-s", "soon", "-c", cfg}, "wasmproxy: invalid argument \"soon\" for \"--drain-time-s\" flag: \"soon\" is not a whole number of seconds (or a duration such as 30s)\n"},
		{[]string{"--local-address-ip-version", "v5", "-c", cfg}, "wasmproxy: --local-address-ip-version \"v5\": want v4 or v6\n"},
		{[]string{"--log-format", "[%c] %v", "-c", cfg}, "wasmproxy: --log-format: log format \"[%c] %v\": flag %c is not supported (supported: %Y %y %m %d %H %M %S %T %D %F %f %e %E %z %t %P %l %L %n %v %_ %j %s %g %# %! %^ %$ %%)\n"},
		{[]string{"--mode", "validate", "-c", cfg, "--config-yaml", "nodes: {}"}, "wasmproxy: --config-yaml: nodes: unknown field (envoy.config.bootstrap.v3.Bootstrap has no field \"nodes\")\n"},
		{[]string{"--no-such-flag"}, "wasmproxy: unknown flag: --no-such-flag\n"},
		{[]string{"--mode", "validate", "-c", cfg, "--runtime-monitor-slack", "-1ms"}, "wasmproxy: --runtime-monitor-slack: must be 0 (the kernel's default) or positive, got -1ms\n"},
	} {
		stdout, stderr, code := runCLI(t, tc.args...)
		if code != 1 || stdout != "" || stderr != tc.want {
			t.Errorf("%v: exit %d, stdout %q\nstderr %q\nwant   %q", tc.args, code, stdout, stderr, tc.want)
		}
	}
}

// TestLogFlags: --log-format and --log-path shape and place every line;
// a JSON --log-format gives JSON lines.
func TestLogFlags(t *testing.T) {
	cfg := addHeaderConfig(t)
	logPath := filepath.Join(t.TempDir(), "wasmproxy.log")
	_, stderr, code := runCLI(t, "--mode", "validate", "-c", cfg, "-l", "debug", "--log-path", logPath,
		"--log-format", `{"level":"%l","logger":"%n","msg":"%j"}`)
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr (want nothing: logs go to --log-path):\n%s", code, stderr)
	}
	text, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(text), "\n"), "\n")
	line := regexp.MustCompile(`^\{"level":"(trace|debug|info|warning|error|critical)","logger":"[a-z_]+","msg":"([^"\\]|\\.)*"\}$`)
	for _, l := range lines {
		if !line.MatchString(l) {
			t.Errorf("not a JSON line of the format: %q", l)
		}
	}
	if len(lines) < 2 {
		t.Errorf("%d lines at debug:\n%s", len(lines), text)
	}
}

// TestVersion builds the real binary and checks --version (Envoy's one
// line) and `version` against the checkout and the toolchain. The commit
// comes from -X main.commit (as a release build sets it); Go's own VCS
// stamp is checked too where Go makes one (a plain checkout, not a git
// worktree, whose .git is a file Go does not read).
func TestVersion(t *testing.T) {
	root := repoRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	head, err := exec.CommandContext(ctx, "git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	rev := strings.TrimSpace(string(head))
	bin := filepath.Join(t.TempDir(), "wasmproxy")
	ldflags := "-X main.version=1.2.3"
	if fi, err := os.Stat(filepath.Join(root, ".git")); err != nil || !fi.IsDir() {
		ldflags += " -X main.commit=" + rev
	}
	build := exec.CommandContext(ctx, "go", "build", "-buildvcs=auto", "-ldflags", ldflags, "-o", bin, ".")
	build.Env = append(os.Environ(), "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`^wasmproxy  version: ` + rev + `/1\.2\.3/(Clean|Modified)/RELEASE/` + regexp.QuoteMeta(runtime.Version()) + ` wazero v\d+\.\d+\.\d+\S*\n$`)
	if !want.Match(out) {
		t.Errorf("--version: %q, want %s", out, want)
	}
	out, err = exec.CommandContext(ctx, bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	want = regexp.MustCompile(`^version: 1\.2\.3\ncommit: ` + rev + `( \(modified\))?\n(commit time: \S+\n)?go: ` + regexp.QuoteMeta(runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH) + `\nwazero: v\d+\.\d+\.\d+\S*\nproxy-wasm ABI: 0\.2\.1, 0\.2\.0, 0\.1\.0\n$`)
	if !want.Match(out) {
		t.Errorf("version: %q, want %s", out, want)
	}
}
