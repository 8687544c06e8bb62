//go:build linux

package wasm

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/tetratelabs/wazero"
	"golang.org/x/sys/unix"
)

// Instances of one module share the pages their linear memories hold in
// common once started (issue 16, item 2). wazero v1.12 writes the data
// segments into every new memory itself (applyData), so a memory cannot
// start out as a copy-on-write mapping of a pre-initialized image; the
// host shares after the fact instead. When an instance has been
// instantiated, initialized and its root context started (startRoot, the
// last step before it serves), the first such instance of a compiled
// module gives the module's image: its memory written once into a memfd
// (sealed: never written again). For that instance and every later one,
// the host compares each OS page of the memory with the image and maps
// the memfd privately (MAP_PRIVATE|MAP_FIXED) over runs of identical
// pages, at the same addresses: the content is the same at that instant
// and nothing runs in the instance meanwhile (the caller holds its
// lock), so the guest sees no change, and its next write to such a page
// copies that page alone. A page that is all zero but differs from the
// image is given back with MADV_DONTNEED (it reads as zero again). What
// an instance then holds privately is the pages it wrote since, not its
// start-up state: the Go runtime's heap and the data segments are the
// same in every instance of a Go plugin but for a few pages (random
// seeds, clocks).
//
// Bounds: only runs of at least minSharedRun pages are mapped, at most
// maxSharedRuns per instance (the longest), and no more than
// sharedRunsCap in the process: each run splits the reservation's one
// mapping into up to three, and the kernel limits a process's mappings
// (vm.max_map_count, 65530 by default), so the runs may add a quarter
// of that at most. Growth is unaffected: mapped
// runs lie inside the committed part, memory.grow still commits the
// PROT_NONE tail with mprotect (memory_linux.go), and the one munmap of
// Free ends the runs with the reservation. The image lives as long as a
// memory mapping it (refs), so it outlives a crashed instance's
// replacement and is dropped with the module's last instance. When the
// memfd cannot be made (no memfd_create, too many open files), memories
// stay private, as before; the load never fails for it.
const (
	minSharedRun  = 16  // OS pages: 64 KiB with 4 KiB pages
	maxSharedRuns = 256 // per instance
)

