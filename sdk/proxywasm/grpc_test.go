package proxywasm

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

// grpcEvent is one host callback in a gRPC test sequence.
type grpcEvent struct {
	kind  string // "initial", "receive", "trailing", "close"
	token uint32
	n     uint32 // size, element count or status
}

func deliver(e grpcEvent) {
	switch e.kind {
	case "initial":
		onGrpcReceiveInitialMetadata(1, e.token, e.n)
	case "receive":
		onGrpcReceive(1, e.token, e.n)
	case "trailing":
		onGrpcReceiveTrailingMetadata(1, e.token, e.n)
	case "close":
		onGrpcClose(1, e.token, e.n)
	}
}

// TestGrpcCallouts replays host callback sequences for a call and a
// stream registered by stream context 2 of root 1, and checks which SDK
// callbacks run, in order, with the caller as the active context.
func TestGrpcCallouts(t *testing.T) {
	tests := []struct {
		name    string
		stream  bool
		cancel  bool // CancelGrpcCall/CancelGrpcStream before the events
		deleted bool // the caller is deleted before the events
		events  []grpcEvent
		want    []string
	}{
		{
			name:   "call answered: Envoy delivers the message only",
			events: []grpcEvent{{"receive", 5, 12}},
			want:   []string{"call OK 12 @2"},
		},
		{
			name: "call answered: metadata and close around the message are ignored",
			events: []grpcEvent{{"initial", 5, 2}, {"receive", 5, 12}, {"trailing", 5, 1}, {"close", 5, 0},
				{"receive", 5, 12}},
			want: []string{"call OK 12 @2"},
		},
		{
			name:   "call failed: close only",
			events: []grpcEvent{{"close", 5, uint32(types.GrpcStatusUnavailable)}},
			want:   []string{"call Unavailable 0 @2"},
		},
		{
			name:   "call cancelled: nothing",
			cancel: true,
			events: []grpcEvent{{"receive", 5, 12}, {"close", 5, 1}},
		},
		{
			name:    "caller deleted: nothing",
			deleted: true,
			events:  []grpcEvent{{"receive", 5, 12}},
		},
		{
			name:   "stream: every event in order, nothing after close",
			stream: true,
			events: []grpcEvent{{"initial", 6, 2}, {"receive", 6, 3}, {"receive", 6, 4}, {"trailing", 6, 1},
				{"close", 6, 0}, {"receive", 6, 9}, {"close", 6, 0}},
			want: []string{"initial 2 @2", "message 3 @2", "message 4 @2", "trailing 1 @2", "close OK @2"},
		},
		{
			name:   "stream closed by the server with an error",
			stream: true,
			events: []grpcEvent{{"close", 6, uint32(types.GrpcStatusPermissionDenied)}},
			want:   []string{"close PermissionDenied @2"},
		},
		{
			name:   "stream cancelled: nothing",
			stream: true,
			cancel: true,
			events: []grpcEvent{{"initial", 6, 2}, {"receive", 6, 3}, {"close", 6, 0}},
		},
		{
			name:   "events for unknown tokens are ignored",
			events: []grpcEvent{{"receive", 77, 1}, {"close", 78, 0}, {"initial", 79, 1}, {"trailing", 80, 1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reset(t)
			onContextCreate(1, 0)
			onContextCreate(2, 1)
			onRequestHeaders(2, 0, true) // makes 2 the active context
			var got []string
			add := func(format string, args ...any) {
				got = append(got, fmt.Sprintf(format, args...)+fmt.Sprintf(" @%d", state.active))
			}
			token := uint32(5)
			if tt.stream {
				token = 6
				state.registerGrpc(token, grpcCallout{stream: &GrpcStreamCallbacks{
					OnInitialMetadata:  func(n int) { add("initial %d", n) },
					OnMessage:          func(n int) { add("message %d", n) },
					OnTrailingMetadata: func(n int) { add("trailing %d", n) },
					OnClose:            func(s types.GrpcStatus) { add("close %s", s) },
				}})
			} else {
				state.registerGrpc(token, grpcCallout{call: func(s types.GrpcStatus, n int) { add("call %s %d", s, n) }})
			}
			if tt.cancel {
				var err error
				if tt.stream {
					err = CancelGrpcStream(token)
				} else {
					err = CancelGrpcCall(token)
				}
				// Natively the host call itself is unimplemented; the SDK
				// has forgotten the callout either way.
				if !errors.Is(err, types.ErrorUnimplemented) {
					t.Fatalf("cancel: %v", err)
				}
			}
			if tt.deleted {
				onDelete(2)
			}
			for _, e := range tt.events {
				deliver(e)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("callbacks %q, want %q", got, tt.want)
			}
			if n := len(state.roots[1].grpc); n != 0 && (tt.cancel || tt.deleted || tt.want != nil) {
				t.Errorf("%d callouts still registered", n)
			}
		})
	}
}

func TestGrpcOutsideContext(t *testing.T) {
	reset(t)
	if _, err := DispatchGrpcCall("c", "s", "m", nil, nil, 0, nil); err == nil {
		t.Error("DispatchGrpcCall: expected an error outside any context")
	}
	if _, err := OpenGrpcStream("c", "s", "m", nil, GrpcStreamCallbacks{}); err == nil {
		t.Error("OpenGrpcStream: expected an error outside any context")
	}
}

func TestGrpcNativeHostCalls(t *testing.T) {
	reset(t)
	onContextCreate(1, 0)
	onConfigure(1, 0) // makes 1 the active context
	if _, err := DispatchGrpcCall("c", "s", "m", [][2]string{{"k", "v"}}, []byte{1}, 10, nil); !errors.Is(err, types.ErrorUnimplemented) {
		t.Errorf("DispatchGrpcCall: %v", err)
	}
	if _, err := OpenGrpcStream("c", "s", "m", nil, GrpcStreamCallbacks{}); !errors.Is(err, types.ErrorUnimplemented) {
		t.Errorf("OpenGrpcStream: %v", err)
	}
	if len(state.roots[1].grpc) != 0 {
		t.Error("a failed dispatch left a registered callout")
	}
	for name, err := range map[string]error{
		"SendGrpcStreamMessage": SendGrpcStreamMessage(6, []byte("x"), true),
		"CloseGrpcStream":       CloseGrpcStream(6),
	} {
		if !errors.Is(err, types.ErrorUnimplemented) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, _, err := GetGrpcStatus(); !errors.Is(err, types.ErrorUnimplemented) {
		t.Errorf("GetGrpcStatus: %v", err)
	}
	if _, err := GetLogLevel(); !errors.Is(err, types.ErrorUnimplemented) {
		t.Errorf("GetLogLevel: %v", err)
	}
}
