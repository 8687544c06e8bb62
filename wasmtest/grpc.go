package wasmtest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wasmproxy/wasmproxy/filter"
)

// GrpcHandler serves one gRPC call or stream the plugin opened
// (proxy_grpc_call, proxy_grpc_stream), on a goroutine of its own, as a
// grpc-go handler does: it reads the plugin's messages with Recv and
// answers with SendHeader, Send and Finish. Returning without Finish ends
// the call with status OK.
type GrpcHandler func(call *GrpcCall)

// GrpcCluster declares an upstream cluster that serves the plugin's gRPC
// calls and streams with handler. gRPC to an undeclared cluster fails
// with BAD_ARGUMENT, as in Envoy. The replies reach the plugin
// asynchronously: wait for their effect with HTTPStream.AwaitResumed or
// GrpcCall.Done.
func GrpcCluster(name string, handler GrpcHandler) Option {
	return func(o *settings) {
		if o.grpcClusters == nil {
			o.grpcClusters = map[string]GrpcHandler{}
		}
		o.grpcClusters[name] = handler
	}
}

// GrpcCall is a gRPC call or stream as the cluster received it.
type GrpcCall struct {
	Cluster, Service, Method string
	// Metadata is the initial metadata the plugin sent (pseudo-headers,
	// content-type, te and grpc-timeout left out).
	Metadata *filter.HeaderMap
	// Timeout is the deadline the plugin asked for; 0 means none.
	Timeout time.Duration

	s *grpcStream
}

func (c *GrpcCall) String() string {
	return fmt.Sprintf("/%s/%s on cluster %q", c.Service, c.Method, c.Cluster)
}

// Recv returns the plugin's next message; ok is false once the plugin
// has closed its side (always after the one message of a unary call) or
// cancelled the stream.
func (c *GrpcCall) Recv() (msg []byte, ok bool) {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.inbox) == 0 && !s.sendClosed && !s.cancelled {
		s.cond.Wait()
	}
	if len(s.inbox) == 0 {
		return nil, false
	}
	msg = s.inbox[0]
	s.inbox = s.inbox[1:]
	return msg, true
}

// SendHeader sends the initial metadata (once; Send and Finish send an
// empty one if it was not sent).
func (c *GrpcCall) SendHeader(md Headers) { c.s.sendHeader(md) }

// Send sends one response message. It is dropped once the plugin has
// cancelled the stream or after Finish.
func (c *GrpcCall) Send(msg []byte) {
	s := c.s
	s.sendHeader(nil)
	frame := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(frame[1:], uint32(len(msg)))
	copy(frame[5:], msg)
	_, _ = s.respW.Write(frame) // an error means cancelled or finished
}

// Finish ends the call with a gRPC status (0 is OK), its message and
// trailing metadata. Finishing before anything was sent answers
// "trailers-only", as gRPC servers do for an immediate error.
func (c *GrpcCall) Finish(code int, message string, trailers Headers) {
	s := c.s
	s.mu.Lock()
	if s.finished {
		s.mu.Unlock()
		return
	}
	s.finished = true
	status := []filter.Pair{{Key: "grpc-status", Value: strconv.Itoa(code)}}
	if message != "" {
		status = append(status, filter.Pair{Key: "grpc-message", Value: message})
	}
	for _, t := range trailers {
		status = append(status, filter.Pair{Key: strings.ToLower(t.Key), Value: t.Value})
	}
	trailersOnly := !s.headerSent
	s.trailers = status
	s.mu.Unlock()
	if trailersOnly {
		s.sendHeader(Headers(status)) // grpc-status among the headers
	}
	_ = s.respW.Close()
}

// Done is closed when the call has ended: finished by the handler, or
// cancelled by the plugin (proxy_grpc_cancel, a closed plugin).
func (c *GrpcCall) Done() <-chan struct{} { return c.s.done }

// GrpcCalls lists every gRPC call and stream the plugin opened so far, in
// order.
func (p *Plugin) GrpcCalls() []*GrpcCall {
	p.grpcMu.Lock()
	defer p.grpcMu.Unlock()
	return append([]*GrpcCall(nil), p.grpcCalls...)
}

