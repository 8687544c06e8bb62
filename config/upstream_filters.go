package config

import (
	"fmt"

	"google.golang.org/protobuf/reflect/protoreflect"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/upstream_codec/v3" // its typed_config resolves
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// Upstream HTTP filters: a cluster's
// typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].http_filters,
// a filter chain Envoy runs once per upstream attempt, after the router
// picked the cluster and host, ending with the upstream codec filter
// (envoy.filters.http.upstream_codec), the only terminal filter allowed
// there. Only filters Envoy declares upstream-capable are accepted: Wasm
// and the native ones listed in upstreamNativeFilters.

// The upstream codec's canonical filter name and config message.
const (
	upstreamCodecName                           = "envoy.filters.http.upstream_codec"
	upstreamCodecTypeName protoreflect.FullName = "envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"
)

// upstreamNativeFilters are the native filters (package filters) that
// Envoy registers as upstream filters too (DualFactoryBase) and that
// wasmproxy runs there. downstreamOnlyFilters are those Envoy registers
// for the connection manager only: refused as "not an upstream filter".
// Any other native filter is "not supported yet" as an upstream filter
// (Envoy runs some of them upstream, lua for one).
var (
	upstreamNativeFilters = map[string]bool{
		"envoy.extensions.filters.http.header_mutation.v3.HeaderMutation": true,
		"envoy.extensions.filters.http.buffer.v3.Buffer":                  true,
	}
	downstreamOnlyFilters = map[string]bool{
		"envoy.extensions.filters.http.cors.v3.Cors":                      true,
		"envoy.extensions.filters.http.fault.v3.HTTPFault":                true,
		"envoy.extensions.filters.http.rbac.v3.RBAC":                      true,
		"envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit": true,
	}
)

// clusterUpstreamFilters reads the upstream HTTP filters of pb's
// HttpProtocolOptions (nil when there are none). clusterHTTP2 has
// already checked the option keys and payload types.
func clusterUpstreamFilters(pb *clusterv3.Cluster, path string) ([]*HTTPFilter, error) {
	optionsPath := joinPath(path, "typed_extension_protocol_options")
	for key, a := range pb.GetTypedExtensionProtocolOptions() {
		if !httpProtocolOptionsKeys[key] {
			continue
		}
		payload, payloadPath, err := unpackAny(a, keyPath(optionsPath, key))
		if err != nil {
			return nil, err
		}
		opts, ok := payload.(*upstreamhttpv3.HttpProtocolOptions)
		if !ok || len(opts.GetHttpFilters()) == 0 {
			continue
		}
		return buildUpstreamFilters(opts, pb.GetName(), joinPath(payloadPath, "http_filters"))
	}
	return nil, nil
}

func buildUpstreamFilters(opts *upstreamhttpv3.HttpProtocolOptions, cluster, path string) ([]*HTTPFilter, error) {
	pbs := opts.GetHttpFilters()
	var out []*HTTPFilter
	for i, pb := range pbs {
		fPath := indexPath(path, i)
		last := i == len(pbs)-1
		if isUpstreamCodec(pb.GetName(), pb.GetTypedConfig().GetTypeUrl()) {
			if !last {
				return nil, fieldError(fPath, "the terminal filter %s must be the last filter of the upstream HTTP filter chain", pb.GetName())
			}
			if pb.GetTypedConfig().GetTypeUrl() != "" {
				if _, _, err := unpackAny(pb.GetTypedConfig(), joinPath(fPath, "typed_config")); err != nil {
					return nil, err
				}
			}
			continue
		}
		if last {
			return nil, fieldError(fPath, "the upstream HTTP filter chain must end with %s (type envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec); %q is not a terminal filter", upstreamCodecName, pb.GetName())
		}
		if pb.GetDisabled() {
			// Envoy refuses it too: upstream filters have no per-route
			// configuration that could enable them.
			return nil, notSupported(joinPath(fPath, "disabled"), "disabled upstream HTTP filters")
		}
		f, err := buildHTTPFilter(pb, fPath)
		if err != nil {
			return nil, err
		}
		switch {
		case f.Router:
			return nil, fieldError(fPath, "%s is not an upstream filter (the router is the downstream chain's terminal filter)", f.Name)
		case f.Wasm != nil:
			if len(f.Wasm.RouteConfigurations) > 0 {
				return nil, notSupported(fPath, "per-route Wasm configurations in an upstream filter")
			}
		case f.Native != nil:
			switch {
			case downstreamOnlyFilters[f.Native.Type]:
				return nil, fieldError(fPath, "%s (%s) is not an upstream filter", f.Name, f.Native.Type)
			case !upstreamNativeFilters[f.Native.Type]:
				return nil, notSupported(fPath, fmt.Sprintf("%s (%s) as an upstream filter", f.Name, f.Native.Type))
			}
			f.Native.StatPrefix = "cluster." + cluster + "."
		default:
			return nil, notSupported(fPath, fmt.Sprintf("upstream HTTP filter %q", f.Name))
		}
		out = append(out, f)
	}
	return out, nil
}

// isUpstreamCodec: the entry is the upstream codec, by type or, without
// typed_config, by name.
func isUpstreamCodec(name, typeURL string) bool {
	if typeURL != "" {
		return typeURL == "type.googleapis.com/"+string(upstreamCodecTypeName)
	}
	return name == upstreamCodecName
}
