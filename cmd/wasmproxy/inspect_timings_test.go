package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/wasmproxy/wasmproxy/wasm"
)

// TestPluginInspectTimings runs `plugin inspect --timings` on the seed
// plugin twice over one cache directory: each run reports every start-up
// phase in order, and the second one reads the rewritten module from
// the cache the first one filled.
func TestPluginInspectTimings(t *testing.T) {
	file := buildPlugin(t, "examples/json-validation")
	t.Setenv("XDG_CACHE_HOME", t.TempDir()) // the default cache dir
	want := strings.Join([]string{wasm.PhaseRead, wasm.PhaseHash, wasm.PhaseInstrument, wasm.PhaseCompile,
		wasm.PhaseInstantiate, wasm.PhaseInitialize, wasm.PhaseVMStart, wasm.PhaseConfigure, wasm.PhasePool}, ",")
	for i, wantInstrument := range []string{"", "cached"} {
		stdout, stderr, code := runCLI(t, "plugin", "inspect", "--timings", "--json", file)
		if code != 0 {
			t.Fatalf("run %d: exit %d\nstdout: %s\nstderr: %s", i+1, code, stdout, stderr)
		}
		var report struct {
			CanRun  bool                 `json:"can_run"`
			Timings *wasm.StartupTimings `json:"startup_timings"`
		}
		if err := json.Unmarshal([]byte(stdout), &report); err != nil {
			t.Fatalf("run %d: %v\n%s", i+1, err, stdout)
		}
		if !report.CanRun || report.Timings == nil {
			t.Fatalf("run %d: no timings in %s", i+1, stdout)
		}
		var names []string
		for _, p := range report.Timings.Phases {
			names = append(names, p.Name)
		}
		if got := strings.Join(names, ","); got != want {
			t.Errorf("run %d: phases %s, want %s", i+1, got, want)
		}
		if p, _ := report.Timings.Phase(wasm.PhaseInstrument); p.Detail != wantInstrument {
			t.Errorf("run %d: instrument detail %q, want %q", i+1, p.Detail, wantInstrument)
		}
	}
	stdout, _, code := runCLI(t, "plugin", "inspect", "--timings", file)
	if code != 0 || !strings.Contains(stdout, "start-up (cache ") || !strings.Contains(stdout, "  on_configure ") || !strings.Contains(stdout, "  total ") {
		t.Errorf("text report (exit %d) lacks the timings:\n%s", code, stdout)
	}
}
