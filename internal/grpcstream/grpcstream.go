// Package grpcstream is gRPC's framing over a cluster stream
// (filter.Upstreams.OpenStream): what Envoy calls an envoy_grpc client,
// so that a call reaches its control plane or service through the
// cluster — its endpoints, TLS and HTTP/2 settings — like any other
// upstream request. The native ext_authz filter and the xDS client use
// it; messages are opaque bytes (the callers marshal their protos).
package grpcstream

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/wasmproxy/wasmproxy/filter"
)

// MaxMessageBytes bounds one received message.
const MaxMessageBytes = 64 << 20

// Headers are a call's request headers: method is "/package.Service/Method".
func Headers(cluster, method string) []filter.Pair {
	return []filter.Pair{
		{Key: ":method", Value: "POST"}, {Key: ":path", Value: method}, {Key: ":authority", Value: cluster},
		{Key: ":scheme", Value: "http"}, {Key: "content-type", Value: "application/grpc"}, {Key: "te", Value: "trailers"},
	}
}

// StatusError is a call that ended with a grpc-status other than 0.
type StatusError struct {
	Code    string
	Message string
}

func (e *StatusError) Error() string { return fmt.Sprintf("grpc-status %s %s", e.Code, e.Message) }

// Stream is one call. Send and CloseSend may run beside Recv (one
// goroutine each); Close ends the call.
type Stream struct {
	s       filter.UpstreamStream
	started bool // the response headers were checked
}

// Open starts a call to cluster with headers (see Headers).
func Open(ctx context.Context, ups filter.Upstreams, cluster string, headers []filter.Pair) (*Stream, error) {
	if ups == nil {
		return nil, errors.New("no clusters to reach")
	}
	s, err := ups.OpenStream(ctx, cluster, headers)
	if err != nil {
		return nil, err
	}
	return &Stream{s: s}, nil
}

// Send writes one message.
func (s *Stream) Send(msg []byte) error {
	frame := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(frame[1:5], uint32(len(msg)))
	copy(frame[5:], msg)
	return s.s.Write(frame)
}

// CloseSend half-closes the call.
func (s *Stream) CloseSend() error { return s.s.CloseWrite() }

// Close cancels the call (a reset when it is still open).
func (s *Stream) Close() { s.s.Close() }

// Recv reads the next message; at the call's end it returns io.EOF for
// grpc-status 0, a *StatusError otherwise.
func (s *Stream) Recv() ([]byte, error) {
	if !s.started {
		rh, err := s.s.Response()
		if err != nil {
			return nil, err
		}
		hm := filter.NewHeaderMap(rh...)
		if st, _ := hm.Get(":status"); st != "200" {
			return nil, fmt.Errorf("upstream answered HTTP %s", st)
		}
		if err := status(hm); err != nil { // a trailers-only response
			return nil, err
		}
		s.started = true
	}
	var head [5]byte
	if _, err := io.ReadFull(s.s, head[:]); err != nil {
		if !errors.Is(err, io.EOF) {
			return nil, err
		}
		tm := filter.NewHeaderMap(s.s.Trailers()...)
		if _, ok := tm.Get("grpc-status"); !ok {
			return nil, errors.New("the call ended without grpc-status")
		}
		if err := status(tm); err != nil {
			return nil, err
		}
		return nil, io.EOF
	}
	n := binary.BigEndian.Uint32(head[1:])
	if n > MaxMessageBytes {
		return nil, fmt.Errorf("grpc message of %d bytes; at most %d are read", n, MaxMessageBytes)
	}
	if head[0] != 0 {
		return nil, errors.New("compressed grpc messages are not supported")
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(s.s, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// Unary makes one unary call: msg out, the one response message back.
func Unary(ctx context.Context, ups filter.Upstreams, cluster string, headers []filter.Pair, msg []byte) ([]byte, error) {
	s, err := Open(ctx, ups, cluster, headers)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	go func() {
		// Written beside the reads: a server may answer before it has
		// read the request. A failed write shows as a failed read; the
		// deferred Close ends a write still blocked.
		if s.Send(msg) == nil {
			_ = s.CloseSend()
		}
	}()
	var out []byte
	got := false
	for {
		m, err := s.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		out, got = m, true
	}
	if !got {
		return nil, errors.New("no response message")
	}
	return out, nil
}

func status(hm *filter.HeaderMap) error {
	v, ok := hm.Get("grpc-status")
	if !ok || v == "0" {
		return nil
	}
	m, _ := hm.Get("grpc-message")
	return &StatusError{Code: v, Message: m}
}
