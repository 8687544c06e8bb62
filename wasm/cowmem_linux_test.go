//go:build linux

package wasm

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/logging"
)

// cowPlugin is the config of testdata/cowmem, a Go plugin whose
// instances all hold a 4 MiB table filled with the same pattern.
func cowPlugin(t *testing.T) *config.WasmPlugin {
	return &config.WasmPlugin{Name: "cowmem", CodeFile: buildPlugin(t, "cowmem"), FailurePolicy: config.FailReload,
		// grow:32 touches 32 MiB of fresh pages in one callback: page
		// faults a busy VM can make cost more than the default 100 ms
		// of CPU (CI saw the deadline's empty reply once). The budget
		// is not what these tests are about.
		EnvKeyValues: map[string]string{EnvCallDeadline: "60000"}}
}

// cowOp sends one request with x-op: op and returns the body of the
// plugin's local reply.
func cowOp(t *testing.T, p *Plugin, op string) string {
	t.Helper()
	s := newStream(p)
	s.decodeHeaders(true, ":path", "/", "x-op", op)
	s.finish()
	if len(s.cb.replies) != 1 {
		t.Fatalf("x-op %s: %d local replies, want 1 (resets %v)", op, len(s.cb.replies), s.cb.resets)
	}
	return s.cb.replies[0].body
}

// tablePattern is testdata/cowmem's pattern at the table's middle.
func tablePattern(n int) string {
	const tableSize = 4 << 20
	b := make([]byte, n)
	for k := range b {
		i := tableSize/2 + k
		b[k] = byte(i*7 + i>>12 + 1)
	}
	return string(b)
}

// observeShares records every sharing pass until the test ends. It
// skips the test in a build without page sharing (wasmproxy_nocowmem).
func observeShares(t *testing.T) func() []shareStats {
	if !pageSharing {
		t.Skip("built with wasmproxy_nocowmem: no page sharing")
	}
	var mu sync.Mutex
	var seen []shareStats
	shareObserver = func(_ *instance, st shareStats) {
		mu.Lock()
		seen = append(seen, st)
		mu.Unlock()
	}
	t.Cleanup(func() { shareObserver = nil })
	return func() []shareStats {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}

// memUse is what /proc/self/smaps says of an address range.
type memUse struct{ rss, pss, privDirty, mappings int64 }

// rangeUse sums Rss, Pss and Private_Dirty over the mappings inside
// [lo, hi) (every mapping of a reservation lies inside it).
func rangeUse(t *testing.T, lo, hi uintptr) memUse {
	t.Helper()
	data, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	var u memUse
	in := false
	s := bufio.NewScanner(bytes.NewReader(data))
	for s.Scan() {
		line := s.Text()
		if f := strings.Fields(line); len(f) > 0 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			a, b, _ := strings.Cut(f[0], "-")
			start, err1 := strconv.ParseUint(a, 16, 64)
			end, err2 := strconv.ParseUint(b, 16, 64)
			if err1 == nil && err2 == nil {
				in = uintptr(start) >= lo && uintptr(end) <= hi
				if in {
					u.mappings++
				}
				continue
			}
		}
		if !in {
			continue
		}
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			continue
		}
		switch name {
		case "Rss":
			u.rss += kb << 10
		case "Pss":
			u.pss += kb << 10
		case "Private_Dirty":
			u.privDirty += kb << 10
		}
	}
	return u
}

// poolUse sums rangeUse over the reservations of p's instances.
func poolUse(t *testing.T, p *Plugin) memUse {
	t.Helper()
	var u memUse
	for i := range p.live.Load() {
		inst := p.slots[i].Load().inst
		mem := inst.mod.Memory()
		buf, ok := mem.Read(0, mem.Size())
		if !ok {
			t.Fatal("cannot read an instance's memory")
		}
		m := reservationAt(uintptr(unsafe.Pointer(unsafe.SliceData(buf))))
		if m == nil {
			t.Fatal("an instance's memory is not in a reservation")
		}
		base := uintptr(unsafe.Pointer(unsafe.SliceData(m.mapping)))
		r := rangeUse(t, base, base+uintptr(len(m.mapping)))
		u.rss += r.rss
		u.pss += r.pss
		u.privDirty += r.privDirty
		u.mappings += r.mappings
	}
	return u
}

