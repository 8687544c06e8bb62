package wasm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/stats"
)

// TestWarmStartCompilesAhead starts three hosts over one cache
// directory, as three runs of the proxy would, with a plugin whose code
// file is the test's own copy of a module built in this run:
//
//   - the first compiles the plugin and records it (warmstart.txt);
//   - the second starts compiling it from NewHost on, before any load,
//     and the load takes that compile (in flight or done: "ahead"), and
//     the plugin runs;
//   - the file is then replaced with another module (the tcpfilter test
//     plugin): the third host compiles the stale record's module in the
//     background, but the load reads the new file, whose digest gives
//     another key, so it compiles the new module itself and runs it (its
//     own log lines), and the unused compile is dropped; the record then
//     names the new module.
func TestWarmStartCompilesAhead(t *testing.T) {
	dir := t.TempDir()
	code := filepath.Join(t.TempDir(), "plugin.wasm")
	copyFile(t, buildPlugin(t, "httpfilter"), code)
	cfg := func() *config.WasmPlugin {
		return &config.WasmPlugin{Name: "warm", CodeFile: code, PluginConfiguration: []byte("headers"), VMConfiguration: []byte("vmconf")}
	}
	newHost := func() *testHost { return newWarmHost(t, dir) }
	record := func() string {
		b, err := os.ReadFile(warmRecordPath(dir, "test"))
		if err != nil {
			t.Fatalf("no record of the start: %v", err)
		}
		return string(b)
	}

	first := newHost()
	if len(first.warmKeys) != 0 {
		t.Fatalf("empty cache directory: %d modules to compile ahead", len(first.warmKeys))
	}
	p := first.load(t, cfg())
	if ph, _ := p.StartupTimings().Phase(PhaseCompile); ph.Detail == "ahead" {
		t.Fatalf("first start's compile detail = ahead")
	}
	first.FinishWarmStart()
	rec1 := record()
	if lines := strings.Split(strings.TrimSpace(rec1), "\n"); len(lines) != 2 || lines[0] != warmRecordHeader {
		t.Fatalf("record = %q, want the header and one module", rec1)
	}
	p.Close(context.Background())
	first.Close(context.Background())

	second := newHost()
	if len(second.warmKeys) != 1 {
		t.Fatalf("second start compiles %d modules ahead, want 1", len(second.warmKeys))
	}
	p = second.load(t, cfg())
	if ph, _ := p.StartupTimings().Phase(PhaseCompile); ph.Detail != "ahead" {
		t.Errorf("second start's compile detail = %q, want ahead (the load took the compile started by NewHost)", ph.Detail)
	}
	if ph, _ := p.StartupTimings().Phase(PhaseInstrument); ph.Detail != "ahead" || ph.Duration != 0 {
		t.Errorf("second start's instrument phase = %+v, want 0 (ahead)", ph)
	}
	if runs, hits := second.prepareRuns.Load(), second.prepareHits.Load(); runs != 0 || hits != 0 {
		t.Errorf("second start: %d rewrites and %d rewrites read back; the compile ahead needs neither", runs, hits)
	}
	s := newStream(p)
	if st := s.decodeHeaders(false, ":method", "GET", ":path", "/", "x-in", "v"); st != filter.HeadersContinue {
		t.Fatalf("DecodeHeaders = %v, want Continue", st)
	}
	if v, _ := s.cb.reqHeaders.Get("x-seen"); v != "v" {
		t.Errorf("x-seen = %q: the plugin compiled ahead did not run", v)
	}
	s.finish()
	if p.compiled.codeMap() == nil {
		t.Errorf("no code map for the metered module compiled ahead")
	}
	second.FinishWarmStart()
	if got := record(); got != rec1 {
		t.Errorf("record changed on a start with the same module: %q, was %q", got, rec1)
	}
	p.Close(context.Background())
	second.Close(context.Background())

	// The file the config names changes: the record is stale.
	copyFile(t, buildPlugin(t, "tcpfilter"), code)
	third := newHost()
	if len(third.warmKeys) != 1 {
		t.Fatalf("third start compiles %d modules ahead, want 1 (the stale record's)", len(third.warmKeys))
	}
	p = third.load(t, cfg())
	if ph, _ := p.StartupTimings().Phase(PhaseCompile); ph.Detail == "ahead" {
		t.Fatalf("a changed module file was served from the stale record's compile")
	}
	if runs := third.prepareRuns.Load(); runs != 1 {
		t.Errorf("third start rewrote %d modules, want 1 (the new file)", runs)
	}
	if !strings.Contains(string(p.compiled.source), "proxy_on_new_connection") || !p.compiled.info.callbacks["proxy_on_new_connection"] {
		t.Errorf("the plugin's compiled module is not the new file's (no proxy_on_new_connection)")
	}
	// The new module's own start-up ran: tcpfilter logs "configure",
	// httpfilter "vm_start".
	logs := strings.Join(third.logs.pluginLogs("wasm log warm: "), "\n")
	if !strings.Contains(logs, "configure headers") || strings.Contains(logs, "vm_start") {
		t.Errorf("plugin logs are not the new module's:\n%s", logs)
	}
	third.FinishWarmStart()
	rec3 := record()
	if rec3 == rec1 {
		t.Errorf("the record still names the old module after a start with the new one")
	}
	third.mu.Lock()
	left := len(third.warm)
	third.mu.Unlock()
	if left != 0 {
		t.Errorf("%d compiles ahead kept after FinishWarmStart", left)
	}
	p.Close(context.Background())
	// Close waits for the stale compile, which says how it ended.
	third.Close(context.Background())
	if text := third.logs.text(); !strings.Contains(text, "a module of the last start ahead") || !strings.Contains(text, "is not used") {
		t.Errorf("the stale record's compile was not dropped or did not end before Close returned:\n%s", text)
	}
}

