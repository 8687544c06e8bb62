package wasmproxy

import (
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/filters"
	"github.com/wasmproxy/wasmproxy/xds"
)

// inlineECDS puts into an HTTP filter hf with config_discovery (at, its
// path) the config ECDS delivered for it, recorded in ecds. Before the
// first one arrives the listener warms, as on Envoy, until the config
// source's initial_fetch_timeout passes; then — or at once, with
// apply_default_config_without_warming — the filter takes its
// default_config, or, without one, is missing: it answers every
// request 500 (Envoy's MissingConfigFilter), so a listener whose plugin
// never came does not serve without it. It reports false while the
// listener must warm, and whether it changed hf. r.mu is held.
func (r *xdsResources) inlineECDS(hf *hcmv3.HttpFilter, in *inlined, now time.Time, at string) (ready, changed bool) {
	cd := hf.GetConfigDiscovery()
	// The ECDS resource is named by the filter's name.
	if cd == nil || !in.source(cd.GetConfigSource(), xds.ExtensionConfigType, hf.GetName(), at+".config_discovery.config_source") {
		return true, false
	}
	var config *anypb.Any
	if got, ok := r.extensions[hf.GetName()]; ok {
		config = got.GetTypedConfig()
	} else if cd.GetDefaultConfig() != nil && cd.GetApplyDefaultConfigWithoutWarming() {
		config = cd.GetDefaultConfig()
	} else {
		key := "ecds/" + hf.GetName()
		in.fetching[key] = fetchTimeout(cd.GetConfigSource())
		switch {
		case r.waits(key, now):
			return false, false
		case cd.GetDefaultConfig() != nil:
			config = cd.GetDefaultConfig()
		default:
			// The stand-in is internal: config takes its message only
			// under its own name (a user's filter naming an
			// ExtensionConfigSource is refused, as on Envoy).
			hf.Name = missingConfigName
			config = mustAny(cd)
		}
	}
	hf.ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: proto.Clone(config).(*anypb.Any)}
	return true, true
}

// missingConfigName is the filter an HTTP filter becomes when its ECDS
// config never arrived (inlineECDS), taking this name: its typed_config
// is the filter's own config_discovery (an ExtensionConfigSource), the
// config it waited for. Registered here, by the one part of the proxy that puts it in a
// chain.
const missingConfigName = "wasmproxy.ecds.missing_config"

func init() {
	filters.Register(&filters.Native{
		Name:     missingConfigName,
		Internal: true,
		Config:   (&corev3.ExtensionConfigSource{}).ProtoReflect().Descriptor().FullName(),
		Parse:    func(proto.Message, string) (any, error) { return nil, nil },
		New:      func(any, filters.Env) (filter.Factory, error) { return missingConfig{}, nil },
	})
}

// missingConfig answers every request 500 with no body, as Envoy's
// MissingConfigFilter, without running the filters after it. Its
// details map to response flag NFCF (accesslog.Flags), as Envoy sets it.
type missingConfig struct{}

func (missingConfig) NewStreamFilter(cb filter.Callbacks) filter.StreamFilter {
	return &missingConfigStream{cb: cb}
}

type missingConfigStream struct {
	filter.PassThrough
	cb filter.Callbacks
}

func (s *missingConfigStream) DecodeHeaders(*filter.HeaderMap, bool) filter.HeadersStatus {
	s.cb.SendLocalReply(500, nil, nil, "filter_config_not_found")
	return filter.HeadersStopIteration
}
