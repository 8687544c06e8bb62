package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPluginInit scaffolds a plugin and checks the promise: its Go test
// passes right away, and its declarative cases pass against the built
// module.
func TestPluginInit(t *testing.T) {
	root, err := filepath.Abs(repoRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "demo")
	stdout, stderr, code := runCLI(t, "plugin", "init", "example.com/filters/demo", "--dir", dir, "--wasmproxy-src", root)
	if code != 0 {
		t.Fatalf("plugin init: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, f := range []string{"go.mod", "go.sum", "main.go", "main_test.go", "cases.yaml", "envoy.yaml", "README.md", "Makefile", ".gitignore"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("scaffold lacks %s", f)
		}
	}
	// The hint's run line makes the scaffold's 403 happen: it passes the
	// deny_prefix the curl line then asks for.
	for _, want := range []string{`--plugin-config '{"deny_prefix": "/private"}'`, "curl -i localhost:10000/private"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("the next: hint lacks %q:\n%s", want, stdout)
		}
	}
	gomod, _ := os.ReadFile(filepath.Join(dir, "go.mod"))
	for _, want := range []string{"module example.com/filters/demo", "github.com/wasmproxy/wasmproxy => " + root, "github.com/wasmproxy/wasmproxy/sdk => " + root + "/sdk"} {
		if !strings.Contains(string(gomod), want) {
			t.Errorf("go.mod lacks %q:\n%s", want, gomod)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	goTest := exec.CommandContext(ctx, "go", "test", "-count=1", "./...")
	goTest.Dir = dir
	if out, err := goTest.CombinedOutput(); err != nil {
		t.Fatalf("go test in the new plugin: %v\n%s", err, out)
	}

	wasm := filepath.Join(dir, "main.wasm")
	if stdout, stderr, code := runCLI(t, "plugin", "build", dir, "-o", wasm); code != 0 {
		t.Fatalf("plugin build: exit %d\n%s\n%s", code, stdout, stderr)
	}
	stdout, stderr, code = runCLI(t, "plugin", "test", wasm, filepath.Join(dir, "cases.yaml"))
	if code != 0 || !strings.Contains(stdout, "2 cases passed") {
		t.Fatalf("plugin test: exit %d\n%s\n%s", code, stdout, stderr)
	}
	// envoy.yaml is a valid config for the built plugin.
	// ... and the plugin it runs is named after the module, not "main".
	if stdout, stderr, code := runCLI(t, "run", "--plugin", wasm, "--upstream", "http://127.0.0.1:8080", "--print-config"); code != 0 || !strings.Contains(stdout, wasm) || !strings.Contains(stdout, `name: "demo"`) {
		t.Errorf("run --print-config: exit %d\n%s\n%s", code, stdout, stderr)
	}
}

func TestPluginInitErrors(t *testing.T) {
	root, _ := filepath.Abs(repoRoot(t))
	full := t.TempDir()
	os.WriteFile(filepath.Join(full, "main.go"), []byte("package main\n"), 0o644)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad module path", []string{"plugin", "init", "my plugin", "--dir", t.TempDir(), "--wasmproxy-src", root},
			`"my plugin" is not a valid Go module path`},
		{"folder not empty", []string{"plugin", "init", "demo", "--dir", full, "--wasmproxy-src", root},
			full + " already exists and is not empty"},
		{"not a checkout", []string{"plugin", "init", "demo", "--dir", t.TempDir(), "--wasmproxy-src", t.TempDir()},
			"not a wasmproxy checkout"},
		{"unknown test style", []string{"plugin", "init", "demo", "--dir", t.TempDir(), "--wasmproxy-src", root, "--test-style", "mocks"},
			`--test-style "mocks": want wasmtest or proxytest`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := runCLI(t, tc.args...)
			if code != 1 || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, stderr, tc.want)
			}
		})
	}
}

// TestPluginInitProxytestStyle scaffolds the proxytest-style test and
// checks that it passes right away, on the Go code and on the compiled
// plugin.
func TestPluginInitProxytestStyle(t *testing.T) {
	root, err := filepath.Abs(repoRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "emulated")
	stdout, stderr, code := runCLI(t, "plugin", "init", "example.com/filters/emulated", "--dir", dir, "--wasmproxy-src", root, "--test-style", "proxytest")
	if code != 0 {
		t.Fatalf("plugin init: exit %d\n%s\n%s", code, stdout, stderr)
	}
	test, _ := os.ReadFile(filepath.Join(dir, "main_test.go"))
	if !strings.Contains(string(test), `"github.com/wasmproxy/wasmproxy/wasmtest/proxytest"`) {
		t.Fatalf("main_test.go is not the proxytest style:\n%s", test)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	goTest := exec.CommandContext(ctx, "go", "test", "-count=1", "-v", "./...")
	goTest.Dir = dir
	out, err := goTest.CombinedOutput()
	if err != nil {
		t.Fatalf("go test in the new plugin: %v\n%s", err, out)
	}
	for _, want := range []string{"--- PASS: TestDeniesPrefix/go", "--- PASS: TestDeniesPrefix/wasm"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("go test -v output lacks %q:\n%s", want, out)
		}
	}
}
