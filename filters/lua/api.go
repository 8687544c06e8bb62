package lua

import (
	"context"
	"log/slog"
	"sort"
	"strconv"

	glua "github.com/yuin/gopher-lua"

	"github.com/wasmproxy/wasmproxy/filter"
)

// Metatable names of the API's objects.
const (
	handleType  = "envoy.StreamHandle"
	headersType = "envoy.HeaderMap"
	bufferType  = "envoy.Buffer"
	mdType      = "envoy.Metadata"
	infoType    = "envoy.StreamInfo"
	dynMDType   = "envoy.DynamicMetadata"
)

// registerTypes makes the API objects' metatables in L.
func registerTypes(L *glua.LState) {
	reg := func(name string, methods map[string]glua.LGFunction) {
		mt := L.NewTypeMetatable(name)
		L.SetField(mt, "__index", L.SetFuncs(L.NewTable(), methods))
	}
	reg(handleType, map[string]glua.LGFunction{
		"headers": handleHeaders, "body": handleBody, "bodyChunks": handleBodyChunks, "trailers": handleTrailers,
		"httpCall": handleHTTPCall, "respond": handleRespond,
		"metadata": handleMetadata, "streamInfo": handleStreamInfo, "filterContext": handleFilterContext,
		"connection": handleConnection, "importPublicKey": handleImportPublicKey, "verifySignature": handleVerifySignature,
		"logTrace": logAt(slog.LevelDebug - 4), "logDebug": logAt(slog.LevelDebug), "logInfo": logAt(slog.LevelInfo),
		"logWarn": logAt(slog.LevelWarn), "logErr": logAt(slog.LevelError), "logCritical": logAt(slog.LevelError + 4),
	})
	reg(headersType, map[string]glua.LGFunction{
		"get": headersGet, "getNumValues": headersNumValues, "getAtIndex": headersAtIndex,
		"add": headersAdd, "replace": headersReplace, "remove": headersRemove,
	})
	reg(bufferType, map[string]glua.LGFunction{"length": bufferLength, "getBytes": bufferGetBytes, "setBytes": bufferSetBytes})
	reg(mdType, map[string]glua.LGFunction{"get": metadataGet})
	reg(infoType, map[string]glua.LGFunction{
		"protocol": infoProtocol, "dynamicMetadata": infoDynamicMetadata,
		"downstreamSslConnection": infoDownstreamSSL, "requestedServerName": infoRequestedServerName,
		"downstreamLocalAddress": infoLocalAddress, "downstreamDirectRemoteAddress": infoRemoteAddress,
		"downstreamRemoteAddress": infoRemoteAddress,
	})
	registerConnectionTypes(L, reg)
	registerCryptoTypes(reg)
	reg(dynMDType, map[string]glua.LGFunction{"get": dynMDGet, "set": dynMDSet})
	// Envoy's header and metadata maps iterate with pairs() (LuaJIT's
	// __pairs); Lua 5.1 has no __pairs, so pairs itself learns them.
	basePairs := L.GetGlobal("pairs")
	L.SetGlobal("pairs", L.NewFunction(func(L *glua.LState) int {
		if ud, ok := L.Get(1).(*glua.LUserData); ok {
			switch ud.Metatable {
			case L.GetTypeMetatable(headersType):
				return headersPairs(L)
			case L.GetTypeMetatable(mdType):
				return metadataPairs(L)
			}
		}
		L.Insert(basePairs, 1)
		L.Call(L.GetTop()-1, glua.MultRet)
		return L.GetTop()
	}))
}

// headersPairs iterates a header map in order, one pair per value (a
// snapshot: edits during the loop do not change it).
func headersPairs(L *glua.LState) int {
	h := checkHeaders(L)
	pairs := append([]filter.Pair(nil), h.Pairs()...)
	i := 0
	L.Push(L.NewFunction(func(L *glua.LState) int {
		if i >= len(pairs) {
			L.Push(glua.LNil)
			return 1
		}
		p := pairs[i]
		i++
		L.Push(glua.LString(p.Key))
		L.Push(glua.LString(p.Value))
		return 2
	}))
	return 1
}

