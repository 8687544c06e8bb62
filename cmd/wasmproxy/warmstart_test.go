package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWarmStartAcrossProcesses runs the command three times on one
// --cache-dir (--mode validate: the config is parsed and the plugin
// loaded, as a start does): the first start records its module, the
// second compiles it while the config is parsed and its plugin load
// takes that compile ("compile=... (ahead)" in its start-up phases); a
// third, after the plugin's file was replaced by another module, loads
// the new module from its own bytes (no "ahead") and drops the compile
// the stale record asked for.
func TestWarmStartAcrossProcesses(t *testing.T) {
	cfg := addHeaderConfig(t)
	text, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	built := buildPlugin(t, "examples/add-header")
	code := filepath.Join(t.TempDir(), "plugin.wasm")
	copyModule(t, built, code)
	if !strings.Contains(string(text), built) {
		t.Fatalf("config does not name the built plugin %s", built)
	}
	if err := os.WriteFile(cfg, []byte(strings.ReplaceAll(string(text), built, code)), 0o644); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	start := func(what string) string {
		t.Helper()
		_, stderr, exit := runCLI(t, "--mode", "validate", "-c", cfg, "-l", "debug", "--cache-dir", cache)
		if exit != 0 {
			t.Fatalf("%s: exit %d\n%s", what, exit, stderr)
		}
		return stderr
	}
	phases := func(log string) string {
		for _, line := range strings.Split(log, "\n") {
			if strings.Contains(line, "plugin started") {
				return line
			}
		}
		t.Fatalf("no plugin start-up line:\n%s", log)
		return ""
	}

	if line := phases(start("first start")); strings.Contains(line, "(ahead)") {
		t.Fatalf("first start on an empty cache compiled ahead: %s", line)
	}
	if records, _ := filepath.Glob(filepath.Join(cache, "warmstart", "*.txt")); len(records) != 1 {
		t.Fatalf("first start left %d records, want 1: %v", len(records), records)
	}
	log := start("second start")
	if line := phases(log); !strings.Contains(line, `phases.compile="`) || !strings.Contains(line, `(ahead)"`) {
		t.Errorf("second start did not take the compile started from the record: %s", line)
	}
	if strings.Contains(log, "is not used") {
		t.Errorf("second start dropped its compile ahead:\n%s", log)
	}

	copyModule(t, buildPlugin(t, "examples/header-routing"), code)
	log = start("start after the module changed")
	if line := phases(log); strings.Contains(line, "(ahead)") {
		t.Errorf("a changed module was served from the stale record: %s", line)
	}
	if !strings.Contains(log, "a module compiled ahead from the last start's record is not used") {
		t.Errorf("the stale record's compile was not dropped:\n%s", log)
	}
	if line := phases(start("fourth start")); !strings.Contains(line, `(ahead)"`) {
		t.Errorf("the start after the change did not record the new module: %s", line)
	}
}

func copyModule(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
