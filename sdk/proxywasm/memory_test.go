package proxywasm

import (
	"testing"
	"unsafe"
)

// hostReturns does what a host does for a result: allocate through the
// guest allocator, copy, write (pointer, length) to the out-parameters.
func hostReturns(data []byte) {
	p := allocateForHost(uint32(len(data)))
	copy(unsafe.Slice(p, len(data)), data)
	retData = p
	retLen = uint32(len(data))
}

func TestTakeResult(t *testing.T) {
	resetResult()
	hostReturns([]byte("hello"))
	if got := takeResult(); string(got) != "hello" || cap(got) != 5 {
		t.Fatalf("takeResult = %q (cap %d), want hello", got, cap(got))
	}
	if hostBuf != nil || len(moreBufs) != 0 || retData != nil || retLen != 0 {
		t.Fatalf("state not released: buf %v, %d more, retData %v, retLen %d", hostBuf, len(moreBufs), retData, retLen)
	}
	if got := takeResult(); got != nil {
		t.Fatalf("takeResult with nothing returned = %q, want nil", got)
	}
}

func TestTakeResultZeroSize(t *testing.T) {
	hostReturns(nil)
	got := takeResult()
	if got == nil || len(got) != 0 {
		t.Fatalf("takeResult = %v, want empty non-nil", got)
	}
}

func TestTakeResultRejectsForeignPointer(t *testing.T) {
	var x [8]byte
	retData = &x[0]
	retLen = 4
	defer func() {
		if recover() == nil {
			t.Fatal("takeResult accepted memory the host did not allocate")
		}
		resetResult()
	}()
	takeResult()
}

func TestTakeResultRejectsOverlongLength(t *testing.T) {
	hostReturns([]byte("abc"))
	retLen = 100
	defer func() {
		if recover() == nil {
			t.Fatal("takeResult accepted a length past the allocation")
		}
		resetResult()
		releaseHostBufs()
	}()
	takeResult()
}

// TestReadIntoSpareCapacity: a Read* call's result is served from the
// caller's spare capacity, after its contents, with no allocation; one
// that does not fit is allocated and copied after them, as append does.
func TestReadIntoSpareCapacity(t *testing.T) {
	read := func(dst, value []byte) []byte {
		resetResult()
		beginAppend(dst)
		hostReturns(value)
		return appendResult(dst, takeResult())
	}
	buf := make([]byte, 0, 64)
	buf = append(buf, "k="...)
	got := read(buf, []byte("application/json"))
	if string(got) != "k=application/json" || unsafe.SliceData(got) != unsafe.SliceData(buf) {
		t.Fatalf("read = %q at %p, want k=application/json in the caller's buffer %p", got, unsafe.SliceData(got), unsafe.SliceData(buf))
	}
	if n := testing.AllocsPerRun(100, func() { read(buf[:0], []byte("application/json")) }); n != 0 {
		t.Errorf("a read that fits allocates %v times, want 0", n)
	}
	large := make([]byte, resultChunkMax+1)
	if n := testing.AllocsPerRun(100, func() { resetResult(); hostReturns(large); takeResult() }); n != 1 {
		t.Errorf("a large result without a buffer allocates %v times, want 1 (the comparison above measures something)", n)
	}
	small := append(make([]byte, 0, 4), "k="...)
	if got := read(small, []byte("longer than the room")); string(got) != "k=longer than the room" {
		t.Fatalf("read past the capacity = %q", got)
	}
	if into != nil || intoUsed {
		t.Fatal("the caller's buffer is still lent out after the call")
	}
	// A call that did not finish does not lend the buffer to the next.
	beginAppend(buf[:0])
	resetResult()
	hostReturns([]byte("x"))
	if got := takeResult(); unsafe.SliceData(got) == unsafe.SliceData(buf) {
		t.Fatal("a later call wrote into a buffer lent to an earlier one")
	}
}

// TestSmallResultsShareChunks: small results are carved out of shared
// chunks, so reading a header value costs a Go allocation only once per
// chunk; each result still owns its bytes (an append to one copies
// instead of overwriting the next), and results stay intact after later
// calls.
func TestSmallResultsShareChunks(t *testing.T) {
	get := func(v string) []byte {
		resetResult()
		hostReturns([]byte(v))
		return takeResult()
	}
	a := get("application/json")
	b := get("text/plain")
	if string(a) != "application/json" || string(b) != "text/plain" || cap(a) != len(a) || cap(b) != len(b) {
		t.Fatalf("results %q (cap %d), %q (cap %d)", a, cap(a), b, cap(b))
	}
	a2 := append(a, "; charset=utf-8"...)
	if string(b) != "text/plain" || string(a) != "application/json" || string(a2) != "application/json; charset=utf-8" {
		t.Fatalf("an append to one result changed another: a %q, a2 %q, b %q", a, a2, b)
	}
	kept := make([][]byte, 0, 3*resultChunkSize/16)
	for i := range cap(kept) {
		kept = append(kept, get(string(rune('a'+i%26))+"0123456789abcde"))
	}
	for i, r := range kept {
		if want := string(rune('a'+i%26)) + "0123456789abcde"; string(r) != want {
			t.Fatalf("result %d = %q after later results, want %q", i, r, want)
		}
	}
	// 16-byte results: one chunk per resultChunkSize/16 of them. The
	// count is the average rounded down, so any per-result allocation
	// would show as 1 (TestReadIntoSpareCapacity shows a large one does).
	if n := testing.AllocsPerRun(1000, func() { get("application/json") }); n != 0 {
		t.Errorf("a small result allocates %v times per call, want 0", n)
	}
}

