package wasm

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/source"
	"github.com/wasmproxy/wasmproxy/stats"
)

var allPhases = []string{PhaseRead, PhaseHash, PhaseInstrument, PhaseCompile, PhaseInstantiate, PhaseInitialize, PhaseVMStart, PhaseConfigure, PhasePool}

func phaseNames(t StartupTimings) []string {
	out := make([]string, len(t.Phases))
	for i, p := range t.Phases {
		out[i] = p.Name
	}
	return out
}

// TestStartupTimingsByPhase loads a Go-built plugin and checks that its
// start-up is reported phase by phase, in order, with the phases inside
// the load's wall time, and logged at debug level; a second plugin on
// the same VM reports the shared phases as such.
func TestStartupTimingsByPhase(t *testing.T) {
	h := newTestHost(t, 2)
	p := h.load(t, goPlugin(t, "headers"))
	tm := p.StartupTimings()
	if got, want := strings.Join(phaseNames(tm), ","), strings.Join(allPhases, ","); got != want {
		t.Fatalf("phases = %s, want %s", got, want)
	}
	var sum int64
	for _, ph := range tm.Phases {
		if ph.Duration < 0 {
			t.Errorf("phase %s has a negative duration %v", ph.Name, ph.Duration)
		}
		sum += int64(ph.Duration)
	}
	if sum > int64(tm.Total) {
		t.Errorf("phases add up to %d ns, more than the load's %v", sum, tm.Total)
	}
	if ph, _ := tm.Phase(PhaseRead); ph.Detail != "" {
		t.Errorf("read phase detail = %q, want none (the host read the file)", ph.Detail)
	}
	if ph, _ := tm.Phase(PhasePool); ph.Detail != "1 more instances" {
		t.Errorf("pool phase detail = %q", ph.Detail)
	}
	// The first instance ran _initialize, on_vm_start and on_configure
	// under the clock: those phases are not empty.
	for _, name := range []string{PhaseInstantiate, PhaseInitialize, PhaseVMStart, PhaseConfigure} {
		if ph, _ := tm.Phase(name); ph.Duration <= 0 {
			t.Errorf("phase %s took %v, want > 0", name, ph.Duration)
		}
	}
	var logged string
	for _, m := range h.logs.messages() {
		if strings.HasPrefix(m, "plugin started") {
			logged = m
		}
	}
	for _, name := range allPhases {
		if !strings.Contains(logged, "phases."+name+"=") {
			t.Errorf("debug log %q lacks phase %s", logged, name)
		}
	}

	// Same vm_id, VM configuration and code: the VM is shared, and so
	// are compilation and instances. The resolved digest is reused.
	cfg := goPlugin(t, "headers")
	cfg.Name = "second"
	code, err := os.ReadFile(cfg.CodeFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Code, cfg.CodeDigest = code, source.Digest(code)
	p2 := h.load(t, cfg)
	tm2 := p2.StartupTimings()
	if got, want := strings.Join(phaseNames(tm2), ","), strings.Join(allPhases, ","); got != want {
		t.Fatalf("second plugin's phases = %s, want %s", got, want)
	}
	for name, want := range map[string]string{PhaseRead: "resolved", PhaseHash: "resolved", PhaseInstrument: "shared", PhaseCompile: "shared", PhaseInstantiate: "shared", PhaseInitialize: "shared"} {
		if ph, _ := tm2.Phase(name); ph.Detail != want {
			t.Errorf("second plugin's %s detail = %q, want %q", name, ph.Detail, want)
		}
	}
	if p2.vm != p.vm {
		t.Errorf("second plugin did not share the first one's VM")
	}
}

// TestWarmStartSkipsRewrite starts a plugin on a fresh cache directory
// (the meter's rewrite runs and is stored), then on a second host over
// the same directory, as a restarted process would: the rewrite is read
// back instead of run, and the plugin works, traps included (whose
// stack trace needs the code map the cached start did not compute).
func TestWarmStartSkipsRewrite(t *testing.T) {
	dir := t.TempDir()
	newHost := func() *testHost {
		sink := &logSink{}
		st := stats.New()
		h, err := NewHost(context.Background(), Options{CacheDir: dir, PoolSize: 2, Logs: logging.NewRegistry(sink, logging.LevelTrace), Stats: st})
		if err != nil {
			t.Fatal(err)
		}
		return &testHost{Host: h, logs: sink, stats: st}
	}
	cold := newHost()
	p := cold.load(t, goPlugin(t, "headers"))
	if runs, hits := cold.prepareRuns.Load(), cold.prepareHits.Load(); runs != 1 || hits != 0 {
		t.Fatalf("cold start: %d rewrites, %d cache hits; want 1 and 0", runs, hits)
	}
	if ph, _ := p.StartupTimings().Phase(PhaseInstrument); ph.Detail != "" {
		t.Errorf("cold start's instrument detail = %q, want none", ph.Detail)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, preparedDir, "*.wasm")); len(files) != 1 {
		t.Errorf("cache holds %d rewritten modules, want 1: %v", len(files), files)
	}
	p.Close(context.Background())
	cold.Close(context.Background())

	warm := newHost()
	t.Cleanup(func() { warm.Close(context.Background()) })
	p = warm.load(t, goPlugin(t, "headers"))
	if runs, hits := warm.prepareRuns.Load(), warm.prepareHits.Load(); runs != 0 || hits != 1 {
		t.Fatalf("warm start: %d rewrites, %d cache hits; want 0 and 1", runs, hits)
	}
	if ph, _ := p.StartupTimings().Phase(PhaseInstrument); ph.Detail != "cached" {
		t.Errorf("warm start's instrument detail = %q, want cached", ph.Detail)
	}
	s := newStream(p)
	if st := s.decodeHeaders(false, ":method", "GET", ":path", "/", "x-in", "v"); st != filter.HeadersContinue {
		t.Fatalf("DecodeHeaders = %v, want Continue", st)
	}
	if v, _ := s.cb.reqHeaders.Get("x-seen"); v != "v" {
		t.Errorf("x-seen = %q: the plugin started from the cached rewrite did not run", v)
	}
	s.finish()

	// The rewrite is still metered: a trap's stack trace speaks of the
	// module as built, through the code map computed on demand.
	if p.compiled.code != nil {
		t.Errorf("code map computed before any trap")
	}
	if p.compiled.codeMap() == nil {
		t.Errorf("no code map for a metered module")
	}
}

