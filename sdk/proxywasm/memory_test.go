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
