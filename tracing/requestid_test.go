package tracing

import (
	"context"
	"strings"

	"testing"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
)

// TestSetRequestID: Envoy's x-request-id rule — generated when absent,
// kept when present unless the request is an edge request and
// preserve_external_request_id is off, never touched with
// generate_request_id: false.
func TestSetRequestID(t *testing.T) {
	const given = "given-id"
	for _, c := range []struct {
		name      string
		cm        config.HTTPConnectionManager
		in        string
		edge      bool
		wantGiven bool // the given id stays
		wantNone  bool // no id at all
	}{
		{name: "absent", in: "", wantGiven: false},
		{name: "internal keeps", in: given, wantGiven: true},
		{name: "edge replaces", in: given, edge: true, wantGiven: false},
		{name: "edge preserves", in: given, edge: true, cm: config.HTTPConnectionManager{PreserveExternalRequestID: true}, wantGiven: true},
		{name: "generation off keeps", in: given, edge: true, cm: config.HTTPConnectionManager{NoRequestIDGeneration: true}, wantGiven: true},
		{name: "generation off adds none", in: "", cm: config.HTTPConnectionManager{NoRequestIDGeneration: true}, wantNone: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := filter.NewHeaderMap()
			if c.in != "" {
				h.Set("x-request-id", c.in)
			}
			SetRequestID(h, &c.cm, c.edge)
			got, ok := h.Get("x-request-id")
			switch {
			case c.wantNone:
				if ok {
					t.Fatalf("x-request-id %q, want none", got)
				}
			case c.wantGiven:
				if got != given {
					t.Fatalf("x-request-id %q, want the given one", got)
				}
			default:
				if !isUUID(got) || got[14] != '4' || got == given {
					t.Fatalf("x-request-id %q, want a new UUID v4", got)
				}
			}
		})
	}
}

// TestDecide: the sampling decision is taken from the request id's
// first 8 hex digits modulo 10000 against the percentages, recorded in
// the id's version digit, kept once taken, and capped by
// overall_sampling, as Envoy's mutateTracingRequestHeader.
func TestDecide(t *testing.T) {
	// 0x00001388 = 5000: sampled at 50.01%, not at 50%.
	const id = "00001388-0000-4000-8000-000000000000"
	for _, c := range []struct {
		name           string
		id             string
		random, global float64
		headers        map[string]string
		edge           bool
		want           bool
		wantReason     byte
	}{
		{name: "under random", id: id, random: 50.01, global: 100, want: true, wantReason: '9'},
		{name: "over random", id: id, random: 50, global: 100, want: false, wantReason: '4'},
		{name: "already sampled upstream of us", id: "00001388-0000-9000-8000-000000000000", random: 0, global: 100, want: true, wantReason: '9'},
		{name: "overall caps", id: id, random: 100, global: 50, want: false, wantReason: '4'},
		{name: "forced", id: id, random: 0, global: 100, headers: map[string]string{"x-envoy-force-trace": "1"}, want: true, wantReason: 'b'},
		{name: "forced ignored at the edge", id: id, random: 0, global: 100, headers: map[string]string{"x-envoy-force-trace": "1"}, edge: true, want: false, wantReason: '4'},
		{name: "client", id: id, random: 0, global: 100, headers: map[string]string{"x-client-trace-id": "c"}, want: true, wantReason: 'a'},
		{name: "not a uuid", id: "abc", random: 100, global: 100, want: false},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := filter.NewHeaderMap()
			h.Set("x-request-id", c.id)
			for k, v := range c.headers {
				h.Set(k, v)
			}
			got := Decide(h, &config.Tracing{RandomSampling: c.random, ClientSampling: 100, OverallSampling: c.global}, c.edge)
			if got != c.want {
				t.Fatalf("traced = %v, want %v", got, c.want)
			}
			rid, _ := h.Get("x-request-id")
			if c.wantReason != 0 && rid[14] != c.wantReason {
				t.Fatalf("x-request-id %q: reason %q, want %q", rid, rid[14], c.wantReason)
			}
		})
	}
}

