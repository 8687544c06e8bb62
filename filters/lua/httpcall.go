package lua

import (
	"context"
	"time"

	glua "github.com/yuin/gopher-lua"

	"github.com/wasmproxy/wasmproxy/filter"
)

// handleHTTPCall is Envoy's handle:httpCall(cluster, headers, body,
// timeout_ms[, asynchronous]) or httpCall(cluster, headers, body,
// {timeout_ms = n, asynchronous = b}). headers must name :method,
// :path and :authority (a value may be a list of values); body is a
// string or nil. Synchronous: the script waits (the direction is held)
// and gets the response headers as a table (":status" included; a
// repeated header gives its last value) and the body (nil when empty).
// A failed call answers 503 "upstream failure" and a timeout 504, as
// Envoy's async client. Asynchronous: the request is sent and the
// script goes on at once; the answer is dropped; without a timeout the
// call ends with the stream at the latest. The call goes through
// the proxy's cluster path (filter.Upstreams), as ext_authz's does.
func handleHTTPCall(L *glua.LState) int {
	co := check(L, handleType)
	cluster := L.CheckString(2)
	tb := L.CheckTable(3)
	var body []byte
	switch v := L.Get(4).(type) {
	case glua.LString:
		body = []byte(v)
	case *glua.LNilType:
	default:
		L.ArgError(4, "the body is a string or nil")
	}
	timeout, asynchronous := 0, false
	switch v := L.Get(5).(type) {
	case glua.LNumber:
		timeout = int(v)
		asynchronous = glua.LVAsBool(L.Get(6))
	case *glua.LTable:
		v.ForEach(func(k, val glua.LValue) {
			switch k.String() {
			case "timeout_ms":
				n, ok := val.(glua.LNumber)
				if !ok {
					L.RaiseError("http call option timeout_ms must be a number")
				}
				timeout = int(n)
			case "asynchronous":
				asynchronous = glua.LVAsBool(val)
			default:
				L.RaiseError("http call option %q is not supported yet", k.String())
			}
		})
	default:
		L.ArgError(5, "the timeout in milliseconds (or an options table)")
	}
	if timeout < 0 {
		L.RaiseError("http call timeout must be >= 0")
	}
	ups := co.s.f.ups
	if ups == nil || !ups.HasCluster(cluster) {
		L.RaiseError("http call cluster invalid. Must be configured")
	}
	var hdrs []filter.Pair
	tb.ForEach(func(k, v glua.LValue) {
		key, ok := k.(glua.LString)
		if !ok {
			L.RaiseError("http call header names must be strings")
		}
		switch v := v.(type) {
		case *glua.LTable:
			for i := 1; i <= v.Len(); i++ {
				hdrs = append(hdrs, filter.Pair{Key: string(key), Value: v.RawGetInt(i).String()})
			}
		case glua.LString, glua.LNumber:
			hdrs = append(hdrs, filter.Pair{Key: string(key), Value: v.String()})
		default:
			L.RaiseError("http call header %q must be a string or a list of strings", string(key))
		}
	})
	have := map[string]bool{}
	for _, p := range hdrs {
		have[p.Key] = true
	}
	if !have[":method"] || !have[":path"] || !have[":authority"] {
		L.RaiseError("http call headers must include ':path', ':method', and ':authority'")
	}
	// Pseudo-headers first, as a request's header block has them.
	ordered := make([]filter.Pair, 0, len(hdrs))
	for _, pseudo := range []bool{true, false} {
		for _, p := range hdrs {
			if (p.Key[0] == ':') == pseudo {
				ordered = append(ordered, p)
			}
		}
	}
	send := func(ctx context.Context) *filter.CalloutResponse {
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, time.Duration(timeout)*time.Millisecond)
			defer cancel()
		}
		resp, err := ups.HTTPCall(ctx, cluster, ordered, body, nil)
		if err != nil || resp == nil {
			return &filter.CalloutResponse{Headers: []filter.Pair{{Key: ":status", Value: "503"}}, Body: []byte("upstream failure")}
		}
		return resp
	}
	if asynchronous {
		// With a timeout the call is not tied to the stream: it ends
		// when the answer or the timeout comes, whatever the stream does
		// meanwhile, as Envoy's does. Without one (timeout_ms 0, which
		// Envoy leaves unbounded) the stream's end cancels it, so that a
		// call nobody answers cannot stay open for ever.
		ctx := context.Background()
		if timeout == 0 {
			ctx = co.s.lifeContext()
		}
		go send(ctx)
		return 0
	}
	co.call.Go(co.s.cb, func(ctx context.Context) func() {
		resp := send(ctx)
		return func() { co.callDone(resp) }
	})
	return pushResults(L, co.suspend(L, waitCall), 2)
}

// lifeContext is a context the stream's end (OnDestroy) cancels.
func (s *stream) lifeContext() context.Context {
	if s.life == nil {
		s.life, s.endLife = context.WithCancel(context.Background())
	}
	return s.life
}
