//go:build linux

package wasm

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/logging"
)

const wasmPage = 65536

// mapped reports whether every page of [addr, addr+size) is mapped:
// msync answers ENOMEM for a range with a hole, without touching it.
func mapped(t *testing.T, addr uintptr, size int) bool {
	t.Helper()
	_, _, e := syscall.Syscall(syscall.SYS_MSYNC, addr, uintptr(size), syscall.MS_ASYNC)
	switch e {
	case 0:
		return true
	case syscall.ENOMEM:
		return false
	}
	t.Fatalf("msync(%#x, %d): %v", addr, size, e)
	return false
}

// protection is the permissions column of /proc/self/maps ("rw-p",
// "---p") for the mapping that holds addr.
func protection(t *testing.T, addr uintptr) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	s := bufio.NewScanner(bytes.NewReader(b))
	for s.Scan() {
		var lo, hi uint64
		var perms string
		if _, err := fmt.Sscanf(s.Text(), "%x-%x %s", &lo, &hi, &perms); err != nil {
			t.Fatalf("/proc/self/maps line %q: %v", s.Text(), err)
		}
		if uint64(addr) >= lo && uint64(addr) < hi {
			return perms
		}
	}
	return "unmapped"
}

func base(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

// TestMappedMemoryGrowsInPlace checks the LinearMemory contract wazero
// relies on: each Reallocate returns the same backing array, longer,
// with the contents kept and new bytes zero; only what was asked for is
// readable and writable, the rest of the reservation has no access.
func TestMappedMemoryGrowsInPlace(t *testing.T) {
	g := newGuestMemory(16) // a 1 MiB cap
	mem := g.Allocate(wasmPage, 10*wasmPage)
	defer mem.Free()
	m, ok := mem.(*mappedMemory)
	if !ok {
		t.Fatalf("Allocate gave a %T, want a *mappedMemory", mem)
	}
	if len(m.mapping) != 10*wasmPage {
		t.Errorf("reservation = %d bytes, want the module's maximum (10 pages) since it is under the cap", len(m.mapping))
	}

	b1 := mem.Reallocate(wasmPage)
	if len(b1) != wasmPage || cap(b1) != wasmPage {
		t.Fatalf("Reallocate(1 page): len %d cap %d", len(b1), cap(b1))
	}
	for i := range b1 {
		b1[i] = byte(i * 7)
	}
	start := base(b1)
	if p := protection(t, start); p != "rw-p" {
		t.Errorf("committed page is %s, want rw-p", p)
	}
	if p := protection(t, start+wasmPage); p != "---p" {
		t.Errorf("reserved page is %s, want ---p (no access until grown)", p)
	}

	b2 := mem.Reallocate(3 * wasmPage)
	if base(b2) != start {
		t.Fatalf("grown memory moved from %#x to %#x", start, base(b2))
	}
	if len(b2) != 3*wasmPage || cap(b2) != 3*wasmPage {
		t.Errorf("Reallocate(3 pages): len %d cap %d", len(b2), cap(b2))
	}
	for i := range b1 {
		if b2[i] != byte(i*7) {
			t.Fatalf("byte %d changed across the grow: %d", i, b2[i])
		}
	}
	for i := wasmPage; i < len(b2); i++ {
		if b2[i] != 0 {
			t.Fatalf("new byte %d = %d, want 0", i, b2[i])
		}
	}
	b2[len(b2)-1] = 1 // writable to the end
	if p := protection(t, start+3*wasmPage); p != "---p" {
		t.Errorf("page past the grown size is %s, want ---p", p)
	}

	// Asking for what is already there changes nothing.
	if b := mem.Reallocate(2 * wasmPage); base(b) != start || len(b) != 2*wasmPage {
		t.Errorf("Reallocate(2 pages) after 3: base %#x len %d", base(b), len(b))
	}
	if b := mem.Reallocate(10 * wasmPage); base(b) != start || len(b) != 10*wasmPage {
		t.Errorf("Reallocate to the whole reservation: base %#x len %d", base(b), len(b))
	}
}

// TestMappedMemoryRefusesPastReservation: growth stops at the module's
// maximum or the cap, whichever is lower, with nil (a failed
// memory.grow), and the memory stays as it was.
func TestMappedMemoryRefusesPastReservation(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		capPages, maxPages     uint32
		wantReservation, asked uint64
	}{
		{"module maximum under the cap", 64, 4, 4 * wasmPage, 5 * wasmPage},
		{"cap under the module maximum", 4, 64, 4 * wasmPage, 5 * wasmPage},
		{"no maximum declared (wazero passes its own)", 8, maxMemoryPages, 8 * wasmPage, 9 * wasmPage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := newGuestMemory(tc.capPages).Allocate(wasmPage, uint64(tc.maxPages)*wasmPage)
			defer mem.Free()
			if n := uint64(len(mem.(*mappedMemory).mapping)); n != tc.wantReservation {
				t.Errorf("reservation = %d pages, want %d", n/wasmPage, tc.wantReservation/wasmPage)
			}
			b := mem.Reallocate(wasmPage)
			b[0] = 42
			if got := mem.Reallocate(tc.asked); got != nil {
				t.Errorf("Reallocate(%d pages) past a reservation of %d = %d bytes, want nil", tc.asked/wasmPage, tc.wantReservation/wasmPage, len(got))
			}
			if got := mem.Reallocate(tc.wantReservation); len(got) != int(tc.wantReservation) || base(got) != base(b) || got[0] != 42 {
				t.Errorf("Reallocate to the reservation after a refusal: len %d, moved %t, first byte %d", len(got), base(got) != base(b), got[0])
			}
		})
	}
}

