package config

import (
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
)

// ADS is the bootstrap's dynamic_resources: listeners and clusters
// delivered by a control plane over one aggregated (ADS) gRPC stream,
// state of the world (GRPC) or incremental (DELTA_GRPC). The resources it delivers are built
// like static ones (see wasmproxy's xDS loop): they join
// static_resources in the decoded bootstrap, so every check and every
// error message is the file's.
type ADS struct {
	// Cluster is the static cluster of ads_config's envoy_grpc, an
	// HTTP/2 cluster (h2c, or TLS/mTLS with its transport_socket): the
	// stream goes through it like any upstream request.
	Cluster string `json:"cluster"`
	// Delta: api_type DELTA_GRPC, the incremental protocol.
	Delta bool `json:"delta,omitempty"`
	// SetNodeOnFirstMessageOnly: the node goes only in a stream's first
	// request.
	SetNodeOnFirstMessageOnly bool `json:"set_node_on_first_message_only,omitempty"`
	// LDS and CDS: lds_config and cds_config name ADS.
	LDS bool `json:"lds,omitempty"`
	CDS bool `json:"cds,omitempty"`
	// LDSPath and CDSPath: lds_config and cds_config name a file
	// (path_config_source, or the deprecated path) holding a
	// DiscoveryResponse, read again whenever it changes (Envoy's
	// filesystem subscription). Cluster is "" when no type is over ADS.
	LDSPath string `json:"lds_path,omitempty"`
	CDSPath string `json:"cds_path,omitempty"`
	// LDSStream and CDSStream: lds_config and cds_config name an
	// api_config_source, a gRPC stream of the type's own discovery
	// service through a static cluster.
	LDSStream *APISource `json:"lds_stream,omitempty"`
	CDSStream *APISource `json:"cds_stream,omitempty"`
	// InitialFetchTimeout bounds how long the proxy stays INITIALIZING
	// (/ready 503) waiting for the first responses: the larger of the
	// two config sources' initial_fetch_timeout, Envoy's default 15s;
	// zero waits for ever.
	InitialFetchTimeout Duration `json:"initial_fetch_timeout"`
}

// APISource is an api_config_source of api_type GRPC or DELTA_GRPC: a
// gRPC stream through the static cluster of its envoy_grpc.
type APISource struct {
	Cluster string `json:"cluster"`
	Delta   bool   `json:"delta,omitempty"`
}

// ParseAPISource reads an api_config_source at path p (the field itself):
// api_type GRPC or DELTA_GRPC, transport V3, one envoy_grpc service.
// Whether its cluster is a static HTTP/2 one is for the caller to check.
func ParseAPISource(api *corev3.ApiConfigSource, p string) (APISource, error) {
	var src APISource
	switch api.GetApiType() {
	case corev3.ApiConfigSource_GRPC:
	case corev3.ApiConfigSource_DELTA_GRPC:
		src.Delta = true
	default:
		return src, notSupported(joinPath(p, "api_type"), api.GetApiType().String()+" (GRPC and DELTA_GRPC are supported)")
	}
	if v := api.GetTransportApiVersion(); v != corev3.ApiVersion_AUTO && v != corev3.ApiVersion_V3 {
		return src, fieldError(joinPath(p, "transport_api_version"), "%s is not supported; only V3", v)
	}
	// The settings of a resource delivered are not seen by the field
	// check of the bootstrap (the source is consumed when the resource
	// is inlined): refused here by name.
	switch {
	case api.GetRateLimitSettings() != nil:
		return src, notSupported(joinPath(p, "rate_limit_settings"), "")
	case len(api.GetConfigValidators()) > 0:
		return src, notSupported(joinPath(p, "config_validators"), "")
	case len(api.GetClusterNames()) > 0:
		return src, fieldError(joinPath(p, "cluster_names"), "only for REST; a gRPC source names its cluster in grpc_services")
	}
	services := api.GetGrpcServices()
	if len(services) != 1 {
		return src, fieldError(joinPath(p, "grpc_services"), "want exactly one gRPC service, got %d", len(services))
	}
	eg := services[0].GetEnvoyGrpc()
	if eg == nil {
		return src, notSupported(joinPath(p, "grpc_services[0]"), "google_grpc (envoy_grpc, to a static cluster, is supported)")
	}
	if eg.GetClusterName() == "" {
		return src, fieldError(joinPath(p, "grpc_services[0].envoy_grpc.cluster_name"), "empty")
	}
	src.Cluster = eg.GetClusterName()
	return src, nil
}

