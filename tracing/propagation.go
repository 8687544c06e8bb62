package tracing

import (
	"encoding/hex"
	"strings"

	"go.opentelemetry.io/otel/trace"
)

// remote is a span context that arrived with a request.
type remote struct {
	sc trace.SpanContext
	// sampledSet: the sender said whether it samples (W3C flags always
	// do; B3 only with x-b3-sampled or the single header's flag).
	sampledSet bool
	// parentID is B3's x-b3-parentspanid (the client span's parent),
	// for a Zipkin server span sharing the client's span id.
	parentID trace.SpanID
}

// extractW3C reads traceparent and tracestate (W3C Trace Context level
// 1, version 00; a higher version is read by its first four fields).
func extractW3C(h Headers) (remote, bool) {
	v, ok := h.Get("traceparent")
	if !ok {
		return remote{}, false
	}
	parts := strings.Split(strings.TrimSpace(v), "-")
	if len(parts) < 4 || len(parts[0]) != 2 || parts[0] == "ff" || (parts[0] == "00" && len(parts) != 4) {
		return remote{}, false
	}
	var cfg trace.SpanContextConfig
	if len(parts[1]) != 32 || len(parts[2]) != 16 || len(parts[3]) != 2 {
		return remote{}, false
	}
	if _, err := hex.Decode(cfg.TraceID[:], []byte(parts[1])); err != nil {
		return remote{}, false
	}
	if _, err := hex.Decode(cfg.SpanID[:], []byte(parts[2])); err != nil {
		return remote{}, false
	}
	var flags [1]byte
	if _, err := hex.Decode(flags[:], []byte(parts[3])); err != nil {
		return remote{}, false
	}
	cfg.TraceFlags = trace.TraceFlags(flags[0]) & trace.FlagsSampled
	if ts, ok := h.Get("tracestate"); ok {
		if st, err := trace.ParseTraceState(ts); err == nil {
			cfg.TraceState = st
		}
	}
	cfg.Remote = true
	sc := trace.NewSpanContext(cfg)
	if !sc.IsValid() {
		return remote{}, false
	}
	return remote{sc: sc, sampledSet: true}, true
}

// injectW3C writes sc as traceparent (and tracestate when it has one).
func injectW3C(h Headers, sc trace.SpanContext) {
	flags := "00"
	if sc.IsSampled() {
		flags = "01"
	}
	h.Set("traceparent", "00-"+sc.TraceID().String()+"-"+sc.SpanID().String()+"-"+flags)
	if ts := sc.TraceState().String(); ts != "" {
		h.Set("tracestate", ts)
	} else {
		h.Del("tracestate")
	}
}

// decodeB3ID decodes a 16 or 32 hex digit id into a 16-byte trace id
// (64-bit ids in the low half, as Zipkin does).
func decodeB3TraceID(s string) (trace.TraceID, bool) {
	var id trace.TraceID
	switch len(s) {
	case 16:
		_, err := hex.Decode(id[8:], []byte(s))
		return id, err == nil && id.IsValid()
	case 32:
		_, err := hex.Decode(id[:], []byte(s))
		return id, err == nil && id.IsValid()
	}
	return id, false
}

func decodeB3SpanID(s string) (trace.SpanID, bool) {
	var id trace.SpanID
	if len(s) != 16 {
		return id, false
	}
	_, err := hex.Decode(id[:], []byte(s))
	return id, err == nil
}

// extractB3 reads the single b3 header or, without it, the x-b3-*
// headers, as Envoy's Zipkin tracer does (SpanContextExtractor).
func extractB3(h Headers) (remote, bool) {
	var tid, sid, pid, sampled string
	if v, ok := h.Get("b3"); ok {
		// {TraceId}-{SpanId}-{SamplingState}-{ParentSpanId}, or just a
		// sampling state.
		parts := strings.Split(v, "-")
		switch {
		case len(parts) == 1:
			sampled = parts[0]
		case len(parts) >= 2:
			tid, sid = parts[0], parts[1]
			if len(parts) >= 3 {
				sampled = parts[2]
			}
			if len(parts) >= 4 {
				pid = parts[3]
			}
		}
	} else {
		tid, _ = h.Get("x-b3-traceid")
		sid, _ = h.Get("x-b3-spanid")
		pid, _ = h.Get("x-b3-parentspanid")
		sampled, _ = h.Get("x-b3-sampled")
		if f, _ := h.Get("x-b3-flags"); f == "1" {
			sampled = "d"
		}
	}
	var r remote
	var cfg trace.SpanContextConfig
	switch sampled {
	case "1", "true", "d":
		cfg.TraceFlags, r.sampledSet = trace.FlagsSampled, true
	case "0", "false":
		r.sampledSet = true
	}
	var ok bool
	if cfg.TraceID, ok = decodeB3TraceID(tid); !ok {
		if r.sampledSet {
			// A sampling decision without a context: a new trace that
			// follows it.
			return r, true
		}
		return remote{}, false
	}
	if cfg.SpanID, ok = decodeB3SpanID(sid); !ok || !cfg.SpanID.IsValid() {
		return remote{}, false
	}
	if pid != "" {
		r.parentID, _ = decodeB3SpanID(pid)
	}
	cfg.Remote = true
	r.sc = trace.NewSpanContext(cfg)
	return r, true
}

// b3TraceID is a trace id as Zipkin writes it: 16 hex digits when its
// high half is zero, else 32.
func b3TraceID(id trace.TraceID) string {
	s := id.String()
	if strings.HasPrefix(s, "0000000000000000") {
		return s[16:]
	}
	return s
}

// injectB3 writes sc as the x-b3-* headers (parent: the span's parent,
// zero for a root), as Envoy's Zipkin span does, and drops a single b3
// header that would contradict them.
func injectB3(h Headers, sc trace.SpanContext, parent trace.SpanID) {
	h.Del("b3")
	h.Set("x-b3-traceid", b3TraceID(sc.TraceID()))
	h.Set("x-b3-spanid", sc.SpanID().String())
	if parent.IsValid() {
		h.Set("x-b3-parentspanid", parent.String())
	} else {
		h.Del("x-b3-parentspanid")
	}
	if sc.IsSampled() {
		h.Set("x-b3-sampled", "1")
	} else {
		h.Set("x-b3-sampled", "0")
	}
}
