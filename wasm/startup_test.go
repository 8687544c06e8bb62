package wasm

import (
	"bytes"
	"context"
	"errors"
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
// the load's wall time (the pool's, which starts after the load has
// returned, aside), and logged at debug level; a second plugin on the
// same VM reports the shared phases as such.
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
		if ph.Name != PhasePool {
			sum += int64(ph.Duration)
		}
	}
	if sum > int64(tm.Total) {
		t.Errorf("phases add up to %d ns, more than the load's %v", sum, tm.Total)
	}
	if ph, _ := tm.Phase(PhaseRead); ph.Detail != "" {
		t.Errorf("read phase detail = %q, want none (the host read the file)", ph.Detail)
	}
	if ph, _ := tm.Phase(PhasePool); ph.Detail != "1 more instances, after ready" {
		t.Errorf("pool phase detail = %q", ph.Detail)
	}
	// The first instance ran _initialize, on_vm_start and on_configure
	// under the clock: those phases are not empty.
	for _, name := range []string{PhaseInstantiate, PhaseInitialize, PhaseVMStart, PhaseConfigure} {
		if ph, _ := tm.Phase(name); ph.Duration <= 0 {
			t.Errorf("phase %s took %v, want > 0", name, ph.Duration)
		}
	}
	var logged, pooled string
	for _, m := range h.logs.messages() {
		if strings.HasPrefix(m, "plugin started") {
			logged = m
		}
		if strings.HasPrefix(m, "plugin pool started") {
			pooled = m
		}
	}
	for _, name := range allPhases[:len(allPhases)-1] {
		if !strings.Contains(logged, "phases."+name+"=") {
			t.Errorf("debug log %q lacks phase %s", logged, name)
		}
	}
	if !strings.Contains(pooled, "instances=2") || !strings.Contains(pooled, "pool=") {
		t.Errorf("debug log of the pool = %q, want its instances and time", pooled)
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

// TestLoadReturnsBeforePool holds the pool's second instance before it
// starts: the load returns all the same (the proxy is ready on one
// instance), streams run on the first instance, and once the second has
// started the pool has both and the timings show it; a load of another
// plugin waits for the pool, so it finds the VM whole.
func TestLoadReturnsBeforePool(t *testing.T) {
	h := newTestHost(t, 2)
	release := make(chan struct{})
	h.poolStarting = func(int) error { <-release; return nil }
	p, err := h.LoadPlugin(context.Background(), goPlugin(t, "headers"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	if got := p.live.Load(); got != 1 {
		t.Fatalf("%d instances live when the load returned, want 1", got)
	}
	for i := 0; i < 3; i++ {
		s := newStream(p)
		if st := s.decodeHeaders(false, ":method", "GET", ":path", "/", "x-in", "v"); st != filter.HeadersContinue {
			t.Fatalf("DecodeHeaders = %v, want Continue", st)
		}
		if v, _ := s.cb.reqHeaders.Get("x-seen"); v != "v" {
			t.Errorf("stream %d: x-seen = %q, want the plugin's answer", i, v)
		}
		s.finish()
	}
	if b := p.slots[1].Load(); b != nil {
		t.Fatalf("slot 1 filled before its instance was let start: %+v", b)
	}

	second := make(chan *Plugin)
	go func() {
		cfg := goPlugin(t, "headers")
		cfg.Name = "second"
		p2, err := h.LoadPlugin(context.Background(), cfg)
		if err != nil {
			t.Error(err)
		}
		second <- p2
	}()
	close(release)
	p2 := <-second
	if p2 == nil {
		return
	}
	t.Cleanup(func() { p2.Close(context.Background()) })
	if got := p.live.Load(); got != 2 {
		t.Errorf("%d instances live after the pool started, want 2", got)
	}
	if got := p2.live.Load(); got != 2 {
		t.Errorf("the second plugin on the VM runs in %d instances, want 2", got)
	}
	if ph, _ := p.StartupTimings().Phase(PhasePool); ph.Detail != "1 more instances, after ready" || ph.Duration <= 0 {
		t.Errorf("pool phase = %+v", ph)
	}
}

// TestPoolInstanceFailure: an instance of the pool that fails to start
// after the load has returned is logged and left out; the others serve.
func TestPoolInstanceFailure(t *testing.T) {
	h := newTestHost(t, 3)
	h.poolStarting = func(i int) error {
		if i == 1 {
			return errors.New("no memory for it")
		}
		return nil
	}
	p := h.load(t, goPlugin(t, "headers"))
	if got := p.live.Load(); got != 2 {
		t.Fatalf("%d instances live, want 2 (one of 3 failed)", got)
	}
	insts := p.currentInstances()
	if len(insts) != 2 || insts[0] == insts[1] || insts[1].index != 1 {
		t.Fatalf("instances %+v, want two distinct, the second at index 1", insts)
	}
	if got := h.stats.Gauge("wasm." + defaultRuntime + ".active").Value(); got != 2 {
		t.Errorf("active = %d, want 2", got)
	}
	if !strings.Contains(h.logs.text(), "starting instance 1 of its pool failed; it runs on the others: no memory for it") {
		t.Errorf("the failure is not logged:\n%s", h.logs.text())
	}
	for i := 0; i < 4; i++ {
		s := newStream(p)
		if st := s.decodeHeaders(false, ":method", "GET", ":path", "/", "x-in", "v"); st != filter.HeadersContinue {
			t.Fatalf("DecodeHeaders = %v, want Continue", st)
		}
		s.finish()
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
