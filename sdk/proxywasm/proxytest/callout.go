package proxytest

import (
	"fmt"
	"slices"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/internal/hostabi"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/internal/serde"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

// HttpCalloutAttribute is an HTTP call a plugin dispatched
// (proxywasm.DispatchHttpCall), as the cluster would receive it.
type HttpCalloutAttribute struct {
	CalloutID uint32
	Upstream  string
	Headers   [][2]string
	Trailers  [][2]string
	Body      []byte
}

// GrpcCalloutAttribute is a gRPC call (proxywasm.DispatchGrpcCall) or
// stream (proxywasm.OpenGrpcStream) a plugin started. (An addition to
// proxy-wasm-go-sdk's emulator, whose SDK has no gRPC API.)
type GrpcCalloutAttribute struct {
	CalloutID   uint32
	Upstream    string
	ServiceName string
	MethodName  string
	// InitialMetadata is the metadata the plugin sent.
	InitialMetadata [][2]string
	// Messages are the messages the plugin sent: the request of a call,
	// what it sent on a stream so far.
	Messages [][]byte
	// Timeout is the call's timeout in milliseconds (0: none, and
	// always 0 for a stream).
	Timeout uint32
	// Stream is true for a stream, false for a unary call.
	Stream bool
	// HalfClosed: the plugin closed its side of the stream
	// (CloseGrpcStream, or a message sent with endOfStream).
	HalfClosed bool
	// Cancelled: the plugin cancelled the call or stream.
	Cancelled bool
	// Done: the call or stream has ended (answered, closed or cancelled).
	Done bool
}

// gRPC callout tokens carry their kind in the low two bits, as Envoy's
// do. HTTP callout ids count from 0, as proxy-wasm-go-sdk's emulator's do.
const (
	tokenHttp       = 0
	tokenGrpcCall   = 1
	tokenGrpcStream = 2
)

// callout is a pending HTTP call or gRPC call or stream.
type callout struct {
	kind    uint32
	context uint32         // the context that started it
	events  hostabi.Events // nil: the native plugin
	http    *HttpCalloutAttribute
	grpc    *GrpcCalloutAttribute
}

// calloutData is what the plugin may read while one of its callout
// callbacks runs: maps 4-7 and buffers 4-5.
type calloutData struct {
	maps    map[uint32][][2]string
	bufType uint32
	buf     []byte
}

type callouts struct {
	// pending HTTP calls, and gRPC calls and streams, by id
	pendingHttp, pendingGrpc map[uint32]*callout
	// every callout by the context that started it, in order, for the
	// Get...AttributesFromContext methods.
	http map[uint32][]*HttpCalloutAttribute
	grpc map[uint32][]*GrpcCalloutAttribute
	// current is set while a callout callback runs.
	current *calloutData
	// status is what proxy_get_status reports: the outcome of the last
	// callout.
	statusCode uint32
	statusMsg  string
}

func (c *callouts) init() {
	c.pendingHttp = map[uint32]*callout{}
	c.pendingGrpc = map[uint32]*callout{}
	c.http = map[uint32][]*HttpCalloutAttribute{}
	c.grpc = map[uint32][]*GrpcCalloutAttribute{}
}

// httpID returns the lowest id no pending HTTP call has. Reusing the ids
// of answered calls is what proxy-wasm-go-sdk's emulator does, and tests
// written for it rely on it (answering "the first call" of a context
// again after each tick), as they may on ids counting from 0.
func (c *callouts) httpID() uint32 {
	for id := uint32(0); ; id++ {
		if _, used := c.pendingHttp[id]; !used {
			return id
		}
	}
}

// grpcToken returns the lowest free token of a gRPC kind.
func (c *callouts) grpcToken(kind uint32) uint32 {
	for n := uint32(0); ; n++ {
		if _, used := c.pendingGrpc[n<<2|kind]; !used {
			return n<<2 | kind
		}
	}
}

// startHttpCall records a call; the emulator never times one out, the test
// answers it.
func (e *hostEmulator) startHttpCall(upstream, headers, body, trailers []byte, events hostabi.Events) uint32 {
	id := e.callouts.httpID()
	a := &HttpCalloutAttribute{
		CalloutID: id,
		Upstream:  string(upstream),
		Headers:   lowerKeys(serde.DeserializeMap(headers)),
		Trailers:  lowerKeys(serde.DeserializeMap(trailers)),
		Body:      append([]byte{}, body...), // never nil, as upstream's
	}
	e.callouts.pendingHttp[id] = &callout{kind: tokenHttp, context: e.effective, events: events, http: a}
	e.callouts.http[e.effective] = append(e.callouts.http[e.effective], a)
	return id
}

func (e *hostEmulator) GetCalloutAttributesFromContext(contextID uint32) []HttpCalloutAttribute {
	var out []HttpCalloutAttribute
	for _, a := range e.callouts.http[contextID] {
		c := *a
		c.Headers = slices.Clone(a.Headers)
		c.Trailers = slices.Clone(a.Trailers)
		c.Body = slices.Clone(a.Body)
		out = append(out, c)
	}
	return out
}

// takeCallout removes the pending HTTP call (or gRPC call or stream) id
// for method; it panics when there is none, and reports whether its
// context is alive to receive the reply.
func (e *hostEmulator) takeCallout(method string, id uint32, grpc bool) (*callout, bool) {
	pending, what := e.callouts.pendingHttp, "HTTP call"
	if grpc {
		pending, what = e.callouts.pendingGrpc, "gRPC call or stream"
	}
	c, ok := pending[id]
	if !ok {
		panic(fmt.Sprintf("proxytest: %s: no pending %s %d (Get...CalloutAttributesFromContext lists them)", method, what, id))
	}
	delete(pending, id)
	return c, e.alive(c.context)
}

// deliver runs a callout callback on the plugin context with data
// readable, unless the context that started the callout is gone (Envoy
// cancels a context's callouts when it is deleted).
func (e *hostEmulator) deliver(c *callout, alive bool, data *calloutData, native func(), events func(hostabi.Events)) {
	if !alive {
		return
	}
	e.callouts.current = data
	defer func() { e.callouts.current = nil }()
	e.call(PluginContextID, func() {
		if c.events != nil {
			events(c.events)
			return
		}
		native()
	})
}

func (e *hostEmulator) CallOnHttpCallResponse(calloutID uint32, headers [][2]string, trailers [][2]string, body []byte) {
	c, alive := e.takeCallout("CallOnHttpCallResponse", calloutID, false)
	e.callouts.statusCode, e.callouts.statusMsg = 0, ""
	data := &calloutData{
		maps:    map[uint32][][2]string{mapHttpCallResponseHeaders: lowerKeys(headers), mapHttpCallResponseTrailers: lowerKeys(trailers)},
		bufType: bufferHttpCallResponseBody,
		buf:     slices.Clone(body),
	}
	nh, bs, nt := uint32(len(headers)), uint32(len(body)), uint32(len(trailers))
	e.deliver(c, alive, data,
		func() { hostabi.Native.OnHttpCallResponse(PluginContextID, calloutID, nh, bs, nt) },
		func(ev hostabi.Events) { ev.ProxyOnHttpCallResponse(PluginContextID, calloutID, nh, bs, nt) })
}

// --- gRPC -------------------------------------------------------------------

func (e *hostEmulator) startGrpc(kind uint32, upstream, service, method, metadata []byte, message []byte, timeout uint32, events hostabi.Events) uint32 {
	id := e.callouts.grpcToken(kind)
	a := &GrpcCalloutAttribute{
		CalloutID:       id,
		Upstream:        string(upstream),
		ServiceName:     string(service),
		MethodName:      string(method),
		InitialMetadata: lowerKeys(serde.DeserializeMap(metadata)),
		Timeout:         timeout,
		Stream:          kind == tokenGrpcStream,
	}
	if kind == tokenGrpcCall {
		a.Messages = [][]byte{slices.Clone(message)}
	}
	e.callouts.pendingGrpc[id] = &callout{kind: kind, context: e.effective, events: events, grpc: a}
	e.callouts.grpc[e.effective] = append(e.callouts.grpc[e.effective], a)
	return id
}

func (e *hostEmulator) GetGrpcCalloutAttributesFromContext(contextID uint32) []GrpcCalloutAttribute {
	var out []GrpcCalloutAttribute
	for _, a := range e.callouts.grpc[contextID] {
		c := *a
		c.InitialMetadata = slices.Clone(a.InitialMetadata)
		c.Messages = slices.Clone(a.Messages)
		out = append(out, c)
	}
	return out
}

// grpcEvent finds the pending gRPC callout id for an event; done ends it.
func (e *hostEmulator) grpcEvent(method string, id uint32, done bool) (*callout, bool) {
	c, alive := e.takeCallout(method, id, true)
	if done {
		c.grpc.Done = true
	} else {
		e.callouts.pendingGrpc[id] = c
	}
	return c, alive
}

func (e *hostEmulator) CallOnGrpcReceiveInitialMetadata(calloutID uint32, metadata [][2]string) {
	c, alive := e.grpcEvent("CallOnGrpcReceiveInitialMetadata", calloutID, false)
	n := uint32(len(metadata))
	e.deliver(c, alive, &calloutData{maps: map[uint32][][2]string{mapGrpcReceiveInitialMetadata: lowerKeys(metadata)}},
		func() { hostabi.Native.OnGrpcReceiveInitialMetadata(PluginContextID, calloutID, n) },
		func(ev hostabi.Events) { ev.ProxyOnGrpcReceiveInitialMetadata(PluginContextID, calloutID, n) })
}

func (e *hostEmulator) CallOnGrpcReceive(calloutID uint32, message []byte) {
	// A unary call is over with its response.
	isCall := calloutID&3 == tokenGrpcCall
	c, alive := e.grpcEvent("CallOnGrpcReceive", calloutID, isCall)
	if isCall {
		e.callouts.statusCode, e.callouts.statusMsg = 0, ""
	}
	n := uint32(len(message))
	e.deliver(c, alive, &calloutData{bufType: bufferGrpcReceiveBuffer, buf: slices.Clone(message)},
		func() { hostabi.Native.OnGrpcReceive(PluginContextID, calloutID, n) },
		func(ev hostabi.Events) { ev.ProxyOnGrpcReceive(PluginContextID, calloutID, n) })
}

func (e *hostEmulator) CallOnGrpcReceiveTrailingMetadata(calloutID uint32, metadata [][2]string) {
	c, alive := e.grpcEvent("CallOnGrpcReceiveTrailingMetadata", calloutID, false)
	n := uint32(len(metadata))
	e.deliver(c, alive, &calloutData{maps: map[uint32][][2]string{mapGrpcReceiveTrailingMetadata: lowerKeys(metadata)}},
		func() { hostabi.Native.OnGrpcReceiveTrailingMetadata(PluginContextID, calloutID, n) },
		func(ev hostabi.Events) { ev.ProxyOnGrpcReceiveTrailingMetadata(PluginContextID, calloutID, n) })
}

func (e *hostEmulator) CallOnGrpcClose(calloutID uint32, status types.GrpcStatus, message string) {
	c, alive := e.grpcEvent("CallOnGrpcClose", calloutID, true)
	e.callouts.statusCode, e.callouts.statusMsg = uint32(status), message
	e.deliver(c, alive, &calloutData{},
		func() { hostabi.Native.OnGrpcClose(PluginContextID, calloutID, uint32(status)) },
		func(ev hostabi.Events) { ev.ProxyOnGrpcClose(PluginContextID, calloutID, uint32(status)) })
}
