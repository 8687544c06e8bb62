package config

import (
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/wasmproxy/wasmproxy/filters"
)

// The cors field of a virtual host or a route action: Envoy's older way
// to give the CORS filter its policy, still common in real configs. Envoy
// reads it when the route has no typed_per_filter_config for the filter.
// Its fields are the CORS filter's per-route CorsPolicy under the same
// names, so it is translated into that message and parsed by the filter,
// then handed to every CORS filter of the connection manager as if it
// were that filter's typed_per_filter_config entry.

// corsPolicyName is the CORS filter's per-route message.
const corsPolicyName protoreflect.FullName = "envoy.extensions.filters.http.cors.v3.CorsPolicy"

// corsFilterName is the CORS filter's own config message.
const corsFilterName = "envoy.extensions.filters.http.cors.v3.Cors"

// buildLegacyCors reads a route.v3.CorsPolicy at path into what the CORS
// filter's ParsePerRoute makes of the same policy; nil stays nil.
func buildLegacyCors(pb *routev3.CorsPolicy, path string) (any, error) {
	if pb == nil {
		return nil, nil
	}
	native := filters.LookupPerRoute(corsPolicyName)
	mt, err := protoregistry.GlobalTypes.FindMessageByName(corsPolicyName)
	if native == nil || err != nil {
		return nil, notSupported(path, "the CORS filter is not linked into this binary")
	}
	out := mt.New()
	var convErr error
	pb.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if out.Descriptor().Fields().ByName(fd.Name()) == nil {
			convErr = notSupported(joinPath(path, string(fd.Name())), "deprecated; use allow_origin_string_match and filter_enabled")
			return false
		}
		return true
	})
	if convErr != nil {
		return nil, convErr
	}
	// The shared fields have the same names and types: carry them over
	// by their JSON names.
	b, err := protojson.Marshal(pb)
	if err == nil {
		err = protojson.Unmarshal(b, out.Interface())
	}
	if err != nil {
		return nil, fieldError(path, "%v", err)
	}
	cfg, err := native.ParsePerRoute(out.Interface(), path)
	if err != nil {
		return nil, asConfigError(err, path)
	}
	return cfg, nil
}

// applyLegacyCors gives every CORS filter of h the cors policies of its
// virtual hosts and routes, where the level has no typed_per_filter_config
// entry of its own for that filter (which Envoy prefers).
func applyLegacyCors(h *HTTPConnectionManager) {
	for _, f := range h.Filters {
		if f.Native == nil || f.Native.Type != corsFilterName {
			continue
		}
		for _, vh := range h.Routes.VirtualHosts {
			vh.FilterOverrides = withLegacyCors(vh.FilterOverrides, f.Name, vh.Cors)
			for _, r := range vh.Routes {
				r.FilterOverrides = withLegacyCors(r.FilterOverrides, f.Name, r.Cors)
			}
		}
	}
}

func withLegacyCors(m map[string]FilterOverride, name string, policy any) map[string]FilterOverride {
	if policy == nil || m[name].Config != nil {
		return m
	}
	o := m[name]
	o.Config = policy
	return putOverride(m, name, o)
}
