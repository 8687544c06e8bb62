package config

import (
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

// buildRouteStreamTimeouts reads a route's idle_timeout and
// max_stream_duration; each stays nil when unset, so the connection
// manager's value applies (proxy/route_timeouts.go).
func buildRouteStreamTimeouts(pb *routev3.RouteAction, path string) (*Duration, *RouteMaxStreamDuration, error) {
	opt := func(d *durationpb.Duration, at string) (*Duration, error) {
		if d == nil {
			return nil, nil
		}
		v, err := nonNegative(d, at)
		if err != nil {
			return nil, err
		}
		return &v, nil
	}
	idle, err := opt(pb.GetIdleTimeout(), joinPath(path, "idle_timeout"))
	if err != nil {
		return nil, nil, err
	}
	msd := pb.GetMaxStreamDuration()
	if msd == nil {
		return idle, nil, nil
	}
	at := joinPath(path, "max_stream_duration")
	m := &RouteMaxStreamDuration{}
	if m.MaxStreamDuration, err = opt(msd.GetMaxStreamDuration(), joinPath(at, "max_stream_duration")); err != nil {
		return nil, nil, err
	}
	if m.GrpcTimeoutHeaderMax, err = opt(msd.GetGrpcTimeoutHeaderMax(), joinPath(at, "grpc_timeout_header_max")); err != nil {
		return nil, nil, err
	}
	if m.GrpcTimeoutHeaderOffset, err = opt(msd.GetGrpcTimeoutHeaderOffset(), joinPath(at, "grpc_timeout_header_offset")); err != nil {
		return nil, nil, err
	}
	return idle, m, nil
}