// TestPropagationRoundTrip: what injectW3C and injectB3 write,
// extractW3C and extractB3 read back.
func TestPropagationRoundTrip(t *testing.T) {
	h := filter.NewHeaderMap()
	h.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	r, ok := extractW3C(h)
	if !ok || !r.sc.IsSampled() || r.sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("extractW3C: %v %v", r.sc, ok)
	}
	out := filter.NewHeaderMap()
	injectW3C(out, r.sc)
	if v, _ := out.Get("traceparent"); v != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" {
		t.Fatalf("injectW3C: %q", v)
	}
	for _, bad := range []string{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", "00-4bf92f-00f067aa0ba902b7-01", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "garbage"} {
		h.Set("traceparent", bad)
		if _, ok := extractW3C(h); ok {
			t.Errorf("extractW3C accepted %q", bad)
		}
	}
	b := filter.NewHeaderMap()
	b.Set("x-b3-traceid", "1111111111111111")
	b.Set("x-b3-spanid", "2222222222222222")
	b.Set("x-b3-sampled", "1")
	r, ok = extractB3(b)
	if !ok || !r.sc.IsSampled() || b3TraceID(r.sc.TraceID()) != "1111111111111111" {
		t.Fatalf("extractB3: %v %v", r.sc, ok)
	}
	out = filter.NewHeaderMap()
	injectB3(out, r.sc, r.parentID)
	if v, _ := out.Get("x-b3-traceid"); v != "1111111111111111" {
		t.Fatalf("injectB3 trace id %q", v)
	}
	if _, ok := out.Get("x-b3-parentspanid"); ok {
		t.Fatal("injectB3 wrote a parent for a root")
	}
}

// TestZipkinTraceIDWidth: Zipkin traces started here have 64-bit ids
// (16 hex digits in B3) unless trace_id_128bit, as Envoy's Zipkin tracer;
// OpenTelemetry's are 128-bit.
func TestZipkinTraceIDWidth(t *testing.T) {
	for _, c := range []struct {
		name   string
		zipkin *config.ZipkinTracer
		digits int
	}{
		{"zipkin 64", &config.ZipkinTracer{}, 16},
		{"zipkin 128", &config.ZipkinTracer{TraceID128Bit: true}, 32},
		{"opentelemetry", nil, 32},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := &idGenerator{zipkin: c.zipkin}
			for i := 0; i < 50; i++ {
				tid, sid := g.NewIDs(context.Background())
				if !tid.IsValid() || !sid.IsValid() {
					t.Fatal("invalid id")
				}
				if got := len(b3TraceID(tid)); got != c.digits && !(c.digits == 32 && got == 16 && tid[0] == 0) {
					t.Fatalf("trace id %s: %d hex digits, want %d", tid, got, c.digits)
				}
			}
		})
	}
}

// TestNewRequestIDBatches: ids drawn across several batches are distinct
// UUID v4s (version digit 4, variant 8–b), and a request id costs no
// allocation of its own (one string per batch of idsPerBatch).
func TestNewRequestIDBatches(t *testing.T) {
	seen := make(map[string]bool)
	for range 5 * idsPerBatch {
		id := NewRequestID()
		if !isUUID(id) || id[14] != '4' || !strings.ContainsRune("89ab", rune(id[19])) {
			t.Fatalf("%q is not a UUID v4", id)
		}
		if seen[id] {
			t.Fatalf("%q handed out twice", id)
		}
		seen[id] = true
	}
	if raceEnabled {
		return // the race detector allocates, and drops pooled batches
	}
	// AllocsPerRun's integer average: under 1 per id.
	if n := testing.AllocsPerRun(10*idsPerBatch, func() { _ = NewRequestID() }); n > 0 {
		t.Errorf("%v allocations per request id, want none of its own", n)
	}
}
