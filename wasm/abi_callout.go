package wasm

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/tetratelabs/wazero/api"

	"github.com/wasmproxy/wasmproxy/filter"
)

// Map and buffer types only available inside callout callbacks.
const (
	mapGrpcInitialMetadata  = 4
	mapGrpcTrailingMetadata = 5
	mapHTTPCallHeaders      = 6
	mapHTTPCallTrailers     = 7

	bufferHTTPCallBody    = 4
	bufferGrpcMessage     = 5
	bufferForeignFunction = 8
)

// Status codes proxy_get_status reports (WasmResult values, as Envoy).
const (
	statusBrokenConnection = 11
)

// Callout token kinds: the low two bits of a token (Envoy's numbering).
const (
	tokenHTTP       = 0
	tokenGrpcCall   = 1
	tokenGrpcStream = 2
)

// calloutData is what the callout callback in progress may read: the
// http_call response (maps 6/7, buffer 4), gRPC metadata (maps 4/5) and
// message (buffer 5), or foreign-function / DNS arguments (buffer 8).
// Set only for the duration of that callback.
type calloutData struct {
	maps    [8]*filter.HeaderMap // indexed by map type; only 4-7 used
	bufType int                  // -1: none
	buf     []byte
}

func (c *calloutData) reset() {
	for i := range c.maps {
		c.maps[i] = nil
	}
	c.bufType, c.buf = -1, nil
}

// withCallout runs fn with callout data exposed, then clears it. The
// caller holds the instance lock.
func (inst *instance) withCallout(set func(c *calloutData), fn func() error) error {
	inst.callout.reset()
	set(&inst.callout)
	err := fn()
	inst.callout.reset()
	return err
}

// SetUpstreams gives the host the proxy's clusters for proxy_http_call
// and gRPC callouts. The proxy is built after the host, so this is
// usually called once the proxy exists; until then callouts answer
// BAD_ARGUMENT (no cluster is known).
func (h *Host) SetUpstreams(u filter.Upstreams) {
	h.upstreams.Store(&u)
}

// Upstreams returns what SetUpstreams gave, or nil: the one binding of
// the proxy's clusters, which native filters reach through too.
func (h *Host) Upstreams() filter.Upstreams { return h.getUpstreams() }

func (h *Host) getUpstreams() filter.Upstreams {
	if p := h.upstreams.Load(); p != nil {
		return *p
	}
	return nil
}

// nextToken hands out a callout token of the given kind: 4n + kind.
func (inst *instance) nextToken(kind uint32) uint32 {
	inst.tokenSeq++
	if inst.tokenSeq >= 1<<30 {
		inst.tokenSeq = 1
	}
	return inst.tokenSeq<<2 | kind
}

