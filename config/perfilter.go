package config

import (
	"errors"
	"fmt"
	"sort"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/wasmproxy/wasmproxy/filters"
)

// filterConfigName is the wrapper Envoy accepts as a value of
// typed_per_filter_config to add flags to a filter's per-route entry.
const filterConfigName = "envoy.config.route.v3.FilterConfig"

// FilterOverride is one typed_per_filter_config entry of a route or a
// virtual host, keyed there by the HTTP filter's name (http_filters[].name).
// Disabled is set by an envoy.config.route.v3.FilterConfig: true with
// disabled: true, false with an empty config (config: {}), which enables
// a filter that http_filters disables by default. Config is a native
// filter's per-route config as its ParsePerRoute made it (package
// filters), from the entry or a FilterConfig's config.
type FilterOverride struct {
	Disabled *bool `json:"disabled,omitempty"`
	Config   any   `json:"config,omitempty"`
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
		if o := r.FilterOverrides[f.Name]; o.Disabled != nil {
			return *o.Disabled
		}
	}
	if vh != nil {
		if o := vh.FilterOverrides[f.Name]; o.Disabled != nil {
			return *o.Disabled
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
// The per-route types are those of the native filters (package filters);
// the key is not checked against http_filters, as in Envoy.
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
				out = putOverride(out, name, FilterOverride{Disabled: &overrideDisabled})
				continue
			}
			if fc.GetConfig() == nil {
				return nil, fieldError(joinPath(entryPath, "config"), "missing: a FilterConfig needs disabled: true or a config (config: {} enables the filter)")
			}
			if fc.GetConfig().GetTypeUrl() == "" {
				out = putOverride(out, name, FilterOverride{Disabled: &overrideEnabled})
				continue
			}
			optional = fc.GetIsOptional()
			payload = fc.GetConfig()
			entryPath = joinPath(entryPath, "config")
		}
		if payload.GetTypeUrl() == "" {
			return nil, fieldError(entryPath, "empty per-filter config for filter %q (wrap it in %s to enable or disable the filter)", name, filterConfigName)
		}
		typeName := protoreflect.FullName(typeNameOfURL(payload.GetTypeUrl()))
		if typeName == wasmFilterTypeName {
			rc, err := buildWasmRouteConfig(payload, entryPath)
			if err != nil {
				return nil, err
			}
			out = putOverride(out, name, FilterOverride{Config: rc})
			continue
		}
		native := filters.LookupPerRoute(typeName)
		if native == nil {
			if optional {
				continue // Envoy ignores an optional entry it cannot use
			}
			return nil, notSupported(entryPath, fmt.Sprintf("per-route config %q for filter %q (no filter here takes it; mark the entry is_optional in a %s to ignore it, as Envoy would)", typeName, name, filterConfigName))
		}
		msg, msgPath, err := unpackAny(payload, entryPath)
		if err != nil {
			return nil, err
		}
		cfg, err := native.ParsePerRoute(msg, msgPath)
		if err != nil {
			return nil, asConfigError(err, msgPath)
		}
		out = putOverride(out, name, FilterOverride{Config: cfg})
	}
	return out, nil
}

// The two values of FilterOverride.Disabled, shared (read-only).
var overrideDisabled, overrideEnabled = true, false

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

// asConfigError keeps a native filter's config error as it is, or makes
// any other error one at path.
func asConfigError(err error, path string) error {
	var ce *Error
	if errors.As(err, &ce) {
		return err
	}
	return fieldError(path, "%v", err)
}

// FieldError is an invalid value at the field path: for native filters'
// parsers (package filters), so their errors read as the config's own.
func FieldError(path, format string, args ...any) error {
	return fieldError(path, format, args...)
}

// NotSupportedError is a valid Envoy field or value at path that
// wasmproxy does not implement (errors.Is ErrNotSupported); detail may
// be empty.
func NotSupportedError(path, detail string) error {
	return notSupported(path, detail)
}

// JoinPath and IndexPath extend a field path: path.field, path[i].
func JoinPath(path, field string) string  { return joinPath(path, field) }
func IndexPath(path string, i int) string { return indexPath(path, i) }

// BuildStringMatcher reads a type.matcher.v3.StringMatcher into the
// model's one matcher (match.go).
func BuildStringMatcher(pb *matcherv3.StringMatcher, path string) (StringMatcher, error) {
	return buildStringMatcher(pb, path)
}

// BuildHeaderMatcher reads a route.v3.HeaderMatcher into the model's
// header matcher (match.go), for native filters that match headers
// (rbac, fault).
func BuildHeaderMatcher(pb *routev3.HeaderMatcher, path string) (HeaderMatcher, error) {
	return buildHeaderMatcher(pb, path)
}

// BuildRegexRewrite reads a type.matcher.v3.RegexMatchAndSubstitute (the
// same checks as a route's regex_rewrite).
func BuildRegexRewrite(pb *matcherv3.RegexMatchAndSubstitute, path string) (*RegexRewrite, error) {
	return buildRegexRewrite(pb, path)
}
