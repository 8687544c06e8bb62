package config

import (
	"fmt"
	"sort"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// filterConfigName is the wrapper Envoy accepts as a value of
// typed_per_filter_config to add flags to a filter's per-route entry.
const filterConfigName = "envoy.config.route.v3.FilterConfig"

// FilterOverride is one typed_per_filter_config entry of a route or a
// virtual host, keyed there by the HTTP filter's name (http_filters[].name).
// Only the entries that decide whether the filter runs are kept: an
// envoy.config.route.v3.FilterConfig with disabled: true (Disabled), or
// with an empty config (config: {}), which enables a filter that
// http_filters disables by default.
type FilterOverride struct {
	Disabled bool `json:"disabled"`
}

// FilterDisabled reports whether the HTTP filter f runs on a stream whose
// initial route is r in virtual host vh (either may be nil: no route
// matched). As Envoy does when it builds a stream's filter chain, the
// most specific typed_per_filter_config entry that decides wins (route,
// then virtual host); without one, f's own http_filters disabled flag.
// The decision is taken once, when the chain is built: a later route
// change (clear_route_cache) does not add or remove filters.
func FilterDisabled(f *HTTPFilter, vh *VirtualHost, r *Route) bool {
	if r != nil {
		if o, ok := r.FilterOverrides[f.Name]; ok {
			return o.Disabled
		}
	}
	if vh != nil {
		if o, ok := vh.FilterOverrides[f.Name]; ok {
			return o.Disabled
		}
	}
	return f.Disabled
}

// buildFilterOverrides reads a route's or virtual host's
// typed_per_filter_config (path is that field). Envoy's rules
// (source/common/router/per_filter_config.cc, restated):
//   - a FilterConfig with disabled: true disables the filter there, and
//     its config is ignored;
//   - a FilterConfig without config is an error; with an empty config
//     ({}), it enables the filter there;
//   - any other payload (a filter's own per-route config, or a
//     FilterConfig's config) must be a type some filter takes per route,
//     or the entry must be marked is_optional, which drops it.
//
// No filter wasmproxy runs takes a per-route config yet, so a payload is
// accepted only when optional.
func buildFilterOverrides(m map[string]*anypb.Any, path string) (map[string]FilterOverride, error) {
	if len(m) == 0 {
		return nil, nil
	}
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	sort.Strings(names) // the first error is the same on every run
	var out map[string]FilterOverride
	for _, name := range names {
		a := m[name]
		entryPath := fmt.Sprintf("%s[%q]", path, name)
		if name == "" {
			return nil, fieldError(entryPath, "the key must name an HTTP filter")
		}
		optional := false
		payload := a
		if a.GetTypeUrl() != "" && typeNameOfURL(a.GetTypeUrl()) == filterConfigName {
			var fc routev3.FilterConfig
			if err := a.UnmarshalTo(&fc); err != nil {
				return nil, fieldError(entryPath, "cannot decode %s: %v", filterConfigName, err)
			}
			if fc.GetDisabled() {
				out = putOverride(out, name, FilterOverride{Disabled: true})
				continue
			}
			if fc.GetConfig() == nil {
				return nil, fieldError(joinPath(entryPath, "config"), "missing: a FilterConfig needs disabled: true or a config (config: {} enables the filter)")
			}
			if fc.GetConfig().GetTypeUrl() == "" {
				out = putOverride(out, name, FilterOverride{Disabled: false})
				continue
			}
			optional = fc.GetIsOptional()
			payload = fc.GetConfig()
			entryPath = joinPath(entryPath, "config")
		}
		if optional {
			continue // Envoy ignores an optional entry it cannot use
		}
		if payload.GetTypeUrl() == "" {
			return nil, fieldError(entryPath, "empty per-filter config for filter %q (wrap it in %s to enable or disable the filter)", name, filterConfigName)
		}
		return nil, notSupported(entryPath, fmt.Sprintf("per-route config %q for filter %q (no filter here takes a per-route config; mark the entry is_optional in a %s to ignore it, as Envoy would)", typeNameOfURL(payload.GetTypeUrl()), name, filterConfigName))
	}
	return out, nil
}

func putOverride(m map[string]FilterOverride, name string, o FilterOverride) map[string]FilterOverride {
	if m == nil {
		m = map[string]FilterOverride{}
	}
	m[name] = o
	return m
}

// typeNameOfURL is the message name of a type URL: what follows its last
// slash.
func typeNameOfURL(url string) string {
	for i := len(url) - 1; i >= 0; i-- {
		if url[i] == '/' {
			return url[i+1:]
		}
	}
	return url
}
