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
	if len(hostBufs) != 0 || retData != nil || retLen != 0 {
		t.Fatalf("state not released: %d bufs, retData %v, retLen %d", len(hostBufs), retData, retLen)
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
