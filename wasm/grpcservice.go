package wasm

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"

	"github.com/wasmproxy/wasmproxy/filter"
)

type grpcService struct {
	cluster   string
	authority string
	metadata  []filter.Pair
}

// parseGrpcService reads a serialized envoy.config.core.v3.GrpcService
// with an envoy_grpc target, as proxy_grpc_call accepts in place of a
// cluster name. google_grpc targets are not supported (ok with an empty
// cluster, so the caller answers PARSE_FAILURE... as no cluster).
func parseGrpcService(raw []byte) (grpcService, bool) {
	var svc corev3.GrpcService
	if len(raw) == 0 || proto.Unmarshal(raw, &svc) != nil {
		return grpcService{}, false
	}
	eg := svc.GetEnvoyGrpc()
	if eg == nil {
		if svc.GetGoogleGrpc() != nil {
			return grpcService{}, true
		}
		return grpcService{}, false
	}
	out := grpcService{cluster: eg.GetClusterName(), authority: eg.GetAuthority()}
	for _, h := range svc.GetInitialMetadata() {
		v := h.GetValue()
		if v == "" {
			v = string(h.GetRawValue())
		}
		out.metadata = append(out.metadata, filter.Pair{Key: h.GetKey(), Value: v})
	}
	return out, true
}
