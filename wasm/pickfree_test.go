package wasm

import (
	"testing"

	"github.com/wasmproxy/wasmproxy/filter"
)

// TestNewStreamStartsOnIdleInstance: a new stream whose round-robin
// instance is running another stream's callback (its lock held) starts
// on an idle instance of the pool instead of waiting for it, and runs
// its whole life there; with every instance idle, streams still go
// round robin.
func TestNewStreamStartsOnIdleInstance(t *testing.T) {
	h := newTestHost(t, 2)
	p := h.load(t, goPlugin(t, "headers"))
	insts := p.currentInstances()
	if len(insts) != 2 {
		t.Fatalf("instances = %d, want 2", len(insts))
	}

	// Round robin while both are idle.
	seen := map[*instance]int{}
	for range 4 {
		s := newStream(p)
		if st := s.decodeHeaders(false, ":method", "GET", ":path", "/"); st != filter.HeadersContinue {
			t.Fatalf("DecodeHeaders = %v", st)
		}
		seen[s.StreamFilter.(*httpFilter).inst]++
		s.finish()
	}
	if seen[insts[0]] != 2 || seen[insts[1]] != 2 {
		t.Fatalf("idle pool: streams per instance %d and %d, want 2 and 2", seen[insts[0]], seen[insts[1]])
	}

	// Hold one instance as a callback of another stream would; every new
	// stream must start on the other one without waiting for it (a wait
	// would block this goroutine for good).
	busy, idle := insts[0], insts[1]
	busy.mu.Lock()
	for i := range 4 {
		s := newStream(p)
		if st := s.decodeHeaders(false, ":method", "GET", ":path", "/"); st != filter.HeadersContinue {
			t.Fatalf("stream %d: DecodeHeaders = %v", i, st)
		}
		if got := s.StreamFilter.(*httpFilter).inst; got != idle {
			t.Fatalf("stream %d started on the busy instance", i)
		}
		if st := s.encodeHeaders(false, ":status", "200"); st != filter.HeadersContinue {
			t.Fatalf("stream %d: EncodeHeaders = %v", i, st)
		}
		if v, _ := s.cb.respHeaders.Get("x-resp"); v != "1" {
			t.Errorf("stream %d: response header x-resp = %q, want the plugin's 1", i, v)
		}
		s.finish()
	}
	busy.mu.Unlock()

	// Once released, the held instance serves new streams again.
	seen = map[*instance]int{}
	for range 4 {
		s := newStream(p)
		s.decodeHeaders(false, ":method", "GET", ":path", "/")
		seen[s.StreamFilter.(*httpFilter).inst]++
		s.finish()
	}
	if seen[busy] == 0 {
		t.Fatal("the released instance got no new stream")
	}
}
