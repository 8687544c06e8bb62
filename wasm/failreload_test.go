package wasm

import (
	"slices"
	"strings"
	"testing"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
)

// poisonAll starts one stream on each of p's two instances and leaves it
// in flight (request headers seen, body to come), then traps each
// instance with a stream of its own. It returns the streams in flight.
func poisonAll(t *testing.T, p *Plugin) []*stream {
	t.Helper()
	var inFlight []*stream
	for range 2 {
		s := newStream(p)
		if st := s.decodeHeaders(false, ":path", "/"); st != filter.HeadersContinue {
			t.Fatalf("stream before the traps: %v", st)
		}
		inFlight = append(inFlight, s)
	}
	for range 2 {
		s := newStream(p)
		s.decodeHeaders(true, ":path", "/", "x-trap", "1")
		if len(s.cb.replies) != 1 || s.cb.replies[0].status != 503 {
			t.Fatalf("trapping stream: replies %+v, want a 503", s.cb.replies)
		}
		s.finish()
	}
	for i, inst := range p.currentInstances() {
		if !inst.broken.Load() {
			t.Fatalf("instance %d is not poisoned after two traps", i)
		}
	}
	return inFlight
}

// TestDefaultPolicyReplacesPoisonedInstances: with failure_policy unset,
// streams in flight on a poisoned instance fail closed (503,
// wasm_fail_stream) while the instance itself is replaced for the next
// streams (FAIL_RELOAD's backoff), so a plugin whose every instance
// trapped serves again without a reload. Before issue 10 item 8 every
// later stream got a 503 until the config changed.
func TestDefaultPolicyReplacesPoisonedInstances(t *testing.T) {
	h := newTestHost(t, 2)
	cfg := goPlugin(t, "headers")
	if cfg.FailurePolicy != config.FailDefault {
		t.Fatalf("test plugin has failure_policy %q, want it unset", cfg.FailurePolicy)
	}
	p := h.load(t, cfg)
	inFlight := poisonAll(t, p)

	for i, s := range inFlight {
		if st := s.DecodeData(&filter.Buffer{Bytes: []byte("body")}, true); st != filter.DataStopIterationNoBuffer {
			t.Errorf("in-flight stream %d: DecodeData = %v, want a stop", i, st)
		}
		if len(s.cb.replies) != 1 || s.cb.replies[0].status != 503 || s.cb.replies[0].details != "wasm_fail_stream" {
			t.Errorf("in-flight stream %d: replies %+v, want one 503 wasm_fail_stream", i, s.cb.replies)
		}
		s.finish()
	}

	for i := range 4 {
		s := newStream(p)
		if st := s.decodeHeaders(true, ":path", "/", "X-In", "x"); st != filter.HeadersContinue || len(s.cb.replies) != 0 {
			t.Fatalf("stream %d after every instance was poisoned: %v %+v, want it served by a replaced instance", i, st, s.cb.replies)
		}
		s.finish()
	}
	for i, inst := range p.currentInstances() {
		if inst.broken.Load() {
			t.Errorf("instance %d still poisoned", i)
		}
	}
	if n := h.stats.Counter("wasm.httpfilter.vm_reload_success").Value(); n != 2 {
		t.Errorf("vm_reload_success = %d, want 2", n)
	}
	if !strings.Contains(h.logs.text(), "wasm: plugin httpfilter: instance 0 reloaded") {
		t.Errorf("no reload logged:\n%s", h.logs.text())
	}
}

// TestExplicitFailClosedStaysDead: an explicit FAIL_CLOSED keeps Envoy's
// semantics, a poisoned instance is never replaced by traffic, until an
// operator's reload (ReplacePoisoned) replaces it even though nothing in
// the config changed.
func TestExplicitFailClosedStaysDead(t *testing.T) {
	h := newTestHost(t, 2)
	cfg := goPlugin(t, "headers")
	cfg.FailurePolicy = config.FailClosed
	p := h.load(t, cfg)
	for _, s := range poisonAll(t, p) {
		s.finish()
	}
	for i := range 4 {
		s := newStream(p)
		if st := s.decodeHeaders(true, ":path", "/"); st != filter.HeadersStopAllIterationAndWatermark || len(s.cb.replies) != 1 {
			t.Fatalf("stream %d under FAIL_CLOSED with every instance poisoned: %v %+v, want a 503", i, st, s.cb.replies)
		}
		s.finish()
	}

	got := h.ReplacePoisoned()
	if len(got) != 1 || !slices.Equal(got[0].Plugins, []string{"httpfilter"}) || got[0].Replaced != 2 || got[0].Failed != 0 {
		t.Fatalf("ReplacePoisoned = %+v, want httpfilter: 2 replaced", got)
	}
	for i := range 4 {
		s := newStream(p)
		if st := s.decodeHeaders(true, ":path", "/"); st != filter.HeadersContinue || len(s.cb.replies) != 0 {
			t.Fatalf("stream %d after ReplacePoisoned: %v %+v", i, st, s.cb.replies)
		}
		s.finish()
	}
	if n := h.stats.Counter("wasm.httpfilter.vm_reload_success").Value(); n != 2 {
		t.Errorf("vm_reload_success = %d, want 2", n)
	}
	// Nothing poisoned: nothing to report.
	if got := h.ReplacePoisoned(); len(got) != 0 {
		t.Errorf("second ReplacePoisoned = %+v, want nothing", got)
	}
}