// grpcStream is the cluster side of one call, as filter.UpstreamStream:
// the host writes framed request messages and reads framed responses.
type grpcStream struct {
	mu         sync.Mutex
	cond       *sync.Cond
	partial    []byte   // request bytes not yet a whole frame
	inbox      [][]byte // request messages not yet received
	sendClosed bool     // the plugin half-closed
	cancelled  bool     // the plugin (or the test's end) reset the stream
	headerSent bool
	finished   bool
	header     chan []filter.Pair // the response headers, once
	trailers   []filter.Pair
	respR      *io.PipeReader
	respW      *io.PipeWriter
	done       chan struct{}
	doneOnce   sync.Once
}

func (s *grpcStream) sendHeader(md Headers) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.headerSent {
		return
	}
	s.headerSent = true
	h := []filter.Pair{{Key: ":status", Value: "200"}, {Key: "content-type", Value: "application/grpc"}}
	for _, p := range md {
		h = append(h, filter.Pair{Key: strings.ToLower(p.Key), Value: p.Value})
	}
	s.header <- h
}

func (s *grpcStream) Write(b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancelled {
		return errors.New("wasmtest: gRPC stream cancelled")
	}
	s.partial = append(s.partial, b...)
	for len(s.partial) >= 5 {
		n := int(binary.BigEndian.Uint32(s.partial[1:5]))
		if len(s.partial) < 5+n {
			break
		}
		s.inbox = append(s.inbox, append([]byte(nil), s.partial[5:5+n]...))
		s.partial = s.partial[5+n:]
	}
	s.cond.Broadcast()
	return nil
}

func (s *grpcStream) CloseWrite() error {
	s.mu.Lock()
	s.sendClosed = true
	s.cond.Broadcast()
	s.mu.Unlock()
	return nil
}

func (s *grpcStream) Response() ([]filter.Pair, error) {
	select {
	case h := <-s.header:
		return h, nil
	case <-s.done:
		return nil, errors.New("wasmtest: gRPC stream ended before its response headers")
	}
}

func (s *grpcStream) Read(b []byte) (int, error) { return s.respR.Read(b) }

func (s *grpcStream) Trailers() []filter.Pair {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.trailers
}

// Close is the host's reset (proxy_grpc_cancel, the call's end): the
// handler's Recv returns, its later Sends are dropped.
func (s *grpcStream) Close() {
	s.mu.Lock()
	s.cancelled = true
	s.cond.Broadcast()
	s.mu.Unlock()
	_ = s.respR.CloseWithError(errors.New("wasmtest: gRPC stream cancelled"))
	s.end()
}

func (s *grpcStream) end() { s.doneOnce.Do(func() { close(s.done) }) }

// openGrpc starts the handler of a gRPC call to cluster (the host's
// Upstreams.OpenStream).
func (p *Plugin) openGrpc(ctx context.Context, cluster string, headers []filter.Pair, handler GrpcHandler) filter.UpstreamStream {
	s := &grpcStream{header: make(chan []filter.Pair, 1), done: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	s.respR, s.respW = io.Pipe()
	call := &GrpcCall{Cluster: cluster, Metadata: filter.NewHeaderMap(), s: s}
	for _, h := range headers {
		switch h.Key {
		case ":path":
			svc, method, _ := strings.Cut(strings.TrimPrefix(h.Value, "/"), "/")
			call.Service, call.Method = svc, method
		case "grpc-timeout":
			if ms, err := strconv.Atoi(strings.TrimSuffix(h.Value, "m")); err == nil {
				call.Timeout = time.Duration(ms) * time.Millisecond
			}
		case ":method", ":scheme", ":authority", "content-type", "te":
		default:
			call.Metadata.Add(h.Key, h.Value)
		}
	}
	p.grpcMu.Lock()
	p.grpcCalls = append(p.grpcCalls, call)
	p.grpcMu.Unlock()
	go func() {
		<-ctx.Done() // the call's deadline, or the host closing
		s.Close()
	}()
	go func() {
		defer s.end()
		defer func() {
			if r := recover(); r != nil {
				call.Finish(13, fmt.Sprintf("wasmtest: the gRPC handler of %s panicked: %v", call, r), nil)
				return
			}
			call.Finish(0, "", nil)
		}()
		handler(call)
	}()
	return s
}
