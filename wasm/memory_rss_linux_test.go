//go:build linux

package wasm

import (
	"bufio"
	"bytes"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
)

// growUntilRefused is proxy_on_request_headers(ctx, headers, eos) of a
// guest that, when the request has headers, grows its memory a page at
// a time until memory.grow refuses, writing to every 4 KiB of each new
// page (so the pages are really used), then traps as an allocator does
// when it runs out. A request without headers passes (returns 0).
// Parameters 0 and 1 double as its locals.
func growUntilRefused() rawFunc {
	var (
		localGet = func(i byte) []byte { return []byte{0x20, i} }
		localSet = func(i byte) []byte { return []byte{0x21, i} }
		localTee = func(i byte) []byte { return []byte{0x22, i} }
		block    = []byte{0x02, 0x40}
		loop     = []byte{0x03, 0x40}
		ifEmpty  = []byte{0x04, 0x40}
		end      = []byte{0x0b}
		ret      = []byte{0x0f}
		br       = func(depth byte) []byte { return []byte{0x0c, depth} }
		brIf     = func(depth byte) []byte { return []byte{0x0d, depth} }
		grow     = []byte{0x40, 0x00} // memory.grow
		store8   = []byte{0x3a, 0x00, 0x00}
		eqz      = []byte{0x45}
		eq       = []byte{0x46}
		ltU      = []byte{0x49}
		add      = []byte{0x6a}
		shl      = []byte{0x74}
	)
	return rawFunc{params: []byte{tI32, tI32, tI32}, results: i32x1, export: "proxy_on_request_headers", body: code(
		localGet(1), eqz, ifEmpty, i32Const(0), ret, end, // no headers: continue
		block, loop,
		i32Const(1), grow, localTee(0), i32Const(-1), eq, brIf(1), // refused: out
		localGet(0), i32Const(16), shl, localSet(0), // the new page's address
		i32Const(0), localSet(1),
		loop, // store 1 at every 4 KiB of the page
		localGet(0), localGet(1), add, i32Const(1), store8,
		localGet(1), i32Const(4096), add, localTee(1), i32Const(65536), ltU, brIf(0),
		end,
		br(0),
		end, end,
		opUnreachable,
	)}
}

// procStatus reads a "Vm..." line of /proc/self/status, in bytes.
func procStatus(t *testing.T, field string) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	s := bufio.NewScanner(bytes.NewReader(b))
	for s.Scan() {
		name, rest, ok := bytes.Cut(s.Bytes(), []byte(":"))
		if !ok || string(name) != field {
			continue
		}
		kb, err := strconv.ParseUint(string(bytes.TrimSuffix(bytes.TrimSpace(rest), []byte(" kB"))), 10, 64)
		if err != nil {
			t.Fatalf("/proc/self/status %s: %v", field, err)
		}
		return kb << 10
	}
	t.Fatalf("/proc/self/status has no %s", field)
	return 0
}

const mib = 1 << 20

// TestMemoryCapBoundsRSS is the memory cap's promise measured on the
// process: two instances under a 64 MiB cap whose guests grow memory
// until refused raise the peak RSS (VmHWM, reset before) by at most
// 2 × 64 MiB plus a slack, and once both poisoned instances are
// replaced (FAIL_RELOAD) the memory is back with the OS at once,
// without waiting for a garbage collection.
//
// Before linear memory had its own mapping, wazero regrew it by copying
// into a larger Go slice and the copies left behind waited for the GC:
// this test measured the peak 345 MiB over the base (769 MiB under
// -race) and 346 MiB still resident after the replacement; with the
// reservation, 128 MiB and 0.
func TestMemoryCapBoundsRSS(t *testing.T) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Skipf("cannot reset the peak RSS (VmHWM): %v", err)
	}
	const capMiB, instances = 64, 2
	const slack = 24 * mib
	h := newTestHost(t, instances)
	p := h.load(t, &config.WasmPlugin{
		Name:          "grower",
		Code:          abiModule(growUntilRefused()).bytes(),
		FailurePolicy: config.FailReload,
		EnvKeyValues:  map[string]string{EnvMemoryLimit: strconv.Itoa(capMiB), EnvCallDeadline: "0"},
	})
	request := func(grow bool) {
		var pairs []string
		if grow {
			pairs = []string{"x-grow", "1"}
		}
		s := newStream(p)
		st := s.decodeHeaders(true, pairs...)
		if grow && st != filter.HeadersStopIteration && len(s.cb.replies) == 0 && len(s.cb.resets) == 0 {
			t.Errorf("a stream whose guest trapped went on (status %v)", st)
		}
		s.finish()
	}
	broken := func() (n int) {
		p.vm.mu.Lock()
		defer p.vm.mu.Unlock()
		for _, inst := range p.vm.instances {
			if inst.broken.Load() {
				n++
			}
		}
		return n
	}

	runtime.GC()
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Fatal(err)
	}
	base := procStatus(t, "VmRSS")

	// Round robin puts the two streams on the two instances.
	request(true)
	request(true)
	if n := broken(); n != instances {
		t.Fatalf("%d instances poisoned, want %d", n, instances)
	}
	if n := h.stats.Counter("wasm.grower.memory_limit_exceeded").Value(); n != instances {
		t.Errorf("memory_limit_exceeded = %d, want %d", n, instances)
	}
	peak := procStatus(t, "VmHWM")
	t.Logf("base RSS %d MiB, peak %d MiB (+%d MiB) with %d instances at a %d MiB cap",
		base/mib, peak/mib, (peak-base)/mib, instances, capMiB)
	if limit := base + instances*capMiB*mib + slack; peak > limit {
		t.Errorf("peak RSS %d MiB over the base of %d MiB: more than %d instances × %d MiB + %d MiB",
			(peak-base)/mib, base/mib, instances, capMiB, slack/mib)
	}

	// The next streams land on the poisoned instances, which FAIL_RELOAD
	// replaces; the replaced ones close.
	for i := 0; i < 2*instances && broken() > 0; i++ {
		request(false)
	}
	if n := broken(); n != 0 {
		t.Fatalf("%d instances still poisoned after %d streams", n, 2*instances)
	}
	after := procStatus(t, "VmRSS")
	t.Logf("RSS after the replacement %d MiB (base %d MiB)", after/mib, base/mib)
	if after > base+slack {
		t.Errorf("RSS after replacing the instances is %d MiB over the base (%d MiB): their memory did not go back to the OS",
			(after-base)/mib, base/mib)
	}
}
