package main

import (
	"strconv"
	"testing"

	"github.com/wasmproxy/wasmproxy/filter"
)

// guestCounters reads what allocprobe reported at the last stream's
// response headers.
func guestCounters(t *testing.T, cb *callbacks) (mallocs, bytes, gcs uint64) {
	t.Helper()
	get := func(name string) uint64 {
		v, ok := cb.resp.Get(name)
		if !ok {
			t.Fatalf("the probe set no %s", name)
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return n
	}
	return get("x-guest-mallocs"), get("x-guest-bytes"), get("x-guest-gcs")
}

// TestGuestAllocationsPerStream counts the Go allocations a whole
// stream makes inside a Go guest that does what the seed plugin does
// through the SDK (a header read, a body read) without the JSON work:
// the plugin's own HTTP context and nothing per stream from the SDK
// (its small results come from shared chunks, its stream table needs no
// allocation), so the guest's garbage collector, which stops a callback
// in Wasm, runs rarely. allocprobe reads the guest's runtime.MemStats.
func TestGuestAllocationsPerStream(t *testing.T) {
	f, closeWasm := loadWasm(t, "allocprobe")
	defer closeWasm()
	cb := newCallbacks()
	reqBody := &filter.Buffer{Bytes: []byte(validBody)}
	respBody := &filter.Buffer{Bytes: []byte("hello from the server\n")}
	for range 100 { // the first streams make the root's and the table's state
		oneRequest(f, cb, reqBody, respBody)
	}
	m0, b0, g0 := guestCounters(t, cb)
	const streams = 4000
	for range streams {
		oneRequest(f, cb, reqBody, respBody)
	}
	m1, b1, g1 := guestCounters(t, cb)
	perStream := float64(m1-m0) / streams
	bytesPerStream := float64(b1-b0) / streams
	t.Logf("guest per stream: %.3f allocations, %.1f bytes; %d collections in %d streams", perStream, bytesPerStream, g1-g0, streams)
	// One allocation is the plugin's (NewHttpContext); the SDK adds a
	// 2 KiB chunk per ~30 streams of this request's two small results.
	if perStream > 1.1 {
		t.Errorf("a stream makes %.3f Go allocations in the guest, want at most 1.1 (the plugin's HTTP context and a share of a result chunk)", perStream)
	}
	if bytesPerStream > 100 {
		t.Errorf("a stream allocates %.1f bytes in the guest, want at most 100", bytesPerStream)
	}
	if cb.replies != 0 {
		t.Fatalf("%d local replies to a valid request", cb.replies)
	}
}