// TestSharedPagesServeAndStayPrivate: instances whose pages are shared
// serve as before, a write in one is not seen by the other, memory.grow
// still works after the remap, and closing the plugin unmaps every
// reservation and frees the image.
func TestSharedPagesServeAndStayPrivate(t *testing.T) {
	seen := observeShares(t)
	mappedBefore := mappedBytes.Load()
	h := newTestHost(t, 2)
	p, err := h.LoadPlugin(context.Background(), cowPlugin(t))
	if err != nil {
		t.Fatal(err)
	}
	p.waitPool()
	st := seen()
	if len(st) != 2 || !st[0].created || st[1].created {
		t.Fatalf("sharing passes %+v, want two, the first making the image", st)
	}
	for i, s := range st {
		// The 4 MiB table alone is 1024 pages in common.
		if s.mapped < 1024 {
			t.Errorf("instance pass %d mapped %d pages from the image, want the table's 1024 at least (%+v)", i, s.mapped, s)
		}
	}
	for range 2 {
		if got := cowOp(t, p, "check"); got != "pattern" {
			t.Fatalf("check after sharing: %q", got)
		}
	}
	// The pool picks instances in turn: set in one, get in the other,
	// then get in the first again.
	if got := cowOp(t, p, "set:hello"); got != "ok" {
		t.Fatalf("set: %q", got)
	}
	gets := []string{cowOp(t, p, "get:5"), cowOp(t, p, "get:5")}
	slices.Sort(gets)
	want := []string{tablePattern(5), "hello"}
	slices.Sort(want)
	if !slices.Equal(gets, want) {
		t.Fatalf("get in both instances after a set in one: %q, want %q (the write seen by its instance only)", gets, want)
	}
	// Growth past the shared start: 32 MiB more in each instance.
	for range 2 {
		if got, want := cowOp(t, p, "grow:32"), strconv.Itoa(sumPageMarks(32)); got != want {
			t.Fatalf("grow:32 replied %q, want %q", got, want)
		}
	}
	for range 2 {
		if got := cowOp(t, p, "check"); got != "pattern" {
			t.Fatalf("check after growing: %q", got)
		}
	}
	p.Close(context.Background())
	if got := mappedBytes.Load(); got != mappedBefore {
		t.Errorf("mappedBytes = %d after close, want %d", got, mappedBefore)
	}
	imagesMu.Lock()
	left := len(images)
	imagesMu.Unlock()
	if left != 0 || sharedRuns.Load() != 0 {
		t.Errorf("after close: %d images, %d shared runs left, want none", left, sharedRuns.Load())
	}
	if n := openImages(t); n != 0 {
		t.Errorf("%d memory image files still open after close", n)
	}
}

// sumPageMarks is what testdata/cowmem's grow:<mib> replies.
func sumPageMarks(mib int) int {
	sum := 0
	for i := 0; i < mib<<20; i += 4096 {
		sum += int(byte(i >> 12))
	}
	return sum
}

// openImages counts this process's open memory image memfds.
func openImages(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.Contains(target, "wasmproxy-memory-image") {
			n++
		}
	}
	return n
}

// TestSharedPagesLowerPss: four instances of a Go plugin after warm-up
// traffic hold, in proportional terms (Pss, what each process's share of
// a shared page is), less than half the memory they hold when each
// keeps its pages private; their private dirty pages fall as much.
func TestSharedPagesLowerPss(t *testing.T) {
	observeShares(t)
	const n = 4
	measure := func(share bool) memUse {
		pageSharing = share
		defer func() { pageSharing = true }()
		h := newTestHost(t, n)
		p := h.load(t, cowPlugin(t))
		for range 2 * n {
			if got := cowOp(t, p, "check"); got != "pattern" {
				t.Fatalf("check (sharing %t): %q", share, got)
			}
		}
		u := poolUse(t, p)
		p.Close(context.Background())
		h.Close(context.Background())
		return u
	}
	private, shared := measure(false), measure(true)
	t.Logf("%d instances' memories, private: Rss %d KiB, Pss %d KiB, Private_Dirty %d KiB, %d mappings", n, private.rss>>10, private.pss>>10, private.privDirty>>10, private.mappings)
	t.Logf("%d instances' memories, shared:  Rss %d KiB, Pss %d KiB, Private_Dirty %d KiB, %d mappings", n, shared.rss>>10, shared.pss>>10, shared.privDirty>>10, shared.mappings)
	if shared.pss*2 > private.pss {
		t.Errorf("Pss with sharing %d KiB, without %d KiB: want less than half", shared.pss>>10, private.pss>>10)
	}
	if shared.privDirty*2 > private.privDirty {
		t.Errorf("Private_Dirty with sharing %d KiB, without %d KiB: want less than half", shared.privDirty>>10, private.privDirty>>10)
	}
	// Each shared run splits its reservation's mapping in up to three.
	if shared.mappings > private.mappings+2*n*maxSharedRuns {
		t.Errorf("%d mappings with sharing, %d without: more than the runs' bound", shared.mappings, private.mappings)
	}
}

