package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestPluginTestCommand runs `wasmproxy plugin test` as a user would: the
// seed's cases pass (exit 0), a failing case exits 1 naming the case, the
// callback and the reason, a bad case file exits 1 naming the line.
func TestPluginTestCommand(t *testing.T) {
	wasm := buildPlugin(t, "examples/json-validation")
	seedCases := filepath.Join(repoRoot(t), "examples", "json-validation", "cases.yaml")
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	failing := write("failing.yaml", `plugin:
  configuration: '{"requiredKeys": ["id"]}'
cases:
  - name: passes
    request: {headers: {":method": POST, ":path": /, content-type: application/json}, body: '{"id": 1}'}
  - name: expects the wrong status
    request: {headers: {":method": POST, ":path": /}}
    expect:
      local_response: {status: 401}
`)
	// wasmtest's own test plugin pauses forever or traps on demand.
	kitchensink := buildPlugin(t, "wasmtest/testdata/kitchensink")
	badPlugin := write("bad-plugin.yaml", `cases:
  - name: paused forever
    request: {headers: {":path": /, x-test: pause-forever}}
  - name: trap
    request: {headers: {":path": /, x-test: trap}}
    expect: {client: {status: 200}}
`)
	endless := write("endless.yaml", `cases:
  - name: passes
    request: {headers: {":path": /, x-test: none}}
  - name: loops
    request: {headers: {":path": /, x-test: loop}}
  - name: runs after
    request: {headers: {":path": /}}
`)
	// With the host's call deadline off, only the supervisor can stop a
	// spinning worker.
	endlessNoDeadline := write("endless-no-deadline.yaml", `plugin:
  environment: {WASMPROXY_CALL_DEADLINE_MS: "0"}
cases:
  - name: passes
    request: {headers: {":path": /, x-test: none}}
  - name: loops
    request: {headers: {":path": /, x-test: loop}}
  - name: never runs
    request: {headers: {":path": /}}
`)
	unknownField := write("unknown.yaml", "cases:\n  - name: x\n    request: {headers: {a: b}}\n    expect: {status: 200}\n")
	tests := []struct {
		name   string
		args   []string
		exit   int
		stdout []string
		stderr []string
	}{
		{"seed cases pass", []string{"plugin", "test", wasm, seedCases}, 0,
			[]string{"--- PASS: no content type", "--- PASS: valid", "4 cases passed"}, nil},
		{"run filter", []string{"plugin", "test", "--run", "^valid$", wasm, seedCases}, 0,
			[]string{"--- PASS: valid", "1 cases passed"}, nil},
		{"failures", []string{"plugin", "test", wasm, failing}, 1,
			[]string{
				"--- PASS: passes",
				"--- FAIL: expects the wrong status",
				"failing.yaml:6: case \"expects the wrong status\"",
				"expect.local_response.status: expected 401, got 403",
				"1 of 2 cases failed",
			},
			[]string{"wasmproxy: 1 of 2 cases failed"}},
		{"paused forever and trap", []string{"plugin", "test", kitchensink, badPlugin}, 1,
			[]string{
				"--- FAIL: paused forever",
				"bad-plugin.yaml:2: case \"paused forever\"",
				"the request was still paused when it completed: proxy_on_request_headers returned Pause and the plugin never resumed it",
				"--- FAIL: trap",
				"bad-plugin.yaml:4: case \"trap\"",
				"expect.client.status: expected 200, got 503",
				"the plugin trapped in proxy_on_request_headers: panic: assignment to entry in nil map",
			},
			[]string{"wasmproxy: 2 of 2 cases failed"}},
		// The host's call deadline stops the guest at the timeout; the
		// case fails, the run goes on.
		{"endless loop", []string{"plugin", "test", "--timeout", "300ms", kitchensink, endless}, 1,
			[]string{"--- PASS: passes", "--- FAIL: loops",
				"the plugin trapped in proxy_on_request_headers: it did not return within 300ms (an endless loop?) and was stopped by the call deadline",
				".main.__httpContext_.OnHttpRequestHeaders(i32) i32", "--- PASS: runs after", "1 of 3 cases failed"},
			[]string{"wasmproxy: 1 of 3 cases failed"}},
		// The worker spins in the guest; the supervisor stops it.
		{"endless loop, deadline off", []string{"plugin", "test", "--timeout", "300ms", kitchensink, endlessNoDeadline}, 1,
			[]string{"--- PASS: passes", "--- FAIL: loops", "proxy_on_request_headers(2 headers, end_of_stream=true) did not return within 300ms"},
			[]string{`wasmproxy: case "loops": proxy_on_request_headers(2 headers, end_of_stream=true) did not return within 300ms (an endless loop?); the run stopped`}},
		{"unknown field", []string{"plugin", "test", wasm, unknownField}, 1, nil,
			[]string{`unknown.yaml: line 4: unknown field "status"`}},
		{"missing plugin", []string{"plugin", "test", filepath.Join(dir, "nope.wasm"), seedCases}, 1, nil,
			[]string{"nope.wasm: no such file or directory"}},
		{"no case matches", []string{"plugin", "test", "--run", "zzz", wasm, seedCases}, 1, nil,
			[]string{`no case matches --run "zzz"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, tc.args...)
			if code != tc.exit {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.exit, stdout, stderr)
			}
			for _, w := range tc.stdout {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout)
				}
			}
			for _, w := range tc.stderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if strings.Contains(stdout, "never runs") {
				t.Errorf("a case ran after a stuck one:\n%s", stdout)
			}
		})
	}
}

func TestPluginTestBench(t *testing.T) {
	if testing.Short() {
		t.Skip("benchmarks a case for about a second")
	}
	wasm := buildPlugin(t, "examples/json-validation")
	seedCases := filepath.Join(repoRoot(t), "examples", "json-validation", "cases.yaml")
	stdout, stderr, code := runCLI(t, "plugin", "test", "--bench", "--run", "^valid$", wasm, seedCases)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	line := regexp.MustCompile(`(?m)^Benchmark/valid\s+\d+\s+\d+(\.\d+)? ns/op\s+\d+ B/op\s+\d+ allocs/op$`)
	if !line.MatchString(stdout) {
		t.Errorf("no benchmark line in:\n%s", stdout)
	}
}