// sharedRunsCap is how many runs the process may map: two mappings
// each at most, a quarter of vm.max_map_count together.
var sharedRunsCap = func() int64 {
	b, err := os.ReadFile("/proc/sys/vm/max_map_count")
	if err != nil {
		return 65530 / 8
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n <= 0 {
		return 65530 / 8
	}
	return n / 8
}()

// pageSharing turns the sharing on; building with the tag
// wasmproxy_nocowmem turns it off (cowmem_off.go), for comparisons.
var pageSharing = true

// sharedRuns counts the runs mapped from images in memories not yet
// freed, against sharedRunsCap.
var sharedRuns atomic.Int64

// memImage is one compiled module's memory image: a sealed memfd holding
// the linear memory of its first started instance, mapped read-only at
// view for comparisons. Pages that were zero are holes in the memfd
// (zero has their bit set), compared without touching the view.
type memImage struct {
	key  wazero.CompiledModule
	fd   int
	view []byte
	zero []uint64
	refs int // guarded by imagesMu
}

var (
	imagesMu sync.Mutex
	images   = map[wazero.CompiledModule]*memImage{}
)

// memfdCreate is unix.MemfdCreate; a test makes it fail.
var memfdCreate = unix.MemfdCreate

// shareStats is what one sharing pass did, for the debug log and tests.
type shareStats struct {
	pages   int  // OS pages of the memory compared
	same    int  // identical to the image
	mapped  int  // mapped from the image now (in runs)
	runs    int  // runs mapped now
	zeroed  int  // zero pages given back with MADV_DONTNEED
	created bool // this memory gave the image
	took    time.Duration
}

// shareInitialPages shares inst's memory pages with its module's image,
// making the image from this memory when the module has none. The caller
// holds inst.mu, and the instance has just started (startRoot). Nothing
// is shared for a memory outside a reservation (the heap fallback) or
// when the image cannot be made; an error mapping the image (not seen:
// the mapping that MAP_FIXED replaces stays on failure in current
// kernels) poisons the instance rather than let it run on memory it may
// no longer have (instance.fail, as for a trap: FAIL_RELOAD replaces it).
func shareInitialPages(inst *instance) {
	mem := inst.mod.Memory()
	if !pageSharing || mem == nil || mem.Size() == 0 {
		return
	}
	buf, ok := mem.Read(0, mem.Size())
	if !ok {
		return
	}
	m := reservationAt(uintptr(unsafe.Pointer(unsafe.SliceData(buf))))
	if m == nil || len(buf) > m.committed {
		return
	}
	log := inst.vm.host.log
	began := time.Now()
	img, created, err := acquireImage(inst.vm.compiled.mod, buf)
	if err != nil {
		log.Debug("wasm: instance memory not shared: no memory image", "plugin", inst.vm.creator, "instance", inst.index, "err", err)
		return
	}
	st, err := m.share(img, buf)
	st.created, st.took = created, time.Since(began)
	if err != nil {
		inst.fail("sharing memory pages", err)
		return
	}
	log.Debug("wasm: instance memory pages shared", "plugin", inst.vm.creator, "instance", inst.index,
		"image_created", st.created, "pages", st.pages, "same", st.same, "mapped", st.mapped, "runs", st.runs,
		"zeroed", st.zeroed, "took", st.took)
	if hook := shareObserver; hook != nil {
		hook(inst, st)
	}
}

// shareObserver, when set (by a test), sees every sharing pass.
var shareObserver func(*instance, shareStats)

// acquireImage returns key's image with a reference taken, making it from
// buf when there is none.
func acquireImage(key wazero.CompiledModule, buf []byte) (*memImage, bool, error) {
	imagesMu.Lock()
	defer imagesMu.Unlock()
	if img := images[key]; img != nil {
		img.refs++
		return img, false, nil
	}
	img, err := newImage(key, buf)
	if err != nil {
		return nil, false, err
	}
	img.refs = 1
	images[key] = img
	return img, true, nil
}

// newImage writes buf into a new sealed memfd, leaving its zero pages
// as holes, and maps it for reading.
func newImage(key wazero.CompiledModule, buf []byte) (*memImage, error) {
	fd, err := memfdCreate("wasmproxy-memory-image", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	img := &memImage{key: key, fd: fd}
	fail := func(step string, err error) (*memImage, error) {
		img.free()
		return nil, fmt.Errorf("%s: %w", step, err)
	}
	if err := unix.Ftruncate(fd, int64(len(buf))); err != nil {
		return fail("ftruncate", err)
	}
	ps := os.Getpagesize()
	n := len(buf) / ps
	img.zero = make([]uint64, (n+63)/64)
	for i := 0; i < n; {
		if isZeroPage(buf[i*ps : (i+1)*ps]) {
			img.zero[i/64] |= 1 << (i % 64)
			i++
			continue
		}
		j := i + 1
		for j < n && !isZeroPage(buf[j*ps:(j+1)*ps]) {
			j++
		}
		for off := i * ps; off < j*ps; {
			w, err := unix.Pwrite(fd, buf[off:j*ps], int64(off))
			if err != nil {
				return fail("writing the image", err)
			}
			off += w
		}
		i = j
	}
	// Sealed, the file's pages can never change under the private
	// mappings of pages not yet copied.
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SEAL|unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE); err != nil {
		return fail("sealing the image", err)
	}
	view, err := unix.Mmap(fd, 0, len(buf), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return fail("mapping the image", err)
	}
	img.view = view
	return img, nil
}

func (img *memImage) isZero(page int) bool { return img.zero[page/64]&(1<<(page%64)) != 0 }

// release drops a reference; the last one frees the image.
func (img *memImage) release() {
	imagesMu.Lock()
	defer imagesMu.Unlock()
	img.refs--
	if img.refs > 0 {
		return
	}
	if images[img.key] == img {
		delete(images, img.key)
	}
	img.free()
}

func (img *memImage) free() {
	if img.view != nil {
		_ = unix.Munmap(img.view)
		img.view = nil
	}
	if img.fd >= 0 {
		_ = unix.Close(img.fd)
		img.fd = -1
	}
}

var zeroPage = make([]byte, os.Getpagesize())

func isZeroPage(p []byte) bool { return bytes.Equal(p, zeroPage) }

// run is a run of pages [start, end).
type run struct{ start, end int }

// share maps img over the runs of buf's pages identical to it and gives
// back zero pages that differ from it. buf is the memory's committed
// start. It keeps the reference to img taken by acquireImage when it
// mapped something (the first time), and drops it otherwise.
func (m *mappedMemory) share(img *memImage, buf []byte) (st shareStats, err error) {
	keep := false
	defer func() {
		if !keep {
			img.release()
		}
	}()
	if m.image != nil && m.image != img {
		return st, nil // not reached: a memory's module has one image
	}
	ps := os.Getpagesize()
	n := len(buf) / ps
	nimg := len(img.view) / ps
	st.pages = n
	if need := (n + 63) / 64; len(m.fromImage) < need {
		m.fromImage = append(m.fromImage, make([]uint64, need-len(m.fromImage))...)
	}
	from := func(i int) bool { return m.fromImage[i/64]&(1<<(i%64)) != 0 }
	var runs, zero []run
	addZero := func(i int) {
		if k := len(zero) - 1; k >= 0 && zero[k].end == i {
			zero[k].end++
		} else {
			zero = append(zero, run{i, i + 1})
		}
	}
	same := func(i int) bool {
		page := buf[i*ps : (i+1)*ps]
		if i >= nimg {
			return false
		}
		if img.isZero(i) {
			return isZeroPage(page)
		}
		return bytes.Equal(page, img.view[i*ps:(i+1)*ps])
	}
	for i := 0; i < n; {
		if !same(i) {
			if !from(i) && isZeroPage(buf[i*ps:(i+1)*ps]) {
				addZero(i)
			}
			i++
			continue
		}
		j := i + 1
		for j < n && same(j) {
			j++
		}
		st.same += j - i
		r := run{i, j}
		if j-i >= minSharedRun && !allSet(m.fromImage, i, j) {
			runs = append(runs, r)
		} else {
			// Too short to be worth a mapping (or already mapped):
			// its zero pages can still go back to the kernel.
			for k := i; k < j; k++ {
				if !from(k) && isZeroPage(buf[k*ps:(k+1)*ps]) {
					addZero(k)
				}
			}
		}
		i = j
	}
	if len(runs) > maxSharedRuns {
		slices.SortStableFunc(runs, func(a, b run) int { return (b.end - b.start) - (a.end - a.start) })
		runs = runs[:maxSharedRuns]
	}
	base := unsafe.Pointer(unsafe.SliceData(buf))
	for _, r := range runs {
		if sharedRuns.Add(1) > sharedRunsCap {
			sharedRuns.Add(-1)
			break
		}
		addr := unsafe.Add(base, r.start*ps)
		length := uintptr((r.end - r.start) * ps)
		if _, err := unix.MmapPtr(img.fd, int64(r.start*ps), addr, length,
			unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_FIXED|unix.MAP_NORESERVE); err != nil {
			sharedRuns.Add(-1)
			// Whatever is mapped there now, make it the image's content
			// again in plain memory before giving up.
			if _, aerr := unix.MmapPtr(-1, 0, addr, length, unix.PROT_READ|unix.PROT_WRITE,
				unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED|unix.MAP_NORESERVE); aerr == nil {
				copy(buf[r.start*ps:r.end*ps], img.view[r.start*ps:r.end*ps])
				clearBits(m.fromImage, r.start, r.end)
				continue
			}
			return st, fmt.Errorf("mapping %d pages of the memory image: %w", r.end-r.start, err)
		}
		setBits(m.fromImage, r.start, r.end)
		m.runs++
		st.runs++
		st.mapped += r.end - r.start
	}
	for _, z := range zero {
		if err := unix.Madvise(buf[z.start*ps:z.end*ps], unix.MADV_DONTNEED); err == nil {
			st.zeroed += z.end - z.start
		}
	}
	if st.runs > 0 && m.image == nil {
		m.image, keep = img, true
	}
	return st, nil
}

func allSet(bits []uint64, from, to int) bool {
	for i := from; i < to; i++ {
		if bits[i/64]&(1<<(i%64)) == 0 {
			return false
		}
	}
	return true
}

func setBits(bits []uint64, from, to int) {
	for i := from; i < to; i++ {
		bits[i/64] |= 1 << (i % 64)
	}
}

func clearBits(bits []uint64, from, to int) {
	for i := from; i < to; i++ {
		bits[i/64] &^= 1 << (i % 64)
	}
}

// dropShared forgets m's runs and its image reference once the
// reservation is unmapped (Free).
func (m *mappedMemory) dropShared() {
	sharedRuns.Add(-int64(m.runs))
	m.runs = 0
	if m.image != nil {
		m.image.release()
		m.image, m.fromImage = nil, nil
	}
}

// mapCount is the number of mappings of this process
// (/proc/self/maps lines), for tests and the benchmark's report.
func mapCount() (int, error) {
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	return strings.Count(string(b), "\n"), nil
}