// TestSharedPagesWithoutMemfd: when the memory image cannot be made,
// instances keep private memory and the plugin loads and serves.
func TestSharedPagesWithoutMemfd(t *testing.T) {
	observeShares(t)
	memfdCreate = func(string, int) (int, error) { return -1, errors.New("memfd_create refused by the test") }
	t.Cleanup(func() { memfdCreate = unix.MemfdCreate })
	h := newTestHost(t, 2)
	p := h.load(t, cowPlugin(t))
	for range 2 {
		if got := cowOp(t, p, "check"); got != "pattern" {
			t.Fatalf("check: %q", got)
		}
	}
	if u := poolUse(t, p); u.mappings != 2*2 {
		// A reservation is its committed part and its PROT_NONE tail.
		t.Errorf("%d mappings in two private reservations, want 4", u.mappings)
	}
	if !strings.Contains(h.logs.text(), "instance memory not shared: no memory image") || !strings.Contains(h.logs.text(), "memfd_create refused by the test") {
		t.Errorf("no debug line says why memory is not shared; logs:\n%s", h.logs.text())
	}
}

// TestSharedPagesAfterCrash: an instance replaced after a trap
// (FAIL_RELOAD) shares the image of the instance it replaces, which
// outlives it, and serves the pattern.
func TestSharedPagesAfterCrash(t *testing.T) {
	seen := observeShares(t)
	h := newTestHost(t, 1)
	p := h.load(t, cowPlugin(t))
	s := newStream(p)
	s.decodeHeaders(true, ":path", "/", "x-op", "trap")
	s.finish()
	if len(s.cb.replies) == 0 && len(s.cb.resets) == 0 {
		t.Fatal("a trapping request was neither answered nor reset")
	}
	if got := cowOp(t, p, "check"); got != "pattern" {
		t.Fatalf("check in the replacement: %q", got)
	}
	st := seen()
	if len(st) != 2 {
		t.Fatalf("%d sharing passes, want 2 (the instance and its replacement): %+v", len(st), st)
	}
	if st[1].created || st[1].mapped < 1024 {
		t.Errorf("the replacement made a new image or mapped little of it: %+v", st[1])
	}
	p.Close(context.Background())
	if n := openImages(t); n != 0 {
		t.Errorf("%d memory image files open after close", n)
	}
}

// TestSharedRunsBounded shares a memory that differs from its image
// every 17th page, in more runs than an instance may map: the longest
// maxSharedRuns are mapped, the content does not change, and growth,
// writes and Free work on the mixed mapping.
func TestSharedRunsBounded(t *testing.T) {
	ps := os.Getpagesize()
	const pages = 8192
	img := make([]byte, pages*ps)
	for i := range img {
		img[i] = byte(i/ps + 1)
	}
	for i := 100; i < 140; i++ { // a run of zero pages
		clear(img[i*ps : (i+1)*ps])
	}
	before, runsBefore := mappedBytes.Load(), sharedRuns.Load()
	m, err := reserve(2 * pages * uint64(ps))
	if err != nil {
		t.Fatal(err)
	}
	buf := m.Reallocate(uint64(len(img)))
	copy(buf, img)
	for i := minSharedRun; i < pages; i += minSharedRun + 1 {
		buf[i*ps] ^= 0xff
	}
	want := bytes.Clone(buf)
	image, err := newImage(nil, img)
	if err != nil {
		t.Fatal(err)
	}
	image.refs = 2 // the test's and the memory's
	maps0, err := mapCount()
	if err != nil {
		t.Fatal(err)
	}
	st, err := m.share(image, buf)
	if err != nil {
		t.Fatal(err)
	}
	maps1, _ := mapCount()
	if st.runs != maxSharedRuns {
		t.Errorf("%d runs mapped, want the cap %d (%+v)", st.runs, maxSharedRuns, st)
	}
	if added := maps1 - maps0; added > 2*st.runs {
		t.Errorf("%d mappings added for %d runs", added, st.runs)
	}
	if !bytes.Equal(buf, want) {
		t.Fatal("the memory's content changed by sharing")
	}
	// Writes stay in this memory; the image keeps its pages.
	for i := 0; i < pages; i += 7 {
		buf[i*ps+1] = 0xaa
	}
	if !bytes.Equal(image.view, img) {
		t.Fatal("a write to the memory reached the image")
	}
	// Grow to the whole reservation and use the new pages.
	grown := m.Reallocate(uint64(2 * pages * ps))
	if grown == nil || unsafe.SliceData(grown) != unsafe.SliceData(buf) {
		t.Fatal("growth after sharing failed or moved the memory")
	}
	for i := pages; i < 2*pages; i++ {
		grown[i*ps] = 1
	}
	m.Free()
	image.release()
	if got := mappedBytes.Load(); got != before {
		t.Errorf("mappedBytes = %d after Free, want %d", got, before)
	}
	if got := sharedRuns.Load(); got != runsBefore {
		t.Errorf("sharedRuns = %d after Free, want %d", got, runsBefore)
	}
	if image.fd != -1 {
		t.Error("the image's memfd is open after its last reference went")
	}
}