// proxy_http_call(upstream_ptr, upstream_len, headers_ptr, headers_len,
// body_ptr, body_len, trailers_ptr, trailers_len, timeout_ms, out_token)
// -> status. BAD_ARGUMENT for an unknown cluster or when ":method",
// ":path" or ":authority" is missing. The request runs in the background;
// proxy_on_http_call_response(root, token, headers, body_size, trailers)
// is delivered to the caller's root context on this instance.
func proxyHTTPCall(ctx context.Context, m api.Module, stack []uint64) {
	inst := enter(ctx, "proxy_http_call")
	cluster, ok1 := readGuest(m, api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
	hdrs, ok2 := readGuest(m, api.DecodeU32(stack[2]), api.DecodeU32(stack[3]))
	body, ok3 := readGuest(m, api.DecodeU32(stack[4]), api.DecodeU32(stack[5]))
	trls, ok4 := readGuest(m, api.DecodeU32(stack[6]), api.DecodeU32(stack[7]))
	timeout := time.Duration(api.DecodeU32(stack[8])) * time.Millisecond
	tokenPtr := api.DecodeU32(stack[9])
	if !ok1 || !ok2 || !ok3 || !ok4 || !writableWord(m, tokenPtr) {
		setStatus(stack, statusInvalidMemoryAccess)
		return
	}
	ups := inst.vm.host.getUpstreams()
	name := string(cluster)
	if ups == nil || !ups.HasCluster(name) {
		setStatus(stack, statusBadArgument)
		return
	}
	headers := parsePairs(hdrs)
	var hasMethod, hasPath, hasAuthority bool
	for i, p := range headers {
		switch p.Key {
		case ":method":
			hasMethod = true
		case ":path":
			hasPath = true
		case ":authority":
			hasAuthority = true
		case "host":
			// Envoy's header map stores Host as :authority.
			headers[i].Key = ":authority"
			hasAuthority = true
		}
	}
	if !hasMethod || !hasPath || !hasAuthority {
		setStatus(stack, statusBadArgument)
		return
	}
	if len(body) > 0 {
		headers = append(headers, filter.Pair{Key: "content-length", Value: strconv.Itoa(len(body))})
	}
	rc := inst.root
	if rc == nil {
		setStatus(stack, statusBadArgument)
		return
	}
	token := inst.nextToken(tokenHTTP)
	bodyCopy := append([]byte(nil), body...)
	trailers := parsePairs(trls)
	inst.vm.host.httpCallStarted()
	go rc.runHTTPCall(ups, name, token, headers, bodyCopy, trailers, timeout)
	setStatus(stack, putU32(m, tokenPtr, token))
}

// runHTTPCall performs one callout without holding the instance lock and
// then delivers the reply under it.
func (rc *rootContext) runHTTPCall(ups filter.Upstreams, cluster string, token uint32, headers []filter.Pair, body []byte, trailers []filter.Pair, timeout time.Duration) {
	defer rc.inst.vm.host.httpCallDone()
	ctx, cancel := rc.inst.background()
	defer cancel()
	if timeout > 0 {
		var c2 context.CancelFunc
		ctx, c2 = context.WithTimeout(ctx, timeout)
		defer c2()
	}
	resp, err := ups.HTTPCall(ctx, cluster, headers, body, trailers)
	rc.runRoot("proxy_on_http_call_response", func(inst *instance) error {
		if err != nil || resp == nil {
			rc.statusCode, rc.statusMsg = statusBrokenConnection, "reset"
		} else {
			rc.statusCode, rc.statusMsg = statusOK, ""
		}
		if inst.fnHTTPCallResponse == nil {
			return nil
		}
		var nh, nb, nt int
		return inst.withCallout(func(c *calloutData) {
			if resp == nil || err != nil {
				return
			}
			c.maps[mapHTTPCallHeaders] = filter.NewHeaderMap(resp.Headers...)
			c.maps[mapHTTPCallTrailers] = filter.NewHeaderMap(resp.Trailers...)
			c.bufType, c.buf = bufferHTTPCallBody, resp.Body
			nh, nb, nt = len(resp.Headers), len(resp.Body), len(resp.Trailers)
		}, func() error {
			_, err := inst.invoke5(rc.id, inst.fnHTTPCallResponse, uint64(rc.id), uint64(token), uint64(nh), uint64(nb), uint64(nt))
			return err
		})
	})
}

// invoke5 is invoke for root-context callbacks with five arguments
// (invoke fills the first three slots of the shared stack).
func (inst *instance) invoke5(id uint32, fn api.Function, a, b, c, d, e uint64) (uint64, error) {
	st := inst.stack[:]
	st[3], st[4] = d, e
	return inst.invoke(nil, id, fn, a, b, c)
}

// proxy_get_status(out_code, out_msg_ptr, out_msg_len) -> status: the
// code and message of the caller's root context's last callout (0 and ""
// after a success; 11 "reset" after a failed http_call; the gRPC status
// and message in proxy_on_grpc_close).
func proxyGetStatus(ctx context.Context, m api.Module, stack []uint64) {
	inst := enter(ctx, "proxy_get_status")
	codePtr, msgPtr, lenPtr := api.DecodeU32(stack[0]), api.DecodeU32(stack[1]), api.DecodeU32(stack[2])
	if !writableWord(m, codePtr) || !writableWord(m, msgPtr) || !writableWord(m, lenPtr) {
		setStatus(stack, statusInvalidMemoryAccess)
		return
	}
	var code uint32
	var msg string
	if rc := inst.root; rc != nil {
		code, msg = rc.statusCode, rc.statusMsg
	}
	putU32(m, codePtr, code)
	setStatus(stack, copyOut(ctx, inst, m, msg, msgPtr, lenPtr))
}

// --- gRPC -------------------------------------------------------------------

// grpcCallout is one gRPC call or stream of a root context.
type grpcCallout struct {
	rc     *rootContext
	token  uint32
	stream filter.UpstreamStream
	cancel context.CancelFunc

	// unary is a proxy_grpc_call: Envoy reports it with exactly one
	// callback, proxy_on_grpc_receive on success or proxy_on_grpc_close
	// on failure, and no metadata callbacks.
	unary bool

	mu        sync.Mutex
	cond      *sync.Cond
	out       [][]byte // frames waiting to be written
	closeSend bool
	canceled  bool // no more callbacks (proxy_grpc_cancel)
	done      bool // the writer is finished
}

// grpcCalls indexes live gRPC callouts of an instance by token. Guarded
// by the instance lock.
type grpcCalls map[uint32]*grpcCallout

// grpcFrame frames one message: uncompressed flag, big-endian length.
func grpcFrame(msg []byte) []byte {
	b := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(b[1:5], uint32(len(msg)))
	copy(b[5:], msg)
	return b
}

// grpcTarget reads the upstream argument of proxy_grpc_call/_stream: a
// serialized envoy.config.core.v3.GrpcService (envoy_grpc cluster name,
// authority, initial metadata) or, when it is not one, a cluster name.
func grpcTarget(raw []byte) (cluster, authority string, md []filter.Pair, ok bool) {
	if svc, good := parseGrpcService(raw); good {
		return svc.cluster, svc.authority, svc.metadata, svc.cluster != ""
	}
	return string(raw), "", nil, true
}

// startGrpc validates and starts a gRPC call (msg != nil) or stream.
func startGrpc(ctx context.Context, m api.Module, stack []uint64, name string, isCall bool) {
	inst := enter(ctx, name)
	up, ok1 := readGuest(m, api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
	svc, ok2 := readGuest(m, api.DecodeU32(stack[2]), api.DecodeU32(stack[3]))
	meth, ok3 := readGuest(m, api.DecodeU32(stack[4]), api.DecodeU32(stack[5]))
	mdRaw, ok4 := readGuest(m, api.DecodeU32(stack[6]), api.DecodeU32(stack[7]))
	var msg []byte
	ok5 := true
	var timeout time.Duration
	tokenPtr := api.DecodeU32(stack[8])
	if isCall {
		msg, ok5 = readGuest(m, api.DecodeU32(stack[8]), api.DecodeU32(stack[9]))
		timeout = time.Duration(api.DecodeU32(stack[10])) * time.Millisecond
		tokenPtr = api.DecodeU32(stack[11])
	}
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !writableWord(m, tokenPtr) {
		setStatus(stack, statusInvalidMemoryAccess)
		return
	}
	cluster, authority, md, ok := grpcTarget(up)
	if !ok {
		setStatus(stack, statusParseFailure)
		return
	}
	ups := inst.vm.host.getUpstreams()
	if ups == nil || !ups.HasCluster(cluster) {
		setStatus(stack, statusBadArgument)
		return
	}
	rc := inst.root
	if rc == nil {
		setStatus(stack, statusBadArgument)
		return
	}
	if authority == "" {
		authority = cluster
	}
	headers := []filter.Pair{
		{Key: ":method", Value: "POST"},
		{Key: ":scheme", Value: "http"},
		{Key: ":path", Value: "/" + string(svc) + "/" + string(meth)},
		{Key: ":authority", Value: authority},
		{Key: "content-type", Value: "application/grpc"},
		{Key: "te", Value: "trailers"},
	}
	if timeout > 0 {
		headers = append(headers, filter.Pair{Key: "grpc-timeout", Value: strconv.FormatInt(timeout.Milliseconds(), 10) + "m"})
	}
	headers = append(headers, md...)
	headers = append(headers, parsePairs(mdRaw)...)
	kind := uint32(tokenGrpcStream)
	if isCall {
		kind = tokenGrpcCall
	}
	token := inst.nextToken(kind)
	cctx, cancel := inst.background()
	if timeout > 0 {
		cctx, cancel = withTimeout(cctx, cancel, timeout)
	}
	g := &grpcCallout{rc: rc, token: token, cancel: cancel, unary: isCall}
	g.cond = sync.NewCond(&g.mu)
	if isCall {
		g.out = append(g.out, grpcFrame(msg))
		g.closeSend = true
	}
	if inst.grpc == nil {
		inst.grpc = grpcCalls{}
	}
	inst.grpc[token] = g
	go g.run(cctx, ups, cluster, headers)
	setStatus(stack, putU32(m, tokenPtr, token))
}

func withTimeout(ctx context.Context, cancel context.CancelFunc, d time.Duration) (context.Context, context.CancelFunc) {
	c2, cancel2 := context.WithTimeout(ctx, d)
	return c2, func() { cancel2(); cancel() }
}

// run opens the stream, starts the writer, and delivers the responses as
// callbacks, in order, each under the instance lock.
func (g *grpcCallout) run(ctx context.Context, ups filter.Upstreams, cluster string, headers []filter.Pair) {
	defer g.cancel()
	s, err := ups.OpenStream(ctx, cluster, headers)
	if err != nil {
		g.finish(14, "upstream connect error: "+err.Error())
		return
	}
	g.mu.Lock()
	g.stream = s
	g.mu.Unlock()
	defer s.Close()
	go g.writer(s)

	hdrs, err := s.Response()
	if err != nil {
		g.finish(14, err.Error())
		return
	}
	hm := filter.NewHeaderMap(hdrs...)
	if st, _ := hm.Get(":status"); st != "200" {
		if code, msg, ok := grpcStatusOf(hm); ok {
			g.finish(code, msg)
			return
		}
		g.finish(httpToGrpcStatus(st), "upstream answered HTTP "+st)
		return
	}
	if code, msg, ok := grpcStatusOf(hm); ok {
		// Trailers-only response.
		g.finish(code, msg)
		return
	}
	if g.unary {
		g.runUnary(s)
		return
	}
	md := withoutPseudo(hdrs)
	if !g.deliver("proxy_on_grpc_receive_initial_metadata", func(inst *instance) error {
		if inst.fnGrpcInitialMeta == nil {
			return nil
		}
		return inst.withCallout(func(c *calloutData) {
			c.maps[mapGrpcInitialMetadata] = filter.NewHeaderMap(md...)
		}, func() error {
			_, err := inst.invoke(nil, g.rc.id, inst.fnGrpcInitialMeta, uint64(g.rc.id), uint64(g.token), uint64(len(md)))
			return err
		})
	}) {
		return
	}
	var head [5]byte
	for {
		if _, err := io.ReadFull(s, head[:]); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			g.finish(14, "stream reset: "+err.Error())
			return
		}
		n := binary.BigEndian.Uint32(head[1:])
		if n > 64<<20 {
			g.finish(8, "grpc message too large")
			return
		}
		msg := make([]byte, n)
		if _, err := io.ReadFull(s, msg); err != nil {
			g.finish(14, "stream reset: "+err.Error())
			return
		}
		if head[0] != 0 {
			g.finish(12, "compressed grpc messages are not supported")
			return
		}
		if !g.deliver("proxy_on_grpc_receive", func(inst *instance) error {
			if inst.fnGrpcReceive == nil {
				return nil
			}
			return inst.withCallout(func(c *calloutData) {
				c.bufType, c.buf = bufferGrpcMessage, msg
			}, func() error {
				_, err := inst.invoke(nil, g.rc.id, inst.fnGrpcReceive, uint64(g.rc.id), uint64(g.token), uint64(len(msg)))
				return err
			})
		}) {
			return
		}
	}
	trailers := s.Trailers()
	tm := filter.NewHeaderMap(trailers...)
	code, msg, ok := grpcStatusOf(tm)
	if !ok {
		code, msg = 2, "missing grpc-status"
	}
	if !g.deliver("proxy_on_grpc_receive_trailing_metadata", func(inst *instance) error {
		if inst.fnGrpcTrailingMeta == nil {
			return nil
		}
		return inst.withCallout(func(c *calloutData) {
			c.maps[mapGrpcTrailingMetadata] = tm
		}, func() error {
			_, err := inst.invoke(nil, g.rc.id, inst.fnGrpcTrailingMeta, uint64(g.rc.id), uint64(g.token), uint64(len(trailers)))
			return err
		})
	}) {
		return
	}
	g.finish(code, msg)
}

// runUnary reads a unary call's single response message and its status,
// then reports the outcome with one callback, as Envoy's async gRPC
// request does: the message through proxy_on_grpc_receive when the
// status is OK, otherwise proxy_on_grpc_close with the status.
func (g *grpcCallout) runUnary(s filter.UpstreamStream) {
	var head [5]byte
	var msg []byte
	got := false
	for {
		if _, err := io.ReadFull(s, head[:]); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			g.finish(14, "stream reset: "+err.Error())
			return
		}
		n := binary.BigEndian.Uint32(head[1:])
		if n > 64<<20 {
			g.finish(8, "grpc message too large")
			return
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(s, buf); err != nil {
			g.finish(14, "stream reset: "+err.Error())
			return
		}
		if head[0] != 0 {
			g.finish(12, "compressed grpc messages are not supported")
			return
		}
		if got {
			g.finish(12, "unary call answered with more than one message")
			return
		}
		msg, got = buf, true
	}
	code, text, ok := grpcStatusOf(filter.NewHeaderMap(s.Trailers()...))
	switch {
	case !ok:
		g.finish(2, "missing grpc-status")
		return
	case code != 0:
		g.finish(code, text)
		return
	case !got:
		g.finish(12, "unary call answered without a message")
		return
	}
	g.stopWriter()
	g.rc.runRoot("proxy_on_grpc_receive", func(inst *instance) error {
		if inst.grpc[g.token] != g {
			return nil // cancelled: no callback
		}
		delete(inst.grpc, g.token)
		g.rc.statusCode, g.rc.statusMsg = 0, ""
		if inst.fnGrpcReceive == nil {
			return nil
		}
		return inst.withCallout(func(c *calloutData) {
			c.bufType, c.buf = bufferGrpcMessage, msg
		}, func() error {
			_, err := inst.invoke(nil, g.rc.id, inst.fnGrpcReceive, uint64(g.rc.id), uint64(g.token), uint64(len(msg)))
			return err
		})
	})
}

// deliver runs one callback unless the callout was cancelled; false
// stops the callout.
func (g *grpcCallout) deliver(name string, fn func(inst *instance) error) bool {
	alive := false
	g.rc.runRoot(name, func(inst *instance) error {
		if inst.grpc[g.token] != g {
			return nil
		}
		alive = true
		return fn(inst)
	})
	return alive
}

// finish removes the callout and calls proxy_on_grpc_close(root, token,
// status) with the message readable through proxy_get_status.
func (g *grpcCallout) finish(code uint32, msg string) {
	g.stopWriter()
	g.rc.runRoot("proxy_on_grpc_close", func(inst *instance) error {
		if inst.grpc[g.token] != g {
			return nil // cancelled: no callback
		}
		delete(inst.grpc, g.token)
		g.rc.statusCode, g.rc.statusMsg = code, msg
		if inst.fnGrpcClose == nil {
			return nil
		}
		_, err := inst.invoke(nil, g.rc.id, inst.fnGrpcClose, uint64(g.rc.id), uint64(g.token), uint64(code))
		return err
	})
}

// writer sends queued frames without holding any instance lock.
func (g *grpcCallout) writer(s filter.UpstreamStream) {
	for {
		g.mu.Lock()
		for len(g.out) == 0 && !g.closeSend && !g.done {
			g.cond.Wait()
		}
		if g.done {
			g.mu.Unlock()
			return
		}
		frames := g.out
		g.out = nil
		closeSend := g.closeSend
		g.mu.Unlock()
		for _, f := range frames {
			if err := s.Write(f); err != nil {
				return
			}
		}
		if closeSend {
			g.mu.Lock()
			empty := len(g.out) == 0
			g.mu.Unlock()
			if empty {
				_ = s.CloseWrite()
				return
			}
		}
	}
}

func (g *grpcCallout) stopWriter() {
	g.mu.Lock()
	g.done = true
	g.cond.Broadcast()
	g.mu.Unlock()
}

func grpcStatusOf(hm *filter.HeaderMap) (uint32, string, bool) {
	v, ok := hm.Get("grpc-status")
	if !ok {
		return 0, "", false
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return 2, "invalid grpc-status " + v, true
	}
	msg, _ := hm.Get("grpc-message")
	return uint32(n), percentDecode(msg), true
}

// httpToGrpcStatus maps a non-200 HTTP status as gRPC does.
func httpToGrpcStatus(s string) uint32 {
	switch s {
	case "400":
		return 13
	case "401":
		return 16
	case "403":
		return 7
	case "404":
		return 12
	case "429", "502", "503", "504":
		return 14
	}
	return 2
}

func percentDecode(s string) string {
	if !containsByte(s, '%') {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b = append(b, byte(v))
				i += 2
				continue
			}
		}
		b = append(b, s[i])
	}
	return string(b)
}

