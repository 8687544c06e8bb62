package proxywasm

import (
	"errors"
	"runtime"
	"unsafe"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

// gRPC callouts. The host runs them over HTTP/2 to a cluster and reports
// back on the root context of the plugin that started them, through
// proxy_on_grpc_receive_initial_metadata, proxy_on_grpc_receive,
// proxy_on_grpc_receive_trailing_metadata and proxy_on_grpc_close. The SDK
// routes each to the callback given when the call or stream was started,
// with the starting context made effective again, as DispatchHttpCall
// does. Names follow proxy-wasm-rust-sdk's (dispatch_grpc_call,
// open_grpc_stream, send_grpc_stream_message, ...) in Go spelling;
// proxy-wasm-go-sdk has no gRPC API.

// ABI enumerations for gRPC (proxy_map_type_t, proxy_buffer_type_t).
const (
	mapGrpcInitialMetadata  = 4
	mapGrpcTrailingMetadata = 5
	bufGrpcMessage          = 5
)

// DispatchGrpcCall starts a unary gRPC call of serviceName/methodName (for
// example "grpc.health.v1.Health", "Check") to the upstream cluster, with
// the serialized request message, and returns at once. upstream is a
// cluster name (Envoy also takes a serialized
// envoy.config.core.v3.GrpcService). timeoutMillisecond 0 means no
// timeout.
//
// callBack runs once, with the dispatching context effective: with
// types.GrpcStatusOK and the size of the response message, readable with
// GetGrpcCallResponseBody, or with the failure's status and size 0, its
// message readable with GetGrpcStatus. It does not run after
// CancelGrpcCall, or if the dispatching context was deleted first.
func DispatchGrpcCall(
	upstream, serviceName, methodName string,
	initialMetadata [][2]string,
	message []byte,
	timeoutMillisecond uint32,
	callBack func(status types.GrpcStatus, responseSize int),
) (calloutID uint32, err error) {
	if _, ok := state.rootOf(state.active); !ok {
		return 0, errors.New("proxywasm: DispatchGrpcCall called outside a plugin, HTTP or TCP context")
	}
	md := serializeMap(initialMetadata)
	retU32 = 0
	st := proxyGrpcCall(stringPtr(upstream), uint32(len(upstream)),
		stringPtr(serviceName), uint32(len(serviceName)), stringPtr(methodName), uint32(len(methodName)),
		bytesPtr(md), uint32(len(md)), bytesPtr(message), uint32(len(message)),
		timeoutMillisecond, unsafe.Pointer(&retU32))
	runtime.KeepAlive(upstream)
	runtime.KeepAlive(serviceName)
	runtime.KeepAlive(methodName)
	runtime.KeepAlive(md)
	runtime.KeepAlive(message)
	if err := statusToError(st); err != nil {
		return 0, err
	}
	calloutID = retU32
	state.registerGrpc(calloutID, grpcCallout{call: callBack})
	return calloutID, nil
}

// GetGrpcCallResponseBody returns up to maxSize bytes, from offset start,
// of the response message of a DispatchGrpcCall; only inside its callback.
func GetGrpcCallResponseBody(start, maxSize int) ([]byte, error) {
	return getBuffer(bufGrpcMessage, start, maxSize)
}

// CancelGrpcCall cancels a call started by DispatchGrpcCall; its callback
// will not run.
func CancelGrpcCall(calloutID uint32) error {
	state.forgetGrpc(calloutID)
	return statusToError(proxyGrpcCancel(calloutID))
}

// GrpcStreamCallbacks receive the events of a stream opened with
// OpenGrpcStream, each with the opening context effective. Any may be nil.
type GrpcStreamCallbacks struct {
	// OnInitialMetadata: the server's response headers arrived; read them
	// with GetGrpcStreamInitialMetadata.
	OnInitialMetadata func(numElements int)
	// OnMessage: one response message arrived; read it with
	// GetGrpcStreamMessage.
	OnMessage func(messageSize int)
	// OnTrailingMetadata: the server's trailers arrived; read them with
	// GetGrpcStreamTrailingMetadata.
	OnTrailingMetadata func(numElements int)
	// OnClose: the stream ended with status (its message through
	// GetGrpcStatus); no callback follows.
	OnClose func(status types.GrpcStatus)
}

// OpenGrpcStream opens a streaming gRPC call of serviceName/methodName to
// the upstream cluster and returns its id at once. Send with
// SendGrpcStreamMessage, half-close with CloseGrpcStream, abandon with
// CancelGrpcStream. Events arrive through callbacks until OnClose, unless
// the stream is cancelled or the opening context deleted first.
func OpenGrpcStream(
	upstream, serviceName, methodName string,
	initialMetadata [][2]string,
	callbacks GrpcStreamCallbacks,
) (streamID uint32, err error) {
	if _, ok := state.rootOf(state.active); !ok {
		return 0, errors.New("proxywasm: OpenGrpcStream called outside a plugin, HTTP or TCP context")
	}
	md := serializeMap(initialMetadata)
	retU32 = 0
	st := proxyGrpcStream(stringPtr(upstream), uint32(len(upstream)),
		stringPtr(serviceName), uint32(len(serviceName)), stringPtr(methodName), uint32(len(methodName)),
		bytesPtr(md), uint32(len(md)), unsafe.Pointer(&retU32))
	runtime.KeepAlive(upstream)
	runtime.KeepAlive(serviceName)
	runtime.KeepAlive(methodName)
	runtime.KeepAlive(md)
	if err := statusToError(st); err != nil {
		return 0, err
	}
	streamID = retU32
	cbs := callbacks
	state.registerGrpc(streamID, grpcCallout{stream: &cbs})
	return streamID, nil
}

// SendGrpcStreamMessage sends one serialized message on the stream;
// endOfStream also half-closes it. The host answers
// types.ErrorStatusBadArgument for a call's id or after end of stream, and
// types.ErrorStatusNotFound for a stream that is not open.
func SendGrpcStreamMessage(streamID uint32, message []byte, endOfStream bool) error {
	var eos uint32
	if endOfStream {
		eos = 1
	}
	st := proxyGrpcSend(streamID, bytesPtr(message), uint32(len(message)), eos)
	runtime.KeepAlive(message)
	return statusToError(st)
}

// CloseGrpcStream half-closes the stream: nothing more is sent, responses
// keep arriving until OnClose.
func CloseGrpcStream(streamID uint32) error {
	return statusToError(proxyGrpcClose(streamID))
}

// CancelGrpcStream resets the stream; no callback follows.
func CancelGrpcStream(streamID uint32) error {
	state.forgetGrpc(streamID)
	return statusToError(proxyGrpcCancel(streamID))
}

// GetGrpcStreamInitialMetadata returns the response headers of a stream;
// only inside GrpcStreamCallbacks.OnInitialMetadata.
func GetGrpcStreamInitialMetadata() ([][2]string, error) {
	return getMap(mapGrpcInitialMetadata)
}

// GetGrpcStreamMessage returns up to maxSize bytes, from offset start, of
// the message just received; only inside GrpcStreamCallbacks.OnMessage.
func GetGrpcStreamMessage(start, maxSize int) ([]byte, error) {
	return getBuffer(bufGrpcMessage, start, maxSize)
}

// GetGrpcStreamTrailingMetadata returns the trailers of a stream; only
// inside GrpcStreamCallbacks.OnTrailingMetadata.
func GetGrpcStreamTrailingMetadata() ([][2]string, error) {
	return getMap(mapGrpcTrailingMetadata)
}

// GetGrpcStatus returns the status and message of the last gRPC callout of
// the current plugin context: inside a call's failure callback or a
// stream's OnClose, why it ended (Envoy: the grpc-message, or a transport
// error). It reads proxy_get_status, which HTTP callouts set too (code 11
// "reset" for a failed DispatchHttpCall).
func GetGrpcStatus() (types.GrpcStatus, string, error) {
	resetResult()
	retU32 = 0
	st := proxyGetStatus(unsafe.Pointer(&retU32), unsafe.Pointer(&retData), unsafe.Pointer(&retLen))
	code := retU32
	msg := takeResult()
	if err := statusToError(st); err != nil {
		return 0, "", err
	}
	return types.GrpcStatus(code), string(msg), nil
}

// GetLogLevel returns the host's current level for plugin logs (Envoy:
// its "wasm" logger); messages below it are dropped, so a plugin can skip
// building them. Envoy answers a level above LogLevelCritical when
// logging is off. It needs ABI 0.2.1, which the SDK declares.
func GetLogLevel() (types.LogLevel, error) {
	retU32 = 0
	st := proxyGetLogLevel(unsafe.Pointer(&retU32))
	if err := statusToError(st); err != nil {
		return 0, err
	}
	return types.LogLevel(retU32), nil
}

// grpcCallout is one gRPC call (call set) or stream (stream set) and the
// context that started it.
type grpcCallout struct {
	call   func(status types.GrpcStatus, responseSize int)
	stream *GrpcStreamCallbacks
	caller uint32
}

// registerGrpc remembers a call or stream on the root of the current
// context.
func (s *vmState) registerGrpc(token uint32, c grpcCallout) {
	rootID, ok := s.rootOf(s.active)
	if !ok {
		return
	}
	r, ok := s.roots[rootID]
	if !ok {
		return
	}
	if r.grpc == nil {
		r.grpc = map[uint32]grpcCallout{}
	}
	c.caller = s.active
	r.grpc[token] = c
}

// forgetGrpc drops a cancelled call or stream, wherever it was started.
func (s *vmState) forgetGrpc(token uint32) {
	if rootID, ok := s.rootOf(s.active); ok {
		if r, ok := s.roots[rootID]; ok {
			delete(r.grpc, token)
		}
	}
}

// grpcEvent finds the callout for token on root rootContextID, removes it
// when done is set, and makes its caller the active (and effective)
// context. ok is false when the event is not for a live callout the SDK
// started (cancelled, already answered, or its context deleted).
func (s *vmState) grpcEvent(rootContextID, token uint32, callback string, done bool) (c grpcCallout, ok bool) {
	r := s.root(rootContextID, callback)
	c, ok = r.grpc[token]
	if !ok {
		return c, false
	}
	if done {
		delete(r.grpc, token)
	}
	if _, live := s.rootOf(c.caller); !live {
		delete(r.grpc, token)
		return c, false
	}
	if c.caller != rootContextID {
		proxySetEffectiveContext(c.caller)
	}
	s.active = c.caller
	return c, true
}

// The four gRPC callbacks. A unary call completes with exactly one
// callback: on the response message (OK) or, when none came, on close
// with the failure status. Envoy delivers only one of the two for a call;
// the metadata events and a close after the message, which some hosts also
// deliver for a call, are ignored.

func onGrpcReceiveInitialMetadata(rootContextID, token, numElements uint32) {
	if c, ok := state.grpcEvent(rootContextID, token, "proxy_on_grpc_receive_initial_metadata", false); ok && c.stream != nil && c.stream.OnInitialMetadata != nil {
		c.stream.OnInitialMetadata(int(numElements))
	}
}

func onGrpcReceive(rootContextID, token, messageSize uint32) {
	r := state.root(rootContextID, "proxy_on_grpc_receive")
	isCall := r.grpc[token].call != nil
	c, ok := state.grpcEvent(rootContextID, token, "proxy_on_grpc_receive", isCall)
	if !ok {
		return
	}
	switch {
	case c.call != nil:
		c.call(types.GrpcStatusOK, int(messageSize))
	case c.stream != nil && c.stream.OnMessage != nil:
		c.stream.OnMessage(int(messageSize))
	}
}

func onGrpcReceiveTrailingMetadata(rootContextID, token, numElements uint32) {
	if c, ok := state.grpcEvent(rootContextID, token, "proxy_on_grpc_receive_trailing_metadata", false); ok && c.stream != nil && c.stream.OnTrailingMetadata != nil {
		c.stream.OnTrailingMetadata(int(numElements))
	}
}

func onGrpcClose(rootContextID, token, status uint32) {
	c, ok := state.grpcEvent(rootContextID, token, "proxy_on_grpc_close", true)
	if !ok {
		return
	}
	switch {
	case c.call != nil:
		c.call(types.GrpcStatus(status), 0)
	case c.stream != nil && c.stream.OnClose != nil:
		c.stream.OnClose(types.GrpcStatus(status))
	}
}