// BenchmarkSharePages is the instantiation time page sharing adds to an
// instance of a Go plugin (testdata/httpfilter), apart from the
// scheduling noise of a pool starting in parallel: each iteration puts
// a started instance's memory content into a fresh reservation (not
// timed) and shares it with the module's image (timed: compare every
// page, map the runs, give back zero pages). BenchmarkMemoryImage is
// the first instance's extra cost, writing the image.
func BenchmarkSharePages(b *testing.B) {
	snap, img := startedMemory(b)
	for b.Loop() {
		b.StopTimer()
		m, err := reserve(uint64(2 * len(snap)))
		if err != nil {
			b.Fatal(err)
		}
		buf := m.Reallocate(uint64(len(snap)))
		copy(buf, snap)
		imagesMu.Lock()
		img.refs++
		imagesMu.Unlock()
		b.StartTimer()
		st, err := m.share(img, buf)
		b.StopTimer()
		if err != nil || st.mapped == 0 {
			b.Fatalf("share: %+v, %v", st, err)
		}
		m.Free()
		b.StartTimer()
	}
	b.ReportMetric(float64(len(snap))/(1<<20), "MiB")
}

func BenchmarkMemoryImage(b *testing.B) {
	snap, _ := startedMemory(b)
	for b.Loop() {
		img, err := newImage(nil, snap)
		if err != nil {
			b.Fatal(err)
		}
		img.free()
	}
}

// startedMemory loads testdata/httpfilter with two instances and
// returns a copy of the second one's memory and the module's image.
func startedMemory(b *testing.B) ([]byte, *memImage) {
	h, err := NewHost(context.Background(), Options{CacheDir: b.TempDir(), PoolSize: 2, Logs: logging.NewRegistry(io.Discard, logging.LevelWarn)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close(context.Background()) })
	p, err := h.LoadPlugin(context.Background(), &config.WasmPlugin{Name: "httpfilter", CodeFile: buildPlugin(b, "httpfilter"), PluginConfiguration: []byte("headers")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close(context.Background()) })
	p.waitPool()
	inst := p.slots[1].Load().inst
	mem := inst.mod.Memory()
	buf, _ := mem.Read(0, mem.Size())
	imagesMu.Lock()
	img := images[p.vm.compiled.mod]
	imagesMu.Unlock()
	if img == nil {
		b.Fatal("no memory image")
	}
	return bytes.Clone(buf), img
}

// TestSharedPagesAcrossReload: a second plugin joining the VM (sharing
// runs again in serving instances) and a reload into a new VM of the
// same code (new instances comparing with the image the old ones keep
// alive) leave every instance serving its own state; the image goes
// with the last instance.
func TestSharedPagesAcrossReload(t *testing.T) {
	seen := observeShares(t)
	h := newTestHost(t, 2)
	cfg := func(vmConfig string) *config.WasmPlugin {
		c := cowPlugin(t)
		c.VMConfiguration = []byte(vmConfig)
		return c
	}
	a, err := h.LoadPlugin(context.Background(), cfg("one"))
	if err != nil {
		t.Fatal(err)
	}
	a.waitPool()
	if got := cowOp(t, a, "set:first"); got != "ok" {
		t.Fatalf("set: %q", got)
	}
	// Same VM key: b's root contexts start in a's serving instances.
	b, err := h.LoadPlugin(context.Background(), cfg("one"))
	if err != nil {
		t.Fatal(err)
	}
	b.waitPool()
	if b.vm != a.vm {
		t.Fatal("the second plugin did not join the first one's VM")
	}
	gets := []string{cowOp(t, b, "get:5"), cowOp(t, b, "get:5")}
	slices.Sort(gets)
	want := []string{tablePattern(5), "first"}
	slices.Sort(want)
	if !slices.Equal(gets, want) {
		t.Fatalf("after the second plugin joined: gets %q, want %q", gets, want)
	}
	// A reload into a new VM (another vm_config) of the same code.
	c, err := h.LoadPlugin(context.Background(), cfg("two"))
	if err != nil {
		t.Fatal(err)
	}
	c.waitPool()
	a.Close(context.Background())
	b.Close(context.Background())
	for range 2 {
		if got := cowOp(t, c, "get:5"); got != tablePattern(5) {
			t.Fatalf("a new VM's instance sees %q, want the pattern", got)
		}
		if got := cowOp(t, c, "check"); got != "pattern" {
			t.Fatalf("check in the new VM: %q", got)
		}
	}
	created := 0
	for _, st := range seen() {
		if st.created {
			created++
		}
	}
	if created != 1 {
		t.Errorf("%d images made for one module whose instances overlapped, want 1", created)
	}
	c.Close(context.Background())
	if n := openImages(t); n != 0 {
		t.Errorf("%d memory image files open after the last instance closed", n)
	}
}