// TestWarmStartCloseWithoutLoad closes a host whose record names a
// module before any load, as a start whose config does not parse does:
// Close drops the compile ahead and returns once it has ended (it logs
// how: compiled, or failed when cancelled), and a
// record that is not one (another header, bad hex) compiles nothing.
func TestWarmStartCloseWithoutLoad(t *testing.T) {
	dir := t.TempDir()
	h := newWarmHost(t, dir)
	p := h.load(t, goPlugin(t, "headers"))
	h.FinishWarmStart()
	p.Close(context.Background())
	h.Close(context.Background())

	h = newWarmHost(t, dir)
	if len(h.warmKeys) != 1 {
		t.Fatalf("%d modules compiled ahead, want 1", len(h.warmKeys))
	}
	h.Close(context.Background())
	text := h.logs.text()
	if !strings.Contains(text, "a module of the last start ahead") || !strings.Contains(text, "is not used") {
		t.Errorf("the compile ahead was not dropped or Close returned before it ended:\n%s", text)
	}
	if _, err := h.LoadPlugin(context.Background(), goPlugin(t, "headers")); err == nil || !strings.Contains(err.Error(), "host is closed") {
		t.Errorf("load after Close: %v, want host is closed", err)
	}

	// Another name (another config) on the same directory has its own
	// record: nothing to compile ahead; recording it (a new name) removes
	// records not written for longer than the cache's age bound.
	old := warmRecordPath(dir, "old")
	if err := os.WriteFile(old, []byte(warmRecordHeader+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	long := time.Now().Add(-warmRecordMaxAge - time.Hour)
	if err := os.Chtimes(old, long, long); err != nil {
		t.Fatal(err)
	}
	other := newWarmHostNamed(t, dir, "other")
	if len(other.warmKeys) != 0 {
		t.Errorf("another name found %d modules to compile ahead in the record of %q", len(other.warmKeys), "test")
	}
	p = other.load(t, goPlugin(t, "headers"))
	other.FinishWarmStart()
	p.Close(context.Background())
	other.Close(context.Background())
	if _, err := os.Stat(warmRecordPath(dir, "other")); err != nil {
		t.Errorf("no record for the other name: %v", err)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("a record unused for longer than %v was kept (%v)", warmRecordMaxAge, err)
	}
	if _, err := os.Stat(warmRecordPath(dir, "test")); err != nil {
		t.Errorf("a recent record was removed: %v", err)
	}

	for _, bad := range []string{"", "another header\n", warmRecordHeader + "\nnot-hex\n", warmRecordHeader + "\nabcd\n"} {
		if err := os.WriteFile(warmRecordPath(dir, "test"), []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		h := newWarmHost(t, dir)
		if len(h.warmKeys) != 0 {
			t.Errorf("record %q: %d modules compiled ahead, want none", bad, len(h.warmKeys))
		}
		h.Close(context.Background())
	}
}

func newWarmHost(t *testing.T, dir string) *testHost {
	t.Helper()
	return newWarmHostNamed(t, dir, "test")
}

func newWarmHostNamed(t *testing.T, dir, name string) *testHost {
	t.Helper()
	sink := &logSink{}
	st := stats.New()
	h, err := NewHost(context.Background(), Options{CacheDir: dir, PoolSize: 1, WarmStart: name, Logs: logging.NewRegistry(sink, logging.LevelTrace), Stats: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	return &testHost{Host: h, logs: sink, stats: st}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
