//go:build linux

package wasm

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/tetratelabs/wazero/experimental"
)

// Linear memory on Linux lives in a mapping of its own, outside the Go
// heap: instantiation reserves the instance's memory cap (or the
// module's declared maximum when lower) as address space only
// (PROT_NONE), memory.grow commits the next pages in place (mprotect to
// read/write; the kernel backs them when first touched), and closing
// the module unmaps the whole reservation, so its pages go back to the
// OS at once. wazero's default allocator regrows a Go slice by copying,
// and the copies left behind wait for the garbage collector (which
// paces itself by the Go heap, linear memories included): two instances
// filling a 64 MiB cap a page at a time took the process 345 MiB over
// its base instead of 128 (TestMemoryCapBoundsRSS, docs/perf.md).
//
// The base address never changes, so the slices wazero hands out stay
// valid while the module is open. After Free they point at unmapped
// memory and touching them faults and kills the process, where a Go
// slice would have stayed readable. wazero v1.12 does not refuse a call
// into a closed module (without WithCloseOnContextDone it looks at
// Closed only after the call returns), so the host keeps calls off freed
// memory: a module is closed only under its instance's lock
// (instance.close, abort; Host.Close waits for loads in progress and
// closes every plugin before the runtime: TestCloseWaitsForLoad), every
// guest call runs under that lock and checks instance.closed first, and
// host functions copy what they keep from guest memory (readGuest).
// After Free wazero itself only reads the length (api.Memory.Size,
// which classify uses).

// mappedBytes is the address space reserved for linear memories now
// mapped, in bytes: what instances may grow to, not what they use.
var mappedBytes atomic.Int64

// guestMemory is the memory allocator of one instantiation: it hands
// wazero a reservation of at most limit bytes and remembers it, so that
// an instantiation that fails can be cleaned up (wazero frees the
// memory of a module it closes, but not of one whose instantiation
// failed, e.g. in its start function).
type guestMemory struct {
	limit uint64
	mem   experimental.LinearMemory // what Allocate handed out; nil before
}

// newGuestMemory is the allocator for one instance under a cap of
// limitPages 64 KiB pages.
func newGuestMemory(limitPages uint32) *guestMemory {
	return &guestMemory{limit: uint64(limitPages) * 65536}
}

// context returns ctx carrying g, for wazero's InstantiateModule.
func (g *guestMemory) context(ctx context.Context) context.Context {
	return experimental.WithMemoryAllocator(ctx, g)
}

// release frees the memory of an instantiation that failed. Freeing
// twice is harmless, so it may also follow a failure after which wazero
// closed the module itself.
func (g *guestMemory) release() {
	if g.mem != nil {
		g.mem.Free()
	}
}

// Allocate implements experimental.MemoryAllocator: capacity is the
// initial size wazero asks for at once (the module's minimum), maximum
// the most it will ever ask for (the module's maximum, which limits.go
// already lowered to the cap). The reservation is the lower of maximum
// and the cap, never less than capacity. When the address space cannot
// be had (a ulimit -v, too many mappings), the memory falls back to a
// Go slice grown by copying, as wazero's own allocator does, rather
// than failing the instantiation.
func (g *guestMemory) Allocate(capacity, maximum uint64) experimental.LinearMemory {
	size := max(min(maximum, g.limit), capacity)
	m, err := reserve(size)
	if err != nil {
		g.mem = &heapMemory{max: size}
	} else {
		g.mem = m
	}
	return g.mem
}

// mappedMemory is a linear memory that grows in place inside a
// reservation made by mmap.
type mappedMemory struct {
	mapping   []byte // the whole reservation; nil once freed
	committed int    // bytes readable and writable from the start

	// image is the module's memory image that runs of pages here are
	// mapped from (cowmem_linux.go), nil when none; fromImage has a bit
	// set for each OS page mapped from it. Touched, like the mapping,
	// only under the instance's lock.
	image     *memImage
	fromImage []uint64
	runs      int // runs mapped from image, against sharedRunsCap
}

// reservations finds the mappedMemory of a linear memory by the address
// of its first byte (what wazero's api.Memory hands out), for page
// sharing after instantiation (cowmem_linux.go).
var reservations sync.Map // uintptr → *mappedMemory

// reservationAt returns the mappedMemory whose reservation starts at
// base, nil when there is none (a heapMemory fallback).
func reservationAt(base uintptr) *mappedMemory {
	if m, ok := reservations.Load(base); ok {
		return m.(*mappedMemory)
	}
	return nil
}

// reserve maps size bytes of address space, rounded up to whole OS
// pages, with no access and no swap reserved for it.
func reserve(size uint64) (*mappedMemory, error) {
	if size == 0 {
		return &mappedMemory{}, nil
	}
	if size > uint64(maxMemoryPages)*65536 {
		return nil, syscall.ENOMEM // never: limits.go caps every memory
	}
	b, err := syscall.Mmap(-1, 0, roundUpPage(int(size)), syscall.PROT_NONE,
		syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS|syscall.MAP_NORESERVE)
	if err != nil {
		return nil, err
	}
	mappedBytes.Add(int64(len(b)))
	m := &mappedMemory{mapping: b}
	reservations.Store(uintptr(unsafe.Pointer(&b[0])), m)
	return m, nil
}

// Reallocate implements experimental.LinearMemory: it makes the first
// size bytes readable and writable and returns them, over the same
// backing array as every earlier result (len and cap are size, so no
// slice reaches the reserved tail). New pages read as zero. It returns
// nil, which wazero turns into a failed memory.grow, when size is past
// the reservation or the kernel refuses to commit.
func (m *mappedMemory) Reallocate(size uint64) []byte {
	if m.mapping == nil {
		if size == 0 {
			return []byte{}
		}
		return nil
	}
	if size > uint64(len(m.mapping)) {
		return nil
	}
	n := int(size)
	if n > m.committed {
		end := min(roundUpPage(n), len(m.mapping))
		if err := syscall.Mprotect(m.mapping[m.committed:end], syscall.PROT_READ|syscall.PROT_WRITE); err != nil {
			return nil
		}
		m.committed = end
	}
	return m.mapping[:n:n]
}

// Free implements experimental.LinearMemory: it unmaps the reservation,
// returning its pages to the OS (the runs mapped from the module's
// image too: one munmap covers every mapping inside the range), and
// drops its reference to the image. wazero calls it when the module
// closes; calling it again does nothing.
func (m *mappedMemory) Free() {
	if m.mapping == nil {
		return
	}
	reservations.Delete(uintptr(unsafe.Pointer(&m.mapping[0])))
	if syscall.Munmap(m.mapping) == nil {
		mappedBytes.Add(-int64(len(m.mapping)))
	}
	m.mapping, m.committed = nil, 0
	m.dropShared()
}

func roundUpPage(n int) int {
	p := os.Getpagesize()
	return (n + p - 1) &^ (p - 1)
}

// heapMemory is the fallback when no reservation can be mapped: a Go
// slice regrown by copying, as wazero's default allocator does.
type heapMemory struct {
	buf []byte
	max uint64
}

func (m *heapMemory) Reallocate(size uint64) []byte {
	if size > m.max {
		return nil
	}
	if n := int(size); n <= cap(m.buf) {
		m.buf = m.buf[:n]
	} else {
		m.buf = append(m.buf, make([]byte, n-len(m.buf))...)
	}
	return m.buf
}

func (m *heapMemory) Free() { m.buf = nil }