// grpcCluster checks that the cluster of a gRPC config source at p is a
// static HTTP/2 cluster with endpoints; what names the source is the
// error's subject (ADS, LDS, …).
func grpcCluster(b *Bootstrap, name, p, what string) error {
	for _, c := range b.Clusters {
		if c.Name == name {
			return grpcClusterError(true, len(c.Endpoints) > 0, c.HTTP2, name, p, what)
		}
	}
	return grpcClusterError(false, false, false, name, p, what)
}

// CheckGRPCSourceCluster is grpcCluster for an api_config_source of a
// resource delivered over xDS, at p: pb is the bootstrap's static
// cluster it names (nil: there is none), checked before it is built.
// A cluster whose protocol options are in error counts as HTTP/1.1
// here; the bootstrap's build reports the error itself.
func CheckGRPCSourceCluster(pb *clusterv3.Cluster, name, p string) error {
	if pb == nil {
		return grpcClusterError(false, false, false, name, p, "api_config_source")
	}
	endpoints := false
	for _, lle := range pb.GetLoadAssignment().GetEndpoints() {
		endpoints = endpoints || len(lle.GetLbEndpoints()) > 0
	}
	var c Cluster
	err := clusterHTTP2(pb, &c, "")
	return grpcClusterError(true, endpoints, c.HTTP2 && err == nil, name, p, "api_config_source")
}

// grpcClusterError is the error of a gRPC config source at p whose
// cluster name is (or is not) found, has endpoints and speaks HTTP/2:
// Envoy's gRPC client needs a static cluster and sends HTTP/2.
func grpcClusterError(found, endpoints, http2 bool, name, p, what string) error {
	cp := joinPath(p, "grpc_services[0].envoy_grpc.cluster_name")
	switch {
	case !found:
		return fieldError(cp, "unknown cluster %q: the %s cluster must be in static_resources", name, what)
	case !endpoints:
		return fieldError(cp, "cluster %q has no endpoints", name)
	case !http2:
		return fieldError(cp, "cluster %q speaks HTTP/1.1; gRPC needs HTTP/2 (typed_extension_protocol_options with explicit_http_config.http2_protocol_options)", name)
	}
	return nil
}

// DefaultInitialFetchTimeout is Envoy's ConfigSource.initial_fetch_timeout.
const DefaultInitialFetchTimeout = Duration(15 * time.Second)

