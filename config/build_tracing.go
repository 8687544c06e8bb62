package config

import (
	"net/url"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Tracer payloads (tracing.provider.typed_config).
const (
	openTelemetryTracerName protoreflect.FullName = "envoy.config.trace.v3.OpenTelemetryConfig"
	zipkinTracerName        protoreflect.FullName = "envoy.config.trace.v3.ZipkinConfig"
)

// Envoy's defaults for tracing.
const (
	defaultMaxPathTagLength   = 256
	defaultOTelServiceName    = "unknown_service:envoy"
	defaultSamplingPercentage = 100
)

// buildRequestID reads generate_request_id (default true) and
// preserve_external_request_id into h.
func buildRequestID(pb *hcmv3.HttpConnectionManager, h *HTTPConnectionManager) {
	h.NoRequestIDGeneration = pb.GetGenerateRequestId() != nil && !pb.GetGenerateRequestId().GetValue()
	h.PreserveExternalRequestID = pb.GetPreserveExternalRequestId()
}

// buildTracing reads an HCM's tracing; nil when it has none.
func buildTracing(pb *hcmv3.HttpConnectionManager_Tracing, path string) (*Tracing, error) {
	if pb == nil {
		return nil, nil
	}
	t := &Tracing{
		RandomSampling:    percentOr(pb.GetRandomSampling(), defaultSamplingPercentage),
		ClientSampling:    percentOr(pb.GetClientSampling(), defaultSamplingPercentage),
		OverallSampling:   percentOr(pb.GetOverallSampling(), defaultSamplingPercentage),
		SpawnUpstreamSpan: pb.GetSpawnUpstreamSpan().GetValue(),
		MaxPathTagLength:  uint32Or(pb.GetMaxPathTagLength(), defaultMaxPathTagLength),
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"random_sampling", t.RandomSampling}, {"client_sampling", t.ClientSampling}, {"overall_sampling", t.OverallSampling}} {
		if f.v < 0 || f.v > 100 {
			return nil, fieldError(joinPath(joinPath(path, f.name), "value"), "%v is not a percentage (0 to 100)", f.v)
		}
	}
	tagsPath := joinPath(path, "custom_tags")
	for i, ct := range pb.GetCustomTags() {
		p := indexPath(tagsPath, i)
		tag := &CustomTag{Tag: ct.GetTag()}
		if tag.Tag == "" {
			return nil, fieldError(joinPath(p, "tag"), "missing: a custom tag needs a name")
		}
		switch {
		case ct.GetLiteral() != nil:
			tag.Literal = ct.GetLiteral().GetValue()
		case ct.GetRequestHeader() != nil:
			tag.RequestHeader = ct.GetRequestHeader().GetName()
			tag.Default = ct.GetRequestHeader().GetDefaultValue()
			if tag.RequestHeader == "" {
				return nil, fieldError(joinPath(p, "request_header.name"), "missing: the header to read")
			}
		case ct.GetEnvironment() != nil:
			tag.Environment = ct.GetEnvironment().GetName()
			tag.Default = ct.GetEnvironment().GetDefaultValue()
			if tag.Environment == "" {
				return nil, fieldError(joinPath(p, "environment.name"), "missing: the variable to read")
			}
		default:
			return nil, fieldError(p, "missing: one of literal, request_header or environment")
		}
		t.CustomTags = append(t.CustomTags, tag)
	}
	if prov := pb.GetProvider(); prov != nil {
		var err error
		if t.Provider, err = buildTracingProvider(prov, joinPath(path, "provider")); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func percentOr(p *typev3.Percent, def float64) float64 {
	if p == nil {
		return def
	}
	return p.GetValue()
}

func buildTracingProvider(pb *tracev3.Tracing_Http, path string) (*TracingProvider, error) {
	p := &TracingProvider{Name: pb.GetName()}
	tcPath := joinPath(path, "typed_config")
	payload, payloadPath, err := unpackAny(pb.GetTypedConfig(), tcPath)
	if err != nil {
		return nil, err
	}
	switch c := payload.(type) {
	case *tracev3.OpenTelemetryConfig:
		if p.OpenTelemetry, err = buildOpenTelemetryTracer(c, payloadPath); err != nil {
			return nil, err
		}
	case *tracev3.ZipkinConfig:
		if p.Zipkin, err = buildZipkinTracer(c, payloadPath); err != nil {
			return nil, err
		}
	case nil:
		return nil, fieldError(tcPath, "missing: tracer %q needs its typed_config", p.Name)
	default:
		return nil, notSupportedType(tcPath, "type.googleapis.com/"+string(messageName(payload)))
	}
	return p, nil
}

func buildOpenTelemetryTracer(pb *tracev3.OpenTelemetryConfig, path string) (*OpenTelemetryTracer, error) {
	o := &OpenTelemetryTracer{ServiceName: pb.GetServiceName()}
	if o.ServiceName == "" {
		o.ServiceName = defaultOTelServiceName
	}
	g, h := pb.GetGrpcService(), pb.GetHttpService()
	switch {
	case g != nil && h != nil:
		// Envoy's words (opentelemetry_tracer_impl.cc refuses both).
		return nil, fieldError(path, "only one of grpc_service and http_service can be set")
	case g != nil:
		gp := joinPath(path, "grpc_service")
		if g.GetEnvoyGrpc() == nil {
			return nil, notSupported(joinPath(gp, "google_grpc"), "only envoy_grpc reaches a cluster")
		}
		if o.GRPCCluster = g.GetEnvoyGrpc().GetClusterName(); o.GRPCCluster == "" {
			return nil, fieldError(joinPath(gp, "envoy_grpc.cluster_name"), "missing: the collector's cluster")
		}
		o.GRPCAuthority = g.GetEnvoyGrpc().GetAuthority()
		if g.GetTimeout() != nil {
			o.Timeout = Duration(g.GetTimeout().AsDuration())
		}
	case h != nil:
		if err := buildOTLPHTTP(h, joinPath(path, "http_service"), o); err != nil {
			return nil, err
		}
	}
	// Neither: Envoy makes spans and propagates them but exports nowhere.
	return o, nil
}

func buildOTLPHTTP(h *corev3.HttpService, path string, o *OpenTelemetryTracer) error {
	uriPath := joinPath(path, "http_uri")
	hu := h.GetHttpUri()
	if hu == nil {
		return fieldError(uriPath, "missing: the collector's http_uri")
	}
	if o.HTTPCluster = hu.GetCluster(); o.HTTPCluster == "" {
		return fieldError(joinPath(uriPath, "cluster"), "missing: the collector's cluster")
	}
	o.HTTPURI = hu.GetUri()
	if _, err := url.Parse(o.HTTPURI); err != nil || o.HTTPURI == "" {
		return fieldError(joinPath(uriPath, "uri"), "%q is not a URL", o.HTTPURI)
	}
	if hu.GetTimeout() != nil {
		o.Timeout = Duration(hu.GetTimeout().AsDuration())
	}
	for i, hv := range h.GetRequestHeadersToAdd() {
		hp := indexPath(joinPath(path, "request_headers_to_add"), i)
		if hv.GetHeader().GetKey() == "" {
			return fieldError(joinPath(hp, "header.key"), "missing: the header name")
		}
		o.HTTPHeaders = append(o.HTTPHeaders, HeaderValue{Key: hv.GetHeader().GetKey(), Value: hv.GetHeader().GetValue()})
	}
	return nil
}

func buildZipkinTracer(pb *tracev3.ZipkinConfig, path string) (*ZipkinTracer, error) {
	z := &ZipkinTracer{
		CollectorCluster:  pb.GetCollectorCluster(),
		CollectorEndpoint: pb.GetCollectorEndpoint(),
		CollectorHostname: pb.GetCollectorHostname(),
		SharedSpanContext: pb.GetSharedSpanContext() == nil || pb.GetSharedSpanContext().GetValue(),
		TraceID128Bit:     pb.GetTraceId_128Bit(),
	}
	if z.CollectorCluster == "" {
		return nil, fieldError(joinPath(path, "collector_cluster"), "missing: the collector's cluster")
	}
	if z.CollectorEndpoint == "" || z.CollectorEndpoint[0] != '/' {
		return nil, fieldError(joinPath(path, "collector_endpoint"), "%q is not a path (such as /api/v2/spans)", z.CollectorEndpoint)
	}
	switch v := pb.GetCollectorEndpointVersion(); v {
	case tracev3.ZipkinConfig_HTTP_JSON:
	case tracev3.ZipkinConfig_DEPRECATED_AND_UNAVAILABLE_DO_NOT_USE:
		// Envoy refuses the old v1 API (and the unset value) the same way.
		return nil, fieldError(joinPath(path, "collector_endpoint_version"), "unset: Zipkin's v1 API is gone; set HTTP_JSON")
	default:
		return nil, notSupported(joinPath(path, "collector_endpoint_version"), v.String())
	}
	return z, nil
}

// buildDecorator reads a route's decorator; nil when it has none.
func buildDecorator(pb *routev3.Decorator, path string) (*Decorator, error) {
	if pb == nil {
		return nil, nil
	}
	if pb.GetOperation() == "" {
		return nil, fieldError(joinPath(path, "operation"), "missing: the decorator's operation name")
	}
	return &Decorator{Operation: pb.GetOperation(), Propagate: pb.GetPropagate() == nil || pb.GetPropagate().GetValue()}, nil
}

// checkClusters checks that the tracer's collector cluster exists, as
// Envoy does when it loads the config (at is the HCM's path).
func (t *Tracing) checkClusters(at string, clusters map[string]int) error {
	if t == nil {
		return nil
	}
	return t.Provider.checkCluster(joinPath(at, "tracing.provider.typed_config"), clusters)
}

// checkCluster checks the provider's collector cluster; at is the path
// of its typed_config.
func (p *TracingProvider) checkCluster(at string, clusters map[string]int) error {
	if p == nil {
		return nil
	}
	var name, field string
	switch {
	case p.Zipkin != nil:
		name, field = p.Zipkin.CollectorCluster, "collector_cluster"
	case p.OpenTelemetry != nil && p.OpenTelemetry.GRPCCluster != "":
		name, field = p.OpenTelemetry.GRPCCluster, "grpc_service.envoy_grpc.cluster_name"
	case p.OpenTelemetry != nil && p.OpenTelemetry.HTTPCluster != "":
		name, field = p.OpenTelemetry.HTTPCluster, "http_service.http_uri.cluster"
	default:
		return nil
	}
	if _, ok := clusters[name]; !ok {
		return fieldError(joinPath(at, field), "unknown cluster %q (not in static_resources.clusters)", name)
	}
	return nil
}

// buildBootstrapTracer reads the bootstrap's deprecated tracing.http,
// which Envoy still uses for connection managers whose tracing has no
// provider; nil when there is none.
func buildBootstrapTracer(pb *tracev3.Tracing) (*TracingProvider, error) {
	if pb.GetHttp() == nil {
		return nil, nil
	}
	return buildTracingProvider(pb.GetHttp(), "tracing.http")
}

// tracingFields are the allow-list entries of tracing, request ids and
// decorators (merged into supportedFields; kept here so that the
// tracing config reads as one piece).
var tracingFields = map[string]fieldRule{
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.tracing":                      {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.generate_request_id":          {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.preserve_external_request_id": {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.Tracing.provider":             {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.Tracing.random_sampling":      {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.Tracing.client_sampling":      {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.Tracing.overall_sampling":     {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.Tracing.custom_tags":          {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.Tracing.spawn_upstream_span":  {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.Tracing.max_path_tag_length":  {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.Tracing.verbose":              {use: inert, note: "Envoy logs filter events into the span; wasmproxy does not"},
	"envoy.type.v3.Percent.value":                                     {use: implemented},
	"envoy.type.tracing.v3.CustomTag.tag":                             {use: implemented},
	"envoy.type.tracing.v3.CustomTag.literal":                         {use: implemented},
	"envoy.type.tracing.v3.CustomTag.request_header":                  {use: implemented},
	"envoy.type.tracing.v3.CustomTag.environment":                     {use: implemented, note: "read when the proxy starts"},
	"envoy.type.tracing.v3.CustomTag.Literal.value":                   {use: implemented},
	"envoy.type.tracing.v3.CustomTag.Header.name":                     {use: implemented},
	"envoy.type.tracing.v3.CustomTag.Header.default_value":            {use: implemented},
	"envoy.type.tracing.v3.CustomTag.Environment.name":                {use: implemented},
	"envoy.type.tracing.v3.CustomTag.Environment.default_value":       {use: implemented},
	"envoy.config.trace.v3.Tracing.Http.name":                         {use: implemented},
	"envoy.config.trace.v3.Tracing.Http.typed_config":                 {use: implemented, payloads: []protoreflect.FullName{openTelemetryTracerName, zipkinTracerName}},
	"envoy.config.trace.v3.OpenTelemetryConfig.grpc_service":          {use: implemented, note: "envoy_grpc only: OTLP/gRPC through the cluster"},
	"envoy.config.trace.v3.OpenTelemetryConfig.http_service":          {use: implemented, note: "OTLP/HTTP (protobuf) through the cluster"},
	"envoy.config.trace.v3.OpenTelemetryConfig.service_name":          {use: implemented},
	"envoy.config.core.v3.GrpcService.timeout":                        {use: implemented},
	"envoy.config.core.v3.GrpcService.EnvoyGrpc.authority":            {use: implemented},
	"envoy.config.core.v3.HttpService.http_uri":                       {use: implemented},
	"envoy.config.core.v3.HttpService.request_headers_to_add":         {use: implemented, note: "literal values"},
	"envoy.config.trace.v3.ZipkinConfig.collector_cluster":            {use: implemented},
	"envoy.config.trace.v3.ZipkinConfig.collector_endpoint":           {use: implemented},
	"envoy.config.trace.v3.ZipkinConfig.collector_endpoint_version":   {use: implemented, note: "HTTP_JSON (Zipkin JSON v2)"},
	"envoy.config.trace.v3.ZipkinConfig.collector_hostname":           {use: implemented},
	"envoy.config.trace.v3.ZipkinConfig.shared_span_context":          {use: implemented},
	"envoy.config.trace.v3.ZipkinConfig.trace_id_128bit":              {use: implemented},
	"envoy.config.bootstrap.v3.Bootstrap.tracing":                     {use: implemented, note: "deprecated in Envoy: the tracer of connection managers whose tracing has no provider"},
	"envoy.config.trace.v3.Tracing.http":                              {use: implemented},
	"envoy.config.route.v3.Route.decorator":                           {use: implemented},
	"envoy.config.route.v3.Decorator.operation":                       {use: implemented},
	"envoy.config.route.v3.Decorator.propagate":                       {use: implemented},
	"envoy.extensions.filters.http.router.v3.Router.start_child_span": {use: implemented},
}

func init() {
	for k, v := range tracingFields {
		supportedFields[k] = v
	}
}
