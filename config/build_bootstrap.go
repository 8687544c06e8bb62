package config

import (
	"fmt"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/config/metrics/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// This file builds the parts of the model that sit beside the listeners
// and clusters: metadata (filter_metadata on listeners, virtual hosts,
// routes and clusters), bootstrap_extensions (Wasm services) and
// stats_config (tag extraction).

// wasmServiceName is the bootstrap extension that runs a Wasm plugin with
// no traffic of its own (Envoy's envoy.bootstrap.wasm).
const wasmServiceName protoreflect.FullName = "envoy.extensions.wasm.v3.WasmService"

// The stats sinks wasmproxy implements (stats/statsd).
const (
	statsdSinkName    protoreflect.FullName = "envoy.config.metrics.v3.StatsdSink"
	dogStatsdSinkName protoreflect.FullName = "envoy.config.metrics.v3.DogStatsdSink"
)

// buildMetadata returns metadata.filter_metadata as namespace → fields
// (JSON values), nil when there is none. typed_filter_metadata is not
// in the allow-list, so it never reaches here.
func buildMetadata(md *corev3.Metadata) map[string]map[string]any {
	if len(md.GetFilterMetadata()) == 0 {
		return nil
	}
	out := make(map[string]map[string]any, len(md.GetFilterMetadata()))
	for ns, s := range md.GetFilterMetadata() {
		out[ns] = s.AsMap()
	}
	return out
}

// buildBootstrapExtensions reads bootstrap_extensions: each must be a
// WasmService, whose plugin runs as a background service.
func buildBootstrapExtensions(exts []*corev3.TypedExtensionConfig, path string) ([]*WasmService, error) {
	var out []*WasmService
	for i, ext := range exts {
		extPath := indexPath(path, i)
		payload, payloadPath, err := unpackAny(ext.GetTypedConfig(), joinPath(extPath, "typed_config"))
		if err != nil {
			return nil, err
		}
		svc, ok := payload.(*wasmv3.WasmService)
		if !ok {
			if payload == nil {
				return nil, fieldError(joinPath(extPath, "typed_config"), "missing: bootstrap extension %q needs its typed_config (envoy.extensions.wasm.v3.WasmService)", ext.GetName())
			}
			return nil, notSupported(joinPath(extPath, "typed_config"), string(messageName(payload)))
		}
		if svc.GetConfig() == nil {
			return nil, fieldError(joinPath(payloadPath, "config"), "missing: a Wasm service needs its plugin config")
		}
		plugin, err := buildWasmPlugin(svc.GetConfig(), joinPath(payloadPath, "config"))
		if err != nil {
			return nil, err
		}
		out = append(out, &WasmService{Name: ext.GetName(), Singleton: svc.GetSingleton(), Wasm: plugin})
	}
	return out, nil
}

// buildStatsConfig reads stats_config: the tag specifiers applied when
// stats are rendered for Prometheus.
func buildStatsConfig(pb *metricsv3.StatsConfig, path string) (*StatsConfig, error) {
	sc := &StatsConfig{UseAllDefaultTags: pb.GetUseAllDefaultTags() == nil || pb.GetUseAllDefaultTags().GetValue()}
	tagsPath := joinPath(path, "stats_tags")
	seen := map[string]int{}
	for i, ts := range pb.GetStatsTags() {
		tagPath := indexPath(tagsPath, i)
		name := ts.GetTagName()
		if first, dup := seen[name]; dup {
			// Envoy: "Tag name '<name>' specified twice."
			return nil, fieldError(joinPath(tagPath, "tag_name"), "tag name %q specified twice (also %s)", name, indexPath(tagsPath, first))
		}
		seen[name] = i
		tag := StatsTag{Name: name}
		switch v := ts.GetTagValue().(type) {
		case *metricsv3.TagSpecifier_Regex:
			if v.Regex == "" {
				return nil, notSupported(tagPath, "tag_name without regex or fixed_value (the default regex of a well-known tag name)")
			}
			re, err := compileBoundedRegex(v.Regex, MaxTagRegexProgramSize, joinPath(tagPath, "regex"), "(the limit on stats tag regexes)")
			if err != nil {
				return nil, err
			}
			if re.NumSubexp() == 0 {
				return nil, fieldError(joinPath(tagPath, "regex"), "%q has no capture group (the first group is cut from the name, the second, or else the first, is the tag value)", v.Regex)
			}
			tag.Regex = &Regexp{Regexp: re}
		case *metricsv3.TagSpecifier_FixedValue:
			fixed := v.FixedValue
			tag.FixedValue = &fixed
		default:
			return nil, notSupported(tagPath, "tag_name without regex or fixed_value (the default regex of a well-known tag name)")
		}
		sc.Tags = append(sc.Tags, tag)
	}
	return sc, nil
}

// buildBootstrapExtras fills the parts of the model buildBootstrap leaves
// to this file.
func buildBootstrapExtras(b *Bootstrap, pb *bootstrapv3.Bootstrap) error {
	var err error
	if b.WasmServices, err = buildBootstrapExtensions(pb.GetBootstrapExtensions(), "bootstrap_extensions"); err != nil {
		return err
	}
	if sc := pb.GetStatsConfig(); sc != nil {
		if b.StatsConfig, err = buildStatsConfig(sc, "stats_config"); err != nil {
			return err
		}
	}
	if err := buildDynamicResources(b, pb.GetDynamicResources()); err != nil { // dynamic.go
		return err
	}
	if b.StatsSinks, err = buildStatsSinks(pb.GetStatsSinks(), "stats_sinks"); err != nil {
		return err
	}
	if b.OverloadManager, err = buildOverloadManager(pb.GetOverloadManager(), "overload_manager"); err != nil {
		return err
	}
	if d := pb.GetStatsFlushInterval(); d != nil {
		if b.StatsFlushInterval, err = nonNegative(d, "stats_flush_interval"); err != nil {
			return err
		}
		// Envoy's bounds (bootstrap.proto): at least 1ms, under 5m.
		if b.StatsFlushInterval.D() < time.Millisecond || b.StatsFlushInterval.D() >= 5*time.Minute {
			return fieldError("stats_flush_interval", "must be at least 1ms and less than 5m, got %s", b.StatsFlushInterval.D())
		}
	}
	return nil
}

// DefaultStatsFlushInterval is Envoy's stats_flush_interval default.
const DefaultStatsFlushInterval = 5 * time.Second

// defaultStatsPrefix starts stat names in statsd sinks, as in Envoy.
const defaultStatsPrefix = "envoy"

// buildStatsSinks reads stats_sinks: statsd and DogStatsD over UDP.
func buildStatsSinks(sinks []*metricsv3.StatsSink, path string) ([]*StatsSink, error) {
	var out []*StatsSink
	for i, ps := range sinks {
		p := indexPath(path, i)
		payload, payloadPath, err := unpackAny(ps.GetTypedConfig(), joinPath(p, "typed_config"))
		if err != nil {
			return nil, err
		}
		s := &StatsSink{Name: ps.GetName(), Prefix: defaultStatsPrefix}
		var addr *corev3.Address
		switch c := payload.(type) {
		case *metricsv3.StatsdSink:
			if c.GetTcpClusterName() != "" {
				return nil, notSupported(joinPath(payloadPath, "tcp_cluster_name"), "use address (UDP)")
			}
			addr = c.GetAddress()
			if c.GetPrefix() != "" {
				s.Prefix = c.GetPrefix()
			}
		case *metricsv3.DogStatsdSink:
			s.DogStatsD = true
			addr = c.GetAddress()
			if c.GetPrefix() != "" {
				s.Prefix = c.GetPrefix()
			}
			if n := c.GetMaxBytesPerDatagram().GetValue(); n > 65507 {
				return nil, fieldError(joinPath(payloadPath, "max_bytes_per_datagram"), "%d is more than a UDP datagram holds (65507)", n)
			} else {
				s.MaxBytesPerDatagram = uint32(n)
			}
		case nil:
			return nil, fieldError(joinPath(p, "typed_config"), "missing (a StatsdSink or DogStatsdSink)")
		default:
			return nil, notSupportedType(joinPath(p, "typed_config"), "type.googleapis.com/"+string(messageName(payload)))
		}
		if addr == nil {
			return nil, fieldError(joinPath(payloadPath, "address"), "missing (the statsd server's UDP address)")
		}
		if s.Address, err = socketAddress(addr, joinPath(payloadPath, "address"), true); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// String describes a service for log lines and errors.
func (s *WasmService) String() string {
	kind := "per worker"
	if s.Singleton {
		kind = "singleton"
	}
	return fmt.Sprintf("Wasm service %q (%s)", s.Name, kind)
}