func object(L *glua.LState, typ string, v any) *glua.LUserData {
	ud := L.NewUserData()
	ud.Value = v
	L.SetMetatable(ud, L.GetTypeMetatable(typ))
	return ud
}

func newHandle(co *coroutine) glua.LValue { return object(co.th, handleType, co) }

// bufRef is a buffer object: the direction's whole body, or one chunk.
type bufRef struct {
	co    *coroutine
	b     *filter.Buffer
	whole bool
}

func newBuffer(co *coroutine, b *filter.Buffer, whole bool) glua.LValue {
	return object(co.th, bufferType, &bufRef{co: co, b: b, whole: whole})
}

// newHeaders wraps a header map (the direction's headers or trailers).
func newHeaders(co *coroutine, h *filter.HeaderMap) glua.LValue {
	return object(co.th, headersType, h)
}

func checkHeaders(L *glua.LState) *filter.HeaderMap {
	ud := L.CheckUserData(1)
	h, ok := ud.Value.(*filter.HeaderMap)
	if !ok || ud.Metatable != L.GetTypeMetatable(headersType) {
		L.ArgError(1, headersType+" expected (call methods with ':')")
	}
	return h
}

func checkBuffer(L *glua.LState) *bufRef {
	ud := L.CheckUserData(1)
	b, ok := ud.Value.(*bufRef)
	if !ok || ud.Metatable != L.GetTypeMetatable(bufferType) {
		L.ArgError(1, bufferType+" expected (call methods with ':')")
	}
	return b
}

// check returns the coroutine behind the object at argument 1 (the
// method's self).
func check(L *glua.LState, typ string) *coroutine {
	ud := L.CheckUserData(1)
	co, ok := ud.Value.(*coroutine)
	if !ok || ud.Metatable != L.GetTypeMetatable(typ) {
		L.ArgError(1, typ+" expected (call methods with ':')")
	}
	return co
}

func handleHeaders(L *glua.LState) int {
	co := check(L, handleType)
	L.Push(object(L, headersType, co.headers))
	return 1
}

// pushResults pushes what a step handed a waiting call.
func pushResults(L *glua.LState, res []glua.LValue, n int) int {
	for i := 0; i < n; i++ {
		if i < len(res) {
			L.Push(res[i])
		} else {
			L.Push(glua.LNil)
		}
	}
	return n
}

// handleBody returns the whole body, waiting for it (the data is held
// here meanwhile); nil when the direction has none.
func handleBody(L *glua.LState) int {
	co := check(L, handleType)
	if co.end {
		if co.body == nil {
			L.Push(glua.LNil) // the direction ended without (held) data
		} else {
			L.Push(newBuffer(co, co.body, true))
		}
		return 1
	}
	return pushResults(L, co.suspend(L, waitBody), 1)
}

// handleBodyChunks returns an iterator over the body's chunks as they
// arrive; each chunk goes on when the script asks for the next one (it
// may edit it first); the iterator ends with nil at the direction's end.
func handleBodyChunks(L *glua.LState) int {
	co := check(L, handleType)
	L.Push(L.NewFunction(func(L *glua.LState) int {
		if co.end {
			L.Push(glua.LNil)
			return 1
		}
		return pushResults(L, co.suspend(L, waitChunk), 1)
	}))
	return 1
}

// handleTrailers waits for the direction's end and returns its
// trailers, or nil when it has none; the body goes on meanwhile.
func handleTrailers(L *glua.LState) int {
	co := check(L, handleType)
	if co.end {
		if co.trailers == nil {
			L.Push(glua.LNil)
		} else {
			L.Push(newHeaders(co, co.trailers))
		}
		return 1
	}
	return pushResults(L, co.suspend(L, waitTrailers), 1)
}