func containsByte(s string, c byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return true
		}
	}
	return false
}

func withoutPseudo(pairs []filter.Pair) []filter.Pair {
	out := make([]filter.Pair, 0, len(pairs))
	for _, p := range pairs {
		if len(p.Key) > 0 && p.Key[0] == ':' {
			continue
		}
		out = append(out, p)
	}
	return out
}

// proxy_grpc_call(upstream, service, method, metadata, message,
// timeout_ms, out_token) -> status.
func proxyGrpcCall(ctx context.Context, m api.Module, stack []uint64) {
	startGrpc(ctx, m, stack, "proxy_grpc_call", true)
}

// proxy_grpc_stream(upstream, service, method, metadata, out_token).
func proxyGrpcStream(ctx context.Context, m api.Module, stack []uint64) {
	startGrpc(ctx, m, stack, "proxy_grpc_stream", false)
}

// proxy_grpc_send(token, msg_ptr, msg_len, end_stream) -> status:
// BAD_ARGUMENT for a token that is not a stream's, NOT_FOUND when no such
// stream is open.
func proxyGrpcSend(ctx context.Context, m api.Module, stack []uint64) {
	inst := enter(ctx, "proxy_grpc_send")
	token := api.DecodeU32(stack[0])
	msg, ok := readGuest(m, api.DecodeU32(stack[1]), api.DecodeU32(stack[2]))
	if !ok {
		setStatus(stack, statusInvalidMemoryAccess)
		return
	}
	if token&3 != tokenGrpcStream {
		setStatus(stack, statusBadArgument)
		return
	}
	g := inst.grpc[token]
	if g == nil {
		setStatus(stack, statusNotFound)
		return
	}
	g.mu.Lock()
	if g.closeSend {
		g.mu.Unlock()
		setStatus(stack, statusBadArgument)
		return
	}
	g.out = append(g.out, grpcFrame(msg))
	if api.DecodeU32(stack[3]) != 0 {
		g.closeSend = true
	}
	g.cond.Broadcast()
	g.mu.Unlock()
	setStatus(stack, statusOK)
}