// hostReturnsInArea does what our host does for a result when the
// guest's result area (resultAreaWords) has room: copy it there, mark
// the area used, write (pointer, length) to the out-parameters. It
// reports false, doing nothing, when the area is too small.
func hostReturnsInArea(data []byte) bool {
	if resultAreaWords[1] < uint32(len(data)) || len(offered) < len(data) {
		return false
	}
	copy(offered, data) // offered is the area as the guest sees it
	resultAreaWords[1] = 0
	retData = unsafe.SliceData(offered)
	retLen = uint32(len(data))
	return true
}

// TestResultArea: a result the host copies into the offered area is
// carved from the chunk as an allocated one is (the next result lands
// after it, nothing is overwritten), with no proxy_on_memory_allocate; a
// Read* call offers the caller's spare capacity; a host that takes the
// area and then allocates a second result gets memory elsewhere; a host
// that ignores the area gets the same chunk memory through the allocator.
func TestResultArea(t *testing.T) {
	resultChunk = nil
	resetResult()
	if offered != nil {
		t.Fatal("an offer without a chunk")
	}
	hostReturns([]byte("first")) // no chunk yet: the allocator makes one
	first := takeResult()
	var got [][]byte
	for _, v := range []string{"application/json", "text/plain", "x"} {
		resetResult()
		if offered == nil || resultAreaWords[1] == 0 || resultAreaWords[1] > resultChunkMax {
			t.Fatalf("offer of %d bytes (words %v) before a call", len(offered), resultAreaWords)
		}
		if !hostReturnsInArea([]byte(v)) {
			t.Fatal("the area has no room")
		}
		got = append(got, takeResult())
		if offered != nil || resultAreaWords != [2]uint32{} {
			t.Fatal("the offer outlives the call")
		}
	}
	if string(first) != "first" || string(got[0]) != "application/json" || string(got[1]) != "text/plain" || string(got[2]) != "x" {
		t.Fatalf("results %q %q", first, got)
	}
	if cap(got[0]) != len(got[0]) || unsafe.SliceData(got[1]) != (*byte)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(got[0])), len(got[0]))) {
		t.Fatal("results in the area are not carved one after another")
	}
	if n := testing.AllocsPerRun(1000, func() {
		resetResult()
		hostReturnsInArea([]byte("application/json"))
		takeResult()
	}); n != 0 {
		t.Errorf("a result in the area allocates %v times, want 0", n)
	}

	// A host that ignores the area: the allocator withdraws the offer
	// and carves the same memory.
	resultChunk = make([]byte, resultChunkSize)
	resetResult()
	head := unsafe.SliceData(offered)
	hostReturns([]byte("ignored"))
	if offered != nil || resultAreaWords != [2]uint32{} {
		t.Fatal("the allocator left the area offered")
	}
	if r := takeResult(); string(r) != "ignored" || unsafe.SliceData(r) != head {
		t.Fatalf("allocated result %q not at the offered head", r)
	}

	// The area taken, then a second allocation in the same call: it must
	// not land on the first result.
	resetResult()
	hostReturnsInArea([]byte("in-area"))
	inArea := unsafe.Slice(retData, retLen)
	p := allocateForHost(8)
	if uintptr(unsafe.Pointer(p)) >= uintptr(unsafe.Pointer(unsafe.SliceData(inArea))) &&
		uintptr(unsafe.Pointer(p)) < uintptr(unsafe.Pointer(unsafe.SliceData(inArea)))+uintptr(len(inArea)) {
		t.Fatal("a second allocation overlaps the result in the area")
	}
	copy(unsafe.Slice(p, 8), "XXXXXXXX")
	if r := takeResult(); string(r) != "in-area" {
		t.Fatalf("result %q after a second allocation, want in-area", r)
	}

	// A Read* call offers the caller's spare capacity.
	buf := append(make([]byte, 0, 64), "k="...)
	resetResult()
	beginAppend(buf)
	if !offeredAt(buf[len(buf):cap(buf)]) {
		t.Fatal("a Read* call does not offer the caller's spare capacity")
	}
	hostReturnsInArea([]byte("v"))
	if r := appendResult(buf, takeResult()); string(r) != "k=v" || unsafe.SliceData(r) != unsafe.SliceData(buf) {
		t.Fatalf("read %q, not in the caller's buffer", r)
	}
	if string(first) != "first" || string(got[0]) != "application/json" {
		t.Fatal("later calls overwrote earlier results")
	}
}

func offeredAt(b []byte) bool {
	return offered != nil && unsafe.SliceData(offered) == unsafe.SliceData(b) && len(offered) == len(b)
}