// handleRespond answers the client and ends the script (Envoy yields it
// for good: it waits until the stream ends).
func handleRespond(L *glua.LState) int {
	co := check(L, handleType)
	if co.dir != filter.Request {
		L.RaiseError("respond() is only supported in envoy_on_request")
	}
	tb := L.CheckTable(2)
	body := L.OptString(3, "")
	status := 0
	var hdrs []filter.Pair
	var keys []string
	tb.ForEach(func(k, v glua.LValue) {
		keys = append(keys, k.String())
	})
	sort.Strings(keys) // a table has no order; keep replies stable
	for _, k := range keys {
		v := tb.RawGetString(k).String()
		if k == ":status" {
			n, ok := statusOf(v)
			if !ok {
				L.RaiseError("respond(): :status %q is not an HTTP status", v)
			}
			status = n
			continue
		}
		hdrs = append(hdrs, filter.Pair{Key: k, Value: v})
	}
	if status == 0 {
		L.RaiseError("respond(): the headers need a :status")
	}
	co.respond(status, hdrs, []byte(body))
	co.suspend(L, waitForever)
	return 0
}

func logAt(level slog.Level) glua.LGFunction {
	return func(L *glua.LState) int {
		co := check(L, handleType)
		co.s.f.log.Log(context.Background(), level, "script log: "+L.CheckString(2), "filter", co.s.f.name)
		return 0
	}
}

// handleMetadata is the route's metadata under envoy.filters.http.lua.
func handleMetadata(L *glua.LState) int {
	co := check(L, handleType)
	var fields map[string]any
	if info := co.s.cb.Info(); info != nil {
		fields = info.RouteMetadata[Name]
	}
	L.Push(object(L, mdType, fields))
	return 1
}

// handleFilterContext is filter_context: the most specific LuaPerRoute's
// when it sets one, else the filter's (empty without either).
func handleFilterContext(L *glua.LState) int {
	co := check(L, handleType)
	L.Push(object(L, mdType, co.s.context))
	return 1
}

func handleStreamInfo(L *glua.LState) int {
	co := check(L, handleType)
	L.Push(object(L, infoType, co))
	return 1
}

func headersGet(L *glua.LState) int {
	h := checkHeaders(L)
	if v, ok := h.Get(L.CheckString(2)); ok {
		L.Push(glua.LString(v))
	} else {
		L.Push(glua.LNil)
	}
	return 1
}

func headersNumValues(L *glua.LState) int {
	h := checkHeaders(L)
	L.Push(glua.LNumber(len(h.Values(L.CheckString(2)))))
	return 1
}

func headersAtIndex(L *glua.LState) int {
	h := checkHeaders(L)
	vs := h.Values(L.CheckString(2))
	i := L.CheckInt(3)
	if i < 0 || i >= len(vs) {
		L.Push(glua.LNil)
	} else {
		L.Push(glua.LString(vs[i]))
	}
	return 1
}

func headersAdd(L *glua.LState) int {
	h := checkHeaders(L)
	h.Add(L.CheckString(2), L.CheckString(3))
	return 0
}

func headersReplace(L *glua.LState) int {
	h := checkHeaders(L)
	h.Set(L.CheckString(2), L.CheckString(3))
	return 0
}

func headersRemove(L *glua.LState) int {
	h := checkHeaders(L)
	h.Del(L.CheckString(2))
	return 0
}

func bufferLength(L *glua.LState) int {
	b := checkBuffer(L)
	L.Push(glua.LNumber(b.b.Len()))
	return 1
}

// bufferGetBytes(index, length): index from 0, as Envoy's.
func bufferGetBytes(L *glua.LState) int {
	i, n := L.CheckInt(2), L.CheckInt(3)
	b := checkBuffer(L).b.Bytes
	if i < 0 || n < 0 || i+n > len(b) {
		L.RaiseError("getBytes(): index %d length %d is outside the body (%d bytes)", i, n, len(b))
	}
	L.Push(glua.LString(b[i : i+n]))
	return 1
}

// bufferSetBytes replaces the body (or the chunk); a content-length
// header follows a whole body.
func bufferSetBytes(L *glua.LState) int {
	b := checkBuffer(L)
	b.b.Bytes = []byte(L.CheckString(2))
	if _, ok := b.co.headers.Get("content-length"); ok && b.whole {
		b.co.headers.Set("content-length", strconv.Itoa(len(b.b.Bytes)))
	}
	L.Push(glua.LNumber(len(b.b.Bytes)))
	return 1
}