// TestMappedMemoryFreeUnmaps: Free returns the whole reservation to the
// OS, committed part and all, and a second Free is harmless.
func TestMappedMemoryFreeUnmaps(t *testing.T) {
	before := mappedBytes.Load()
	mem := newGuestMemory(32).Allocate(wasmPage, 32*wasmPage)
	b := mem.Reallocate(4 * wasmPage)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	start := base(b)
	if !mapped(t, start, 32*wasmPage) {
		t.Fatal("the reservation is not mapped")
	}
	if got := mappedBytes.Load() - before; got != 32*wasmPage {
		t.Errorf("mappedBytes grew by %d, want %d", got, 32*wasmPage)
	}
	mem.Free()
	if mapped(t, start, 32*wasmPage) {
		t.Error("the reservation is still mapped after Free")
	}
	if got := mappedBytes.Load(); got != before {
		t.Errorf("mappedBytes = %d after Free, want %d", got, before)
	}
	mem.Free()
	if got := mappedBytes.Load(); got != before {
		t.Errorf("mappedBytes = %d after a second Free, want %d", got, before)
	}
	if b := mem.Reallocate(wasmPage); b != nil {
		t.Errorf("Reallocate after Free = %d bytes, want nil", len(b))
	}
}

// TestZeroMemory: a memory whose maximum is 0 pages maps nothing and
// gives an empty, non-nil memory (wazero slices it to the minimum).
func TestZeroMemory(t *testing.T) {
	before := mappedBytes.Load()
	mem := newGuestMemory(16).Allocate(0, 0)
	defer mem.Free()
	if b := mem.Reallocate(0); b == nil || len(b) != 0 {
		t.Errorf("Reallocate(0) = %v, want an empty slice", b)
	}
	if b := mem.Reallocate(wasmPage); b != nil {
		t.Errorf("Reallocate(1 page) of a 0-page memory = %d bytes, want nil", len(b))
	}
	if got := mappedBytes.Load(); got != before {
		t.Errorf("mappedBytes grew by %d for an empty memory", got-before)
	}
}

// TestHeapMemoryFallback: when no reservation can be mapped, memory is
// a Go slice with the same contract except the fixed address: growth
// keeps the contents and stops at the maximum.
func TestHeapMemoryFallback(t *testing.T) {
	// A reservation over 1 GiB is refused before mmap: the same path as
	// mmap failing.
	mem := newGuestMemory(2*maxMemoryPages).Allocate(wasmPage, 2*maxMemoryPages*wasmPage)
	defer mem.Free()
	if _, ok := mem.(*heapMemory); !ok {
		t.Fatalf("Allocate gave a %T, want the *heapMemory fallback", mem)
	}
	b := mem.Reallocate(wasmPage)
	b[10] = 5
	b = mem.Reallocate(3 * wasmPage)
	if len(b) != 3*wasmPage || b[10] != 5 || b[wasmPage] != 0 {
		t.Errorf("grown fallback memory: len %d, kept %d, new %d", len(b), b[10], b[wasmPage])
	}
	if got := mem.Reallocate(2*maxMemoryPages*wasmPage + 1); got != nil {
		t.Errorf("Reallocate past the maximum = %d bytes, want nil", len(got))
	}
}

// loadCapped loads module code as plugin name with a memory cap of
// capMiB under a FAIL_CLOSED policy.
func loadCapped(h *testHost, name string, code []byte, capMiB int) (*Plugin, error) {
	return h.LoadPlugin(context.Background(), &config.WasmPlugin{
		Name:          name,
		Code:          code,
		FailurePolicy: config.FailClosed,
		EnvKeyValues:  map[string]string{EnvMemoryLimit: strconv.Itoa(capMiB)},
	})
}

