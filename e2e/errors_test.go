package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBadInputExitsWithOneLine: every broken config or module stops
// wasmproxy at start-up with a non-zero exit and one line that names the
// file, field path or import and the reason.
func TestBadInputExitsWithOneLine(t *testing.T) {
	garbage := filepath.Join(t.TempDir(), "garbage.wasm")
	if err := os.WriteFile(garbage, []byte("this is not wasm at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	seed := func(s string) func(string) string { return func(string) string { return s } }
	replace := func(old, new string) func(string) string {
		return func(s string) string {
			if !strings.Contains(s, old) {
				t.Fatalf("config edit: %q not found", old)
			}
			return strings.Replace(s, old, new, 1)
		}
	}
	tests := []struct {
		name   string
		wasm   func(t *testing.T) string // "" = no main.wasm in the work dir
		edit   func(string) string
		expect []string
	}{
		{
			name:   "missing wasm file",
			wasm:   func(*testing.T) string { return "" },
			expect: []string{"main.wasm", "no such file"},
		},
		{
			name:   "garbage bytes",
			wasm:   func(*testing.T) string { return garbage },
			expect: []string{"main.wasm", "magic"},
		},
		{
			name:   "no ABI marker",
			wasm:   func(t *testing.T) string { return plugin(t, "e2e/testdata/noabi") },
			expect: []string{"main.wasm", "proxy_abi_version"},
		},
		{
			name:   "missing import",
			wasm:   func(t *testing.T) string { return plugin(t, "e2e/testdata/missingimport") },
			expect: []string{"main.wasm", "env.proxy_does_not_exist"},
		},
		{
			name:   "on_vm_start false",
			wasm:   func(t *testing.T) string { return plugin(t, "e2e/testdata/vmstartfail") },
			expect: []string{"main.wasm", "on_vm_start"},
		},
		{
			name:   "on_configure false",
			wasm:   func(t *testing.T) string { return plugin(t, "examples/json-validation") },
			edit:   replace(`{ "requiredKeys": ["id", "token"] }`, `this is not JSON`),
			expect: []string{"main.wasm", "on_configure"},
		},
		{
			name:   "invalid YAML",
			wasm:   func(*testing.T) string { return "" },
			edit:   seed("static_resources:\n  listeners:\n    - name: [unclosed\n"),
			expect: []string{"envoy.yaml", "line"},
		},
		{
			name:   "unknown @type",
			wasm:   func(t *testing.T) string { return plugin(t, "examples/json-validation") },
			edit:   replace("type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm", "type.googleapis.com/envoy.extensions.filters.http.nope.v3.Nope"),
			expect: []string{"envoy.yaml", "envoy.extensions.filters.http.nope.v3.Nope"},
		},
		{
			name:   "unsupported field",
			wasm:   func(t *testing.T) string { return plugin(t, "examples/json-validation") },
			edit:   replace("      connect_timeout: 0.25s\n", "      connect_timeout: 0.25s\n      preconnect_policy:\n        per_upstream_preconnect_ratio: 1.5\n"),
			expect: []string{"envoy.yaml", "not supported yet", "preconnect_policy"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir, _, _ := setup(t, seedConfig, tc.wasm(t), tc.edit)
			in := start(t, dir, "-c", "envoy.yaml")
			code := in.wait(60 * time.Second)
			logs := in.Logs()
			if code == 0 {
				t.Fatalf("exit code 0, want non-zero\n%s", logs)
			}
			var errLines []string
			for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
				if strings.HasPrefix(l, "wasmproxy: ") {
					errLines = append(errLines, l)
				}
			}
			if len(errLines) != 1 {
				t.Fatalf("want exactly one error line, got %d:\n%s", len(errLines), logs)
			}
			for _, want := range tc.expect {
				if !strings.Contains(errLines[0], want) {
					t.Errorf("error line %q does not mention %q", errLines[0], want)
				}
			}
		})
	}
}
