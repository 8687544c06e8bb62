package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/pluginbuild"
)

// TestMain lets the tests run this test binary as the real wasmproxy
// command (WASMPROXY_RUN_MAIN=1), so exit statuses are those a user sees.
func TestMain(m *testing.M) {
	if os.Getenv("WASMPROXY_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runCLI runs wasmproxy with args and returns stdout, stderr and the exit
// code.
func runCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), "WASMPROXY_RUN_MAIN=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("running wasmproxy %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return stdout.String(), stderr.String(), code
}

func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// buildPlugin compiles a Go plugin folder (relative to the repo root) once
// per source hash, sharing the cache the e2e suite uses.
func buildPlugin(t *testing.T, dir string) string {
	t.Helper()
	root := repoRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p, err := pluginbuild.Cached(ctx, filepath.Join(os.TempDir(), "wasmproxy-test-plugins"), filepath.Join(root, dir), filepath.Join(root, "sdk"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPluginInspect runs `wasmproxy plugin inspect` on modules built from
// source and on broken files, checking the report and the exit status.
func TestPluginInspect(t *testing.T) {
	garbage := filepath.Join(t.TempDir(), "garbage.wasm")
	if err := os.WriteFile(garbage, []byte("this is not wasm at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		module   func(t *testing.T) string
		args     []string
		exit     int
		stdout   []string // each must appear in stdout
		notOut   []string // none may appear in stdout
		stderr   []string
		jsonWant func(t *testing.T, r map[string]any)
	}{
		{
			name:   "good Go SDK module",
			module: func(t *testing.T) string { return buildPlugin(t, "examples/add-header") },
			exit:   0,
			stdout: []string{
				"abi:         0.2.1", "initializer: _initialize", "allocator:   proxy_on_memory_allocate",
				"  proxy_on_response_headers\n", "  proxy_on_context_create\n",
				"ok            env.proxy_log (i32,i32,i32)->i32",
				"ok            wasi_snapshot_preview1.fd_write (i32,i32,i32,i32)->i32",
				"result: can run",
			},
			// No warning at all: the SDK's always-exported callbacks
			// (proxy_on_request_metadata, ...) are not the author's doing.
			notOut: []string{"error:", "MISSING", "MISMATCH", "does not export", "warning:"},
		},
		{
			name:   "good module as JSON",
			module: func(t *testing.T) string { return buildPlugin(t, "examples/add-header") },
			args:   []string{"--json"},
			exit:   0,
			jsonWant: func(t *testing.T, r map[string]any) {
				if r["abi_version"] != "0.2.1" || r["can_run"] != true || r["allocator"] != "proxy_on_memory_allocate" {
					t.Errorf("abi_version/can_run/allocator = %v/%v/%v", r["abi_version"], r["can_run"], r["allocator"])
				}
				if n, _ := r["size"].(float64); n < 1000 {
					t.Errorf("size = %v", r["size"])
				}
				if errs, _ := r["errors"].([]any); len(errs) != 0 {
					t.Errorf("errors = %v", errs)
				}
				found := false
				for _, im := range r["imports"].([]any) {
					m := im.(map[string]any)
					if m["module"] == "env" && m["name"] == "proxy_log" && m["status"] == "ok" && m["signature"] == "(i32,i32,i32)->i32" {
						found = true
					}
				}
				if !found {
					t.Errorf("env.proxy_log not listed as ok in %v", r["imports"])
				}
			},
		},
		{
			name:   "network filter lacks TCP callbacks",
			module: func(t *testing.T) string { return buildPlugin(t, "cmd/wasmproxy/testdata/wrongsig") },
			args:   []string{"--type", "network"},
			exit:   1,
			stdout: []string{
				"warning: does not export proxy_on_context_create",
				"warning: does not export proxy_on_new_connection: used as a network filter",
			},
		},
		{
			name:   "no ABI marker",
			module: func(t *testing.T) string { return buildPlugin(t, "e2e/testdata/noabi") },
			exit:   1,
			stdout: []string{"abi:         (none)", "error: no Proxy-Wasm ABI version marker exported", "result: cannot run"},
			stderr: []string{"cannot run: no Proxy-Wasm ABI version marker"},
		},
		{
			name:   "missing import",
			module: func(t *testing.T) string { return buildPlugin(t, "e2e/testdata/missingimport") },
			exit:   1,
			stdout: []string{
				"abi:         0.2.1",
				"MISSING       env.proxy_does_not_exist (i32)->i32",
				"error: module imports env.proxy_does_not_exist, which this host does not provide",
				"warning: does not export proxy_on_request_headers: used as an HTTP filter",
				"result: cannot run",
			},
			stderr: []string{"env.proxy_does_not_exist"},
		},
		{
			name:   "wrong signature",
			module: func(t *testing.T) string { return buildPlugin(t, "cmd/wasmproxy/testdata/wrongsig") },
			exit:   1,
			stdout: []string{
				"MISMATCH      env.proxy_log (i32)->i32",
				"error: module imports env.proxy_log with signature (i32)->i32, but the host provides (i32,i32,i32)->i32",
			},
			stderr: []string{"env.proxy_log"},
		},
		{
			name:   "wrong signature as JSON",
			module: func(t *testing.T) string { return buildPlugin(t, "cmd/wasmproxy/testdata/wrongsig") },
			args:   []string{"--json"},
			exit:   1,
			jsonWant: func(t *testing.T, r map[string]any) {
				if r["can_run"] != false {
					t.Errorf("can_run = %v", r["can_run"])
				}
				for _, im := range r["imports"].([]any) {
					m := im.(map[string]any)
					if m["name"] == "proxy_log" && (m["status"] != "mismatch" || !strings.Contains(m["problem"].(string), "(i32,i32,i32)->i32")) {
						t.Errorf("proxy_log = %v", m)
					}
				}
			},
		},
		{
			name:   "garbage",
			module: func(*testing.T) string { return garbage },
			exit:   1,
			stdout: []string{"size:        23 bytes", "error: not a WebAssembly module (bad magic)", "result: cannot run"},
			stderr: []string{"garbage.wasm cannot run: not a WebAssembly module"},
		},
		{
			name:   "no such file",
			module: func(t *testing.T) string { return filepath.Join(t.TempDir(), "absent.wasm") },
			exit:   1,
			stderr: []string{"absent.wasm", "no such file"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := tc.module(t)
			stdout, stderr, code := runCLI(t, append([]string{"plugin", "inspect", file}, tc.args...)...)
			if code != tc.exit {
				t.Errorf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.exit, stdout, stderr)
			}
			for _, s := range tc.stdout {
				if !strings.Contains(stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout)
				}
			}
			for _, s := range tc.notOut {
				if strings.Contains(stdout, s) {
					t.Errorf("stdout has %q:\n%s", s, stdout)
				}
			}
			for _, s := range tc.stderr {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr)
				}
			}
			if tc.jsonWant != nil {
				var r map[string]any
				if err := json.Unmarshal([]byte(stdout), &r); err != nil {
					t.Fatalf("stdout is not JSON: %v\n%s", err, stdout)
				}
				if r["file"] != file {
					t.Errorf("file = %v, want %s", r["file"], file)
				}
				tc.jsonWant(t, r)
			}
		})
	}
}