// TestPoolStartsInParallel starts a pool of 8 instances (7 of them in
// parallel; run under -race) and checks each is a distinct, started
// instance with the plugin's root context, and that streams spread over
// all of them work.
func TestPoolStartsInParallel(t *testing.T) {
	const n = 8
	h := newTestHost(t, n)
	p := h.load(t, goPlugin(t, "headers"))
	if len(p.slots) != n {
		t.Fatalf("%d slots, want %d", len(p.slots), n)
	}
	seen := map[*instance]bool{}
	for i := range p.slots {
		b := p.slots[i].Load()
		if b == nil || b.inst == nil || b.root == nil {
			t.Fatalf("slot %d not started: %+v", i, b)
		}
		if b.inst.index != i {
			t.Errorf("slot %d holds instance %d", i, b.inst.index)
		}
		seen[b.inst] = true
	}
	if len(seen) != n {
		t.Errorf("%d distinct instances, want %d", len(seen), n)
	}
	if c := h.stats.Counter("wasm." + defaultRuntime + ".created").Value(); c != n {
		t.Errorf("created = %d, want %d", c, n)
	}
	configured := 0
	for _, l := range h.logs.pluginLogs(goPrefix) {
		if l == "configure 1 headers 0" {
			configured++
		}
	}
	if configured != n {
		t.Errorf("on_configure ran %d times, want %d", configured, n)
	}
	for i := 0; i < 2*n; i++ {
		s := newStream(p)
		if st := s.decodeHeaders(false, ":method", "GET", ":path", "/", "x-in", "v"); st != filter.HeadersContinue {
			t.Fatalf("stream %d: DecodeHeaders = %v", i, st)
		}
		if v, _ := s.cb.reqHeaders.Get("x-seen"); v != "v" {
			t.Errorf("stream %d: x-seen = %q", i, v)
		}
		s.finish()
	}
	p.Close(context.Background())
	if g := h.stats.Gauge("wasm." + defaultRuntime + ".active").Value(); g != 0 {
		t.Errorf("active after Close = %d, want 0", g)
	}
}

// TestPoolStartFailureClosesAll: a plugin whose on_configure fails in
// a pool of several leaves no instance behind.
func TestPoolStartFailureClosesAll(t *testing.T) {
	h := newTestHost(t, 4)
	cfg := &config.WasmPlugin{Name: "go", CodeFile: buildPlugin(t, "httpfilter"), PluginConfiguration: []byte("configure_false")}
	if p, err := h.LoadPlugin(context.Background(), cfg); err == nil {
		p.Close(context.Background())
		t.Fatal("LoadPlugin succeeded")
	}
	if g := h.stats.Gauge("wasm." + defaultRuntime + ".active").Value(); g != 0 {
		t.Errorf("active instances after a failed load = %d, want 0", g)
	}
}

// TestDamagedCachedRewriteIsRedone: a cached rewrite that no longer
// loads (a damaged file) is dropped and the module rewritten again,
// instead of failing the plugin until someone empties the cache.
func TestDamagedCachedRewriteIsRedone(t *testing.T) {
	dir := t.TempDir()
	load := func() (*Host, *Plugin, error) {
		h, err := NewHost(context.Background(), Options{CacheDir: dir, PoolSize: 1, Logs: logging.NewRegistry(io.Discard, logging.LevelError)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close(context.Background()) })
		p, err := h.LoadPlugin(context.Background(), goPlugin(t, "headers"))
		return h, p, err
	}
	if _, _, err := load(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, preparedDir, "*.wasm"))
	if len(files) != 1 {
		t.Fatalf("cache holds %d rewritten modules, want 1", len(files))
	}
	good, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	damaged := append([]byte("\x00asm\x01\x00\x00\x00"), "not the module any more"...)
	if err := os.WriteFile(files[0], damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	h, p, err := load()
	if err != nil {
		t.Fatalf("load over a damaged cached rewrite: %v", err)
	}
	if runs, hits := h.prepareRuns.Load(), h.prepareHits.Load(); runs != 1 || hits != 1 {
		t.Errorf("%d rewrites, %d cache hits; want 1 and 1 (the damaged hit, then a rewrite)", runs, hits)
	}
	if got, _ := os.ReadFile(files[0]); !bytes.Equal(got, good) {
		t.Errorf("the cache file was not rewritten: %d bytes, want %d", len(got), len(good))
	}
	s := newStream(p)
	if st := s.decodeHeaders(false, ":method", "GET", ":path", "/", "x-in", "v"); st != filter.HeadersContinue {
		t.Fatalf("DecodeHeaders = %v", st)
	}
	s.finish()
}
