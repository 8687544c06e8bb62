package proxytest

import (
	"fmt"
	"slices"
	"strings"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/internal/hostabi"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

// LocalHttpResponse is a local response a plugin sent
// (proxywasm.SendHttpResponse), as it sent it.
type LocalHttpResponse struct {
	StatusCode       uint32
	StatusCodeDetail string
	Data             []byte      // nil when empty
	Headers          [][2]string // nil when none
	GRPCStatus       int32       // -1 for none
}

// httpStream is one HTTP stream: its maps, bodies and what the plugin did.
type httpStream struct {
	requestHeaders, responseHeaders   [][2]string
	requestTrailers, responseTrailers [][2]string

	// requestBody is the body the plugin sees and edits in the current
	// (or last) body callback: what it buffered by pausing, followed by
	// the new chunk. requestHeld is what it buffered, kept for the next
	// call. Likewise for the response.
	requestBody, responseBody []byte
	requestHeld, responseHeld []byte

	action        types.Action
	localResponse *LocalHttpResponse
	reset         bool // the plugin closed the stream (proxy_close_stream)
	done          bool // completed: the context is deleted
}

func lowerKeys(pairs [][2]string) [][2]string {
	if pairs == nil {
		return nil
	}
	out := make([][2]string, len(pairs))
	for i, p := range pairs {
		out[i] = [2]string{strings.ToLower(p[0]), p[1]}
	}
	return out
}

func (e *hostEmulator) InitializeHttpContext() uint32 {
	id := newContextID()
	e.http[id] = &httpStream{action: types.ActionContinue}
	e.call(id, func() { hostabi.Native.OnContextCreate(id, PluginContextID) })
	return id
}

// stream returns the live HTTP stream contextID for method, panicking
// with the reason when there is none.
func (e *hostEmulator) stream(method string, contextID uint32) *httpStream {
	s := e.streamState(method, contextID)
	if s.done {
		panic(fmt.Sprintf("proxytest: %s: HTTP context %d was completed (CompleteHttpContext)", method, contextID))
	}
	return s
}

// streamState returns the HTTP stream contextID, completed or not.
func (e *hostEmulator) streamState(method string, contextID uint32) *httpStream {
	s, ok := e.http[contextID]
	if !ok {
		if _, tcp := e.tcp[contextID]; tcp {
			panic(fmt.Sprintf("proxytest: %s: context %d is a TCP connection, not an HTTP stream", method, contextID))
		}
		panic(fmt.Sprintf("proxytest: %s: no HTTP context %d (InitializeHttpContext creates one)", method, contextID))
	}
	return s
}

// callStream calls a stream callback and records its action.
func (e *hostEmulator) callStream(s *httpStream, contextID uint32, fn func() uint32) types.Action {
	var a uint32
	e.call(contextID, func() { a = fn() })
	s.action = types.Action(a)
	return s.action
}

func (e *hostEmulator) CallOnRequestHeaders(contextID uint32, headers [][2]string, endOfStream bool) types.Action {
	s := e.stream("CallOnRequestHeaders", contextID)
	s.requestHeaders = lowerKeys(headers)
	return e.callStream(s, contextID, func() uint32 {
		return hostabi.Native.OnRequestHeaders(contextID, uint32(len(headers)), endOfStream)
	})
}

func (e *hostEmulator) CallOnResponseHeaders(contextID uint32, headers [][2]string, endOfStream bool) types.Action {
	s := e.stream("CallOnResponseHeaders", contextID)
	s.responseHeaders = lowerKeys(headers)
	return e.callStream(s, contextID, func() uint32 {
		return hostabi.Native.OnResponseHeaders(contextID, uint32(len(headers)), endOfStream)
	})
}

func (e *hostEmulator) CallOnRequestTrailers(contextID uint32, trailers [][2]string) types.Action {
	s := e.stream("CallOnRequestTrailers", contextID)
	s.requestTrailers = lowerKeys(trailers)
	return e.callStream(s, contextID, func() uint32 {
		return hostabi.Native.OnRequestTrailers(contextID, uint32(len(trailers)))
	})
}

func (e *hostEmulator) CallOnResponseTrailers(contextID uint32, trailers [][2]string) types.Action {
	s := e.stream("CallOnResponseTrailers", contextID)
	s.responseTrailers = lowerKeys(trailers)
	return e.callStream(s, contextID, func() uint32 {
		return hostabi.Native.OnResponseTrailers(contextID, uint32(len(trailers)))
	})
}

func (e *hostEmulator) CallOnRequestBody(contextID uint32, body []byte, endOfStream bool) types.Action {
	s := e.stream("CallOnRequestBody", contextID)
	s.requestBody = append(slices.Clip(s.requestHeld), body...)
	a := e.callStream(s, contextID, func() uint32 {
		return hostabi.Native.OnRequestBody(contextID, uint32(len(s.requestBody)), endOfStream)
	})
	s.requestHeld = nil
	if a == types.ActionPause {
		s.requestHeld = s.requestBody
	}
	return a
}

func (e *hostEmulator) CallOnResponseBody(contextID uint32, body []byte, endOfStream bool) types.Action {
	s := e.stream("CallOnResponseBody", contextID)
	s.responseBody = append(slices.Clip(s.responseHeld), body...)
	a := e.callStream(s, contextID, func() uint32 {
		return hostabi.Native.OnResponseBody(contextID, uint32(len(s.responseBody)), endOfStream)
	})
	s.responseHeld = nil
	if a == types.ActionPause {
		s.responseHeld = s.responseBody
	}
	return a
}

// CompleteHttpContext ends the stream as Envoy does: proxy_on_done,
// proxy_on_log (OnHttpStreamDone), proxy_on_delete.
func (e *hostEmulator) CompleteHttpContext(contextID uint32) {
	s := e.stream("CompleteHttpContext", contextID)
	e.complete(contextID)
	s.done = true
}

// complete runs the end of a stream context's life.
func (e *hostEmulator) complete(contextID uint32) {
	e.call(contextID, func() {
		hostabi.Native.OnDone(contextID)
		hostabi.Native.OnLog(contextID)
		hostabi.Native.OnDelete(contextID)
	})
}

func (e *hostEmulator) GetCurrentHttpStreamAction(contextID uint32) types.Action {
	return e.streamState("GetCurrentHttpStreamAction", contextID).action
}

func (e *hostEmulator) GetCurrentRequestHeaders(contextID uint32) [][2]string {
	return slices.Clone(e.streamState("GetCurrentRequestHeaders", contextID).requestHeaders)
}

func (e *hostEmulator) GetCurrentResponseHeaders(contextID uint32) [][2]string {
	return slices.Clone(e.streamState("GetCurrentResponseHeaders", contextID).responseHeaders)
}

func (e *hostEmulator) GetCurrentRequestTrailers(contextID uint32) [][2]string {
	return slices.Clone(e.streamState("GetCurrentRequestTrailers", contextID).requestTrailers)
}

func (e *hostEmulator) GetCurrentResponseTrailers(contextID uint32) [][2]string {
	return slices.Clone(e.streamState("GetCurrentResponseTrailers", contextID).responseTrailers)
}

func (e *hostEmulator) GetCurrentRequestBody(contextID uint32) []byte {
	return slices.Clone(e.streamState("GetCurrentRequestBody", contextID).requestBody)
}

func (e *hostEmulator) GetCurrentResponseBody(contextID uint32) []byte {
	return slices.Clone(e.streamState("GetCurrentResponseBody", contextID).responseBody)
}

func (e *hostEmulator) GetSentLocalResponse(contextID uint32) *LocalHttpResponse {
	r := e.streamState("GetSentLocalResponse", contextID).localResponse
	if r == nil {
		return nil
	}
	c := *r
	c.Data = slices.Clone(r.Data)
	c.Headers = slices.Clone(r.Headers)
	return &c
}
