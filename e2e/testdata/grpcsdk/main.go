// Package main uses the SDK's gRPC API against grpc.health.v1.Health on
// cluster "grpc": a unary Check (path /call/<service>) and a Watch
// stream (path /watch/<service>). It holds the request, records what the
// callbacks saw in request headers, and resumes it, so the upstream (and
// the test) sees the outcome.
package main

import (
	"fmt"
	"strings"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetHttpContext(func(uint32) types.HttpContext { return &stream{} })
}

const healthService = "grpc.health.v1.Health"

// healthRequest serializes grpc.health.v1.HealthCheckRequest{service}.
func healthRequest(service string) []byte {
	return append([]byte{0x0a, byte(len(service))}, service...)
}

// healthStatus reads HealthCheckResponse.status (field 1, varint).
func healthStatus(msg []byte) string {
	if len(msg) == 2 && msg[0] == 0x08 {
		switch msg[1] {
		case 1:
			return "SERVING"
		case 2:
			return "NOT_SERVING"
		}
	}
	return fmt.Sprintf("%x", msg)
}

type stream struct {
	types.DefaultHttpContext
	events []string
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	path, _ := proxywasm.GetHttpRequestHeader(":path")
	switch {
	case strings.HasPrefix(path, "/call/"):
		return s.call(strings.TrimPrefix(path, "/call/"))
	case strings.HasPrefix(path, "/watch/"):
		return s.watch(strings.TrimPrefix(path, "/watch/"))
	}
	return types.ActionContinue
}

func (s *stream) finish(key, value string) {
	if err := proxywasm.ReplaceHttpRequestHeader(key, value); err != nil {
		proxywasm.LogErrorf("header: %v", err)
	}
	if err := proxywasm.ResumeHttpRequest(); err != nil {
		proxywasm.LogErrorf("resume: %v", err)
	}
}

func (s *stream) call(service string) types.Action {
	_, err := proxywasm.DispatchGrpcCall("grpc", healthService, "Check",
		[][2]string{{"x-caller", "wasm"}}, healthRequest(service), 5000,
		func(status types.GrpcStatus, size int) {
			if status != types.GrpcStatusOK {
				code, msg, err := proxywasm.GetGrpcStatus()
				s.finish("x-grpc-result", fmt.Sprintf("%s %d %q %v", status, code, msg, err))
				return
			}
			msg, err := proxywasm.GetGrpcCallResponseBody(0, size)
			if err != nil {
				s.finish("x-grpc-result", "body error "+err.Error())
				return
			}
			s.finish("x-grpc-result", "OK "+healthStatus(msg))
		})
	if err != nil {
		proxywasm.LogErrorf("dispatch: %v", err)
		_ = proxywasm.SendHttpResponse(500, nil, []byte("dispatch failed: "+err.Error()), -1)
	}
	return types.ActionPause
}

func pairs(md [][2]string, key string) string {
	for _, kv := range md {
		if kv[0] == key {
			return key + "=" + kv[1]
		}
	}
	return key + " missing"
}

func (s *stream) watch(service string) types.Action {
	var id uint32
	var err error
	id, err = proxywasm.OpenGrpcStream("grpc", healthService, "Watch", [][2]string{{"x-caller", "wasm"}},
		proxywasm.GrpcStreamCallbacks{
			OnInitialMetadata: func(int) {
				md, err := proxywasm.GetGrpcStreamInitialMetadata()
				s.events = append(s.events, fmt.Sprintf("initial(%s %v)", pairs(md, "x-watch"), err))
			},
			OnMessage: func(size int) {
				msg, err := proxywasm.GetGrpcStreamMessage(0, size)
				s.events = append(s.events, fmt.Sprintf("message(%s %v)", healthStatus(msg), err))
			},
			OnTrailingMetadata: func(int) {
				md, err := proxywasm.GetGrpcStreamTrailingMetadata()
				s.events = append(s.events, fmt.Sprintf("trailing(%s %v)", pairs(md, "x-trailer"), err))
			},
			OnClose: func(status types.GrpcStatus) {
				_, msg, _ := proxywasm.GetGrpcStatus()
				s.events = append(s.events, fmt.Sprintf("close(%s %s)", status, msg))
				s.finish("x-grpc-events", strings.Join(s.events, ";"))
			},
		})
	if err != nil {
		_ = proxywasm.SendHttpResponse(500, nil, []byte("open failed: "+err.Error()), -1)
		return types.ActionPause
	}
	// Server streaming: one request message, then half-close; a send after
	// the half-close is refused.
	if err := proxywasm.SendGrpcStreamMessage(id, healthRequest(service), false); err != nil {
		s.events = append(s.events, "send error "+err.Error())
	}
	if err := proxywasm.CloseGrpcStream(id); err != nil {
		s.events = append(s.events, "close error "+err.Error())
	}
	err = proxywasm.SendGrpcStreamMessage(id, healthRequest(service), false)
	s.events = append(s.events, fmt.Sprintf("send-after-close(%v)", err))
	return types.ActionPause
}
