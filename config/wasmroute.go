package config

import (
	"fmt"
	"sort"

	httpwasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// Per-route plugin configuration, which Envoy does not have (envoy
// #16651, #26440): a route or virtual host gives a Wasm HTTP filter
// another plugin configuration. It is written as a Wasm filter config
// holding only config.configuration, best wrapped in a FilterConfig with
// is_optional: true, so that Envoy, whose Wasm filter takes no per-route
// config, still loads the file and ignores the entry:
//
//	typed_per_filter_config:
//	  json-validation:
//	    "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig
//	    is_optional: true
//	    config:
//	      "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
//	      config:
//	        configuration:
//	          "@type": type.googleapis.com/google.protobuf.StringValue
//	          value: '{"requiredKeys": ["id"]}'
//
// Each distinct configuration of a filter becomes one more root context
// of the filter's plugin in the same VM (no extra instance); a stream
// uses the most specific one (route, then virtual host, then the
// filter's own).

// wasmFilterTypeName is the HTTP Wasm filter's config message.
const wasmFilterTypeName protoreflect.FullName = "envoy.extensions.filters.http.wasm.v3.Wasm"

// WasmRouteConfig is a route's or virtual host's plugin configuration for
// one Wasm HTTP filter (FilterOverride.Config).
type WasmRouteConfig struct {
	// Configuration is the bytes the plugin reads with
	// proxy_get_plugin_configuration, encoded as the filter's own
	// config.configuration is.
	Configuration []byte `json:"configuration"`
}

// buildWasmRouteConfig reads a per-route Wasm entry at path: only
// config.configuration may be set, since the VM, the code and the
// plugin's identity are the filter's.
func buildWasmRouteConfig(a *anypb.Any, path string) (*WasmRouteConfig, error) {
	var w httpwasmv3.Wasm
	if err := a.UnmarshalTo(&w); err != nil {
		return nil, fieldError(path, "cannot decode %s: %v", wasmFilterTypeName, err)
	}
	pc := w.GetConfig()
	if pc == nil || pc.GetConfiguration() == nil {
		return nil, fieldError(joinPath(path, "config.configuration"), "missing: a per-route Wasm config gives the plugin another configuration")
	}
	rest := proto.Clone(pc)
	rest.ProtoReflect().Clear(rest.ProtoReflect().Descriptor().Fields().ByName("configuration"))
	var other string
	rest.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		other = string(fd.Name())
		return false
	})
	if other != "" {
		return nil, fieldError(joinPath(path, "config."+other), "a per-route Wasm config takes only config.configuration; the VM, code and plugin identity are the filter's in http_filters")
	}
	b, err := configurationBytes(pc.GetConfiguration(), joinPath(path, "config.configuration"))
	if err != nil {
		return nil, err
	}
	return &WasmRouteConfig{Configuration: b}, nil
}

// CollectWasmRouteConfigs gives each Wasm HTTP filter of h the distinct
// per-route configurations its routes and virtual hosts name for it
// (WasmPlugin.RouteConfigurations), so that the filter is loaded with a
// root context for each and a change of one reloads the filter. The
// config build calls it; so does whoever inserts Wasm filters into a
// built model afterwards (Istio WasmPlugins, whose per-route entries an
// EnvoyFilter route patch carries), which recollects every filter.
//
// An entry with a Wasm config for a filter of h that is not a Wasm
// filter is an error (path is h's, for it). One naming no filter of h
// is left alone, as Envoy leaves per-route config for an absent filter;
// UnattachedWasmRouteConfigs lists those.
func CollectWasmRouteConfigs(h *HTTPConnectionManager, path string) error {
	return collectWasmRouteConfigs(h, path)
}

// UnattachedWasmRouteConfigs names the per-route Wasm configurations of
// h (as "<virtual host>[/<route>]: <filter>") whose filter name is no
// HTTP filter of h, so that a caller can warn about them.
func UnattachedWasmRouteConfigs(h *HTTPConnectionManager) []string {
	byName := map[string]bool{}
	for _, f := range h.Filters {
		byName[f.Name] = true
	}
	var out []string
	if h.Routes == nil {
		return nil
	}
	note := func(overrides map[string]FilterOverride, where string) {
		for name, o := range overrides {
			if _, ok := o.Config.(*WasmRouteConfig); ok && !byName[name] {
				out = append(out, where+": "+name)
			}
		}
	}
	for _, vh := range h.Routes.VirtualHosts {
		note(vh.FilterOverrides, vh.Name)
		for j, r := range vh.Routes {
			name := r.Name
			if name == "" {
				name = fmt.Sprintf("routes[%d]", j)
			}
			note(r.FilterOverrides, vh.Name+"/"+name)
		}
	}
	sort.Strings(out)
	return out
}

func collectWasmRouteConfigs(h *HTTPConnectionManager, path string) error {
	if h.Routes == nil {
		return nil
	}
	byName := map[string]*HTTPFilter{}
	for _, f := range h.Filters {
		byName[f.Name] = f
		if f.Wasm != nil {
			f.Wasm.RouteConfigurations = nil // recollected from the routes
		}
	}
	seen := map[*HTTPFilter]map[string]bool{}
	visit := func(overrides map[string]FilterOverride, where string) error {
		names := make([]string, 0, len(overrides))
		for name := range overrides {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			rc, ok := overrides[name].Config.(*WasmRouteConfig)
			if !ok {
				continue
			}
			f := byName[name]
			if f == nil {
				continue
			}
			if f.Wasm == nil {
				return fieldError(fmt.Sprintf("%s.typed_per_filter_config[%q]", where, name), "a per-route Wasm configuration for %q, which is not a Wasm HTTP filter of this connection manager", name)
			}
			if seen[f] == nil {
				seen[f] = map[string]bool{}
			}
			if !seen[f][string(rc.Configuration)] {
				seen[f][string(rc.Configuration)] = true
				f.Wasm.RouteConfigurations = append(f.Wasm.RouteConfigurations, rc.Configuration)
			}
		}
		return nil
	}
	rcPath := joinPath(path, "route_config")
	for i, vh := range h.Routes.VirtualHosts {
		vhPath := indexPath(joinPath(rcPath, "virtual_hosts"), i)
		if err := visit(vh.FilterOverrides, vhPath); err != nil {
			return err
		}
		for j, r := range vh.Routes {
			if err := visit(r.FilterOverrides, indexPath(joinPath(vhPath, "routes"), j)); err != nil {
				return err
			}
		}
	}
	for _, f := range h.Filters {
		if f.Wasm != nil {
			sort.Slice(f.Wasm.RouteConfigurations, func(i, j int) bool {
				return string(f.Wasm.RouteConfigurations[i]) < string(f.Wasm.RouteConfigurations[j])
			})
		}
	}
	return nil
}