// metadataGet(key) is a metadata map's value (route metadata or filter
// context), or nil.
func metadataGet(L *glua.LState) int {
	fields := checkMetadata(L)
	if v, ok := fields[L.CheckString(2)]; ok {
		L.Push(toLua(L, v))
		return 1
	}
	L.Push(glua.LNil)
	return 1
}

func checkMetadata(L *glua.LState) map[string]any {
	ud := L.CheckUserData(1)
	m, ok := ud.Value.(map[string]any)
	if ud.Metatable != L.GetTypeMetatable(mdType) || (!ok && ud.Value != nil) {
		L.ArgError(1, mdType+" expected (call methods with ':')")
	}
	return m
}

// metadataPairs iterates a metadata map by key order (a snapshot).
func metadataPairs(L *glua.LState) int {
	fields := checkMetadata(L)
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	i := 0
	L.Push(L.NewFunction(func(L *glua.LState) int {
		if i >= len(keys) {
			L.Push(glua.LNil)
			return 1
		}
		k := keys[i]
		i++
		L.Push(glua.LString(k))
		L.Push(toLua(L, fields[k]))
		return 2
	}))
	return 1
}

func infoProtocol(L *glua.LState) int {
	co := check(L, infoType)
	if info := co.s.cb.Info(); info != nil && info.Protocol != "" {
		L.Push(glua.LString(info.Protocol))
	} else {
		L.Push(glua.LNil)
	}
	return 1
}

func infoDynamicMetadata(L *glua.LState) int {
	co := check(L, infoType)
	L.Push(object(L, dynMDType, co))
	return 1
}

// dynMDGet(ns) is the namespace's fields as a table, or nil.
func dynMDGet(L *glua.LState) int {
	co := check(L, dynMDType)
	info := co.s.cb.Info()
	if info == nil {
		L.Push(glua.LNil)
		return 1
	}
	fields := info.DynamicMetadata.Namespace(L.CheckString(2))
	if fields == nil {
		L.Push(glua.LNil)
		return 1
	}
	L.Push(toLua(L, map[string]any(fields)))
	return 1
}

// dynMDSet(ns, key, value) writes the stream's dynamic metadata.
func dynMDSet(L *glua.LState) int {
	co := check(L, dynMDType)
	ns, key := L.CheckString(2), L.CheckString(3)
	v, ok := fromLua(L.CheckAny(4), 0)
	if !ok {
		L.ArgError(4, "a string, number, boolean or table of them")
	}
	if info := co.s.cb.Info(); info != nil {
		info.DynamicMetadata.Merge(ns, map[string]any{key: v})
	}
	return 0
}

// toLua converts a JSON value.
func toLua(L *glua.LState, v any) glua.LValue {
	switch v := v.(type) {
	case string:
		return glua.LString(v)
	case float64:
		return glua.LNumber(v)
	case bool:
		return glua.LBool(v)
	case []any:
		t := L.NewTable()
		for _, e := range v {
			t.Append(toLua(L, e))
		}
		return t
	case map[string]any:
		t := L.NewTable()
		for k, e := range v {
			t.RawSetString(k, toLua(L, e))
		}
		return t
	}
	return glua.LNil
}

// fromLua converts a Lua value to a JSON value: a table with keys 1..n
// is a list, any other table an object (non-string keys as strings).
func fromLua(v glua.LValue, depth int) (any, bool) {
	if depth > 32 {
		return nil, false
	}
	switch v := v.(type) {
	case glua.LString:
		return string(v), true
	case glua.LNumber:
		return float64(v), true
	case glua.LBool:
		return bool(v), true
	case *glua.LTable:
		if n := v.Len(); n > 0 {
			out := make([]any, 0, n)
			for i := 1; i <= n; i++ {
				e, ok := fromLua(v.RawGetInt(i), depth+1)
				if !ok {
					return nil, false
				}
				out = append(out, e)
			}
			return out, true
		}
		out := map[string]any{}
		ok := true
		v.ForEach(func(k, e glua.LValue) {
			if !ok {
				return
			}
			var ev any
			if ev, ok = fromLua(e, depth+1); ok {
				out[k.String()] = ev
			}
		})
		return out, ok
	}
	if v == glua.LNil {
		return nil, true
	}
	return nil, false
}