// grpcEnd implements proxy_grpc_cancel (no further callbacks) and
// proxy_grpc_close (a call: cancel; a stream: half-close local).
func grpcEnd(ctx context.Context, stack []uint64, name string, cancel bool) {
	inst := enter(ctx, name)
	token := api.DecodeU32(stack[0])
	if k := token & 3; k != tokenGrpcCall && k != tokenGrpcStream {
		setStatus(stack, statusBadArgument)
		return
	}
	g := inst.grpc[token]
	if g == nil {
		setStatus(stack, statusNotFound)
		return
	}
	if cancel || token&3 == tokenGrpcCall {
		delete(inst.grpc, token)
		g.stopWriter()
		g.cancel()
		setStatus(stack, statusOK)
		return
	}
	g.mu.Lock()
	g.closeSend = true
	g.cond.Broadcast()
	g.mu.Unlock()
	setStatus(stack, statusOK)
}

func proxyGrpcCancel(ctx context.Context, _ api.Module, stack []uint64) {
	grpcEnd(ctx, stack, "proxy_grpc_cancel", true)
}

func proxyGrpcClose(ctx context.Context, _ api.Module, stack []uint64) {
	grpcEnd(ctx, stack, "proxy_grpc_close", false)
}

func calloutFunctions() []hostFunc {
	return []hostFunc{
		{"proxy_http_call", ints(10), oneI32, proxyHTTPCall},
		{"proxy_get_status", ints(3), oneI32, proxyGetStatus},
		{"proxy_grpc_call", ints(12), oneI32, proxyGrpcCall},
		{"proxy_grpc_stream", ints(9), oneI32, proxyGrpcStream},
		{"proxy_grpc_send", ints(4), oneI32, proxyGrpcSend},
		{"proxy_grpc_cancel", ints(1), oneI32, proxyGrpcCancel},
		{"proxy_grpc_close", ints(1), oneI32, proxyGrpcClose},
	}
}