// TestInstancesReserveTheirCap: every instance the pool creates maps
// its own reservation, the cap or the module's lower maximum (never
// wazero's 1 GiB limit), and closing the plugin unmaps them all.
func TestInstancesReserveTheirCap(t *testing.T) {
	const instances = 2
	h := newTestHost(t, instances)
	for _, tc := range []struct {
		name     string
		module   rawModule
		capMiB   int
		reserved int64 // per instance
	}{
		{"no maximum: the cap", abiModule(), 7, 7 << 20},
		{"maximum over the cap: the cap", rawModule{memory: true, maxPages: 1000, funcs: abiModule().funcs}, 3, 3 << 20},
		{"maximum under the cap: the maximum", rawModule{memory: true, maxPages: 5, funcs: abiModule().funcs}, 64, 5 * wasmPage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := mappedBytes.Load()
			p, err := loadCapped(h, strings.ReplaceAll(tc.name, " ", "_"), tc.module.bytes(), tc.capMiB)
			if err != nil {
				t.Fatal(err)
			}
			p.waitPool()
			if got := mappedBytes.Load() - before; got != instances*tc.reserved {
				t.Errorf("mapped %d bytes for %d instances, want %d each", got, instances, tc.reserved)
			}
			p.Close(context.Background())
			if got := mappedBytes.Load() - before; got != 0 {
				t.Errorf("%d bytes still mapped after the plugin closed", got)
			}
		})
	}
}

// TestFailedInstantiationUnmaps: wazero does not free the memory of a
// module whose instantiation fails (here in its start function), so
// the host does; a plugin that keeps failing to start (a FAIL_RELOAD
// loop) must not leak a reservation per attempt.
func TestFailedInstantiationUnmaps(t *testing.T) {
	h := newTestHost(t, 2)
	startTrap := abiModule(rawFunc{body: opUnreachable})
	startTrap.start = 3 // the third function: marker, malloc, trap
	before := mappedBytes.Load()
	for i := 0; i < 3; i++ {
		if _, err := loadCapped(h, "starttrap", startTrap.bytes(), 5); err == nil {
			t.Fatal("a module whose start function traps loaded")
		}
	}
	if got := mappedBytes.Load() - before; got != 0 {
		t.Errorf("%d bytes (%d reservations of 5 MiB) left mapped by failed instantiations", got, got/(5<<20))
	}
}

// holdingWriter is a log output that stops the first write containing
// word until release is closed, so a test can hold a guest inside a
// host call (proxy_log) at a point of its choosing.
type holdingWriter struct {
	word    string
	once    bool
	entered chan struct{}
	release chan struct{}
}

func (w *holdingWriter) Write(p []byte) (int, error) {
	if !w.once && strings.Contains(string(p), w.word) {
		w.once = true
		close(w.entered)
		<-w.release
	}
	return len(p), nil
}

// TestCloseWaitsForLoad: Host.Close while a plugin is starting must not
// free the memory of the instance under the guest's feet. Before, Close
// closed the plugins it knew of and then the runtime, which frees every
// module's memory, while a load still ran _initialize: with memory
// unmapped, the guest's next access killed the process (SIGSEGV). Now
// Close waits for the load, closes the plugin it made, and later loads
// fail.
func TestCloseWaitsForLoad(t *testing.T) {
	w := &holdingWriter{word: "holding", entered: make(chan struct{}), release: make(chan struct{})}
	h, err := NewHost(context.Background(), Options{
		CacheDir: testDir + "/cache",
		PoolSize: 1,
		Logs:     logging.NewRegistry(w, logging.LevelTrace),
	})
	if err != nil {
		t.Fatal(err)
	}
	// _initialize logs "holding" (held by the writer), then writes to
	// its memory.
	m := abiModule(rawFunc{export: "_initialize", body: code(
		i32Const(2), i32Const(16), i32Const(7), call(0), opDrop,
		i32Const(16), i32Const(1), i32Store(),
	)})
	m.imports = []rawImport{{"env", "proxy_log", []byte{tI32, tI32, tI32}, i32x1}}
	m.data = []rawData{{offset: 16, bytes: []byte("holding")}}
	cfg := &config.WasmPlugin{Name: "slowstart", Code: m.bytes()}

	type result struct {
		p   *Plugin
		err error
	}
	loaded := make(chan result, 1)
	go func() {
		p, err := h.LoadPlugin(context.Background(), cfg)
		loaded <- result{p, err}
	}()
	<-w.entered // the guest is inside proxy_log, in _initialize
	closed := make(chan error, 1)
	go func() { closed <- h.Close(context.Background()) }()
	// Close must wait for the load. If it returns first (the bug), the
	// guest resumes on freed memory; if it has not returned by then it
	// is waiting, and the load goes on. The wait only decides whether
	// the bad order is exercised, never the verdict on a correct Host.
	select {
	case <-closed:
		closed <- nil
		t.Error("Host.Close returned while a plugin was still starting")
	case <-time.After(200 * time.Millisecond):
	}
	close(w.release)
	r := <-loaded
	if err := <-closed; err != nil {
		t.Errorf("Close: %v", err)
	}
	if r.err != nil {
		t.Fatalf("the load Close waited for failed: %v", r.err)
	}
	for i := range r.p.slots {
		if !r.p.slots[i].Load().inst.closed.Load() {
			t.Error("an instance of the plugin loaded during Close was left open")
		}
	}
	if _, err := h.LoadPlugin(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "host is closed") {
		t.Errorf("LoadPlugin after Close: %v, want host is closed", err)
	}
}