// buildDynamicResources reads dynamic_resources; b.Clusters must be built.
func buildDynamicResources(b *Bootstrap, dr *bootstrapv3.Bootstrap_DynamicResources) error {
	if dr == nil {
		return nil
	}
	const path = "dynamic_resources"
	ads := &ADS{}
	seen := false
	for _, src := range []struct {
		field  string
		cs     *corev3.ConfigSource
		set    *bool
		file   *string
		stream **APISource
	}{{"lds_config", dr.GetLdsConfig(), &ads.LDS, &ads.LDSPath, &ads.LDSStream}, {"cds_config", dr.GetCdsConfig(), &ads.CDS, &ads.CDSPath, &ads.CDSStream}} {
		if src.cs == nil {
			continue
		}
		p := joinPath(path, src.field)
		switch {
		case src.cs.GetAds() != nil:
			*src.set = true
		case src.cs.GetPath() != "" || src.cs.GetPathConfigSource() != nil:
			file, err := pathSource(src.cs, p)
			if err != nil {
				return err
			}
			*src.file = file
		case src.cs.GetApiConfigSource() != nil:
			ap := joinPath(p, "api_config_source")
			api, err := ParseAPISource(src.cs.GetApiConfigSource(), ap)
			if err != nil {
				return err
			}
			if err := grpcCluster(b, api.Cluster, ap, strings.ToUpper(src.field[:3])); err != nil {
				return err
			}
			*src.stream = &api
		case src.cs.GetSelf() != nil:
			return notSupported(joinPath(p, "self"), "the self config source (ads: {} with ads_config, api_config_source, or path_config_source, is supported)")
		default:
			return fieldError(p, "no config source: set ads: {} or path_config_source")
		}
		if v := src.cs.GetResourceApiVersion(); v != corev3.ApiVersion_AUTO && v != corev3.ApiVersion_V3 {
			return fieldError(joinPath(p, "resource_api_version"), "%s is not supported; only V3", v)
		}
		timeout := DefaultInitialFetchTimeout
		if t := src.cs.GetInitialFetchTimeout(); t != nil {
			d, err := nonNegative(t, joinPath(p, "initial_fetch_timeout"))
			if err != nil {
				return err
			}
			timeout = d
		}
		if !seen || timeout == 0 || (ads.InitialFetchTimeout != 0 && timeout > ads.InitialFetchTimeout) {
			ads.InitialFetchTimeout = timeout
		}
		seen = true
	}
	if ads.LDSPath != "" || ads.CDSPath != "" || ads.LDSStream != nil || ads.CDSStream != nil {
		b.ADS = ads
	}
	api := dr.GetAdsConfig()
	if api == nil {
		if ads.LDS || ads.CDS {
			return fieldError(joinPath(path, "ads_config"), "missing: lds_config or cds_config names ads: {}")
		}
		return nil
	}
	p := joinPath(path, "ads_config")
	switch api.GetApiType() {
	case corev3.ApiConfigSource_GRPC, corev3.ApiConfigSource_DELTA_GRPC:
	default:
		return fieldError(joinPath(p, "api_type"), "%s cannot carry ADS; use GRPC", api.GetApiType())
	}
	src, err := ParseAPISource(api, p)
	if err != nil {
		return err
	}
	if err := grpcCluster(b, src.Cluster, p, "ADS"); err != nil {
		return err
	}
	ads.Delta = src.Delta
	ads.Cluster = src.Cluster
	ads.SetNodeOnFirstMessageOnly = api.GetSetNodeOnFirstMessageOnly()
	b.ADS = ads
	return nil
}

// pathSource is the file of a ConfigSource's path_config_source (or its
// deprecated path). watched_directory is refused by checkSupported: the
// file itself is watched, by content, so a swapped symlink is seen.
func pathSource(cs *corev3.ConfigSource, p string) (string, error) {
	if pcs := cs.GetPathConfigSource(); pcs != nil {
		if pcs.GetPath() == "" {
			return "", fieldError(joinPath(p, "path_config_source.path"), "empty")
		}
		return pcs.GetPath(), nil
	}
	return cs.GetPath(), nil
}

// LoadDiscoveryResponse reads the file of a path config source: a
// DiscoveryResponse in YAML or JSON (the version_info and resources of
// one type), decoded with the bootstrap's rules (enum names in any
// case, known @types, no unknown fields). Errors name the file.
// Whether the proxy implements what the resources ask is for the
// reload they trigger to say.
func LoadDiscoveryResponse(path string) (*discoveryv3.DiscoveryResponse, error) {
	data, err := readConfig(path)
	if err != nil {
		return nil, err
	}
	tree, err := jsonTree(data)
	if err != nil {
		return nil, withSource(err, path)
	}
	resp := &discoveryv3.DiscoveryResponse{}
	// The resources are checked against what is implemented when they
	// join the bootstrap, with their names in the errors.
	if err := decodeTree(tree, resp, walk{}); err != nil {
		return nil, withSource(err, path)
	}
	return resp, nil
}
