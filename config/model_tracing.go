package config

// Tracing is an HTTP connection manager's tracing: how requests are
// sampled, which tags their spans carry, and the tracer (Provider) that
// exports them. A connection manager without it traces nothing, as in
// Envoy.
type Tracing struct {
	// Provider is the tracer; nil: spans are neither made nor
	// propagated (Envoy's null tracer), while sampling decisions and
	// x-request-id still apply.
	Provider *TracingProvider `json:"provider,omitempty"`
	// RandomSampling, ClientSampling and OverallSampling are percentages
	// (0–100); Envoy's default for each is 100.
	RandomSampling  float64 `json:"random_sampling"`
	ClientSampling  float64 `json:"client_sampling"`
	OverallSampling float64 `json:"overall_sampling"`
	// CustomTags are added to every span of the connection manager.
	CustomTags []*CustomTag `json:"custom_tags,omitempty"`
	// SpawnUpstreamSpan makes a client span per upstream attempt (as the
	// router's start_child_span does).
	SpawnUpstreamSpan bool `json:"spawn_upstream_span,omitempty"`
	// MaxPathTagLength truncates the http.url tag; Envoy's default 256.
	MaxPathTagLength uint32 `json:"max_path_tag_length"`
}

// TracingProvider is tracing.provider: exactly one of OpenTelemetry and
// Zipkin is set.
type TracingProvider struct {
	Name          string               `json:"name"`
	OpenTelemetry *OpenTelemetryTracer `json:"opentelemetry,omitempty"`
	Zipkin        *ZipkinTracer        `json:"zipkin,omitempty"`
}

// OpenTelemetryTracer is envoy.config.trace.v3.OpenTelemetryConfig: spans
// exported over OTLP to a cluster, by gRPC (GRPCCluster) or HTTP
// (HTTPCluster + HTTPPath); exactly one is set.
type OpenTelemetryTracer struct {
	// GRPCCluster is grpc_service.envoy_grpc.cluster_name; GRPCAuthority
	// its authority (default: the cluster name, as Envoy sends).
	GRPCCluster   string `json:"grpc_cluster,omitempty"`
	GRPCAuthority string `json:"grpc_authority,omitempty"`
	// HTTPCluster and HTTPURI are http_service.http_uri's cluster and
	// uri (its path is where spans are POSTed, its host the authority).
	HTTPCluster string `json:"http_cluster,omitempty"`
	HTTPURI     string `json:"http_uri,omitempty"`
	// HTTPHeaders are http_service.request_headers_to_add.
	HTTPHeaders []HeaderValue `json:"http_headers,omitempty"`
	// Timeout bounds one export (grpc_service.timeout or
	// http_uri.timeout); zero: Envoy's default, 1s for HTTP.
	Timeout Duration `json:"timeout,omitempty"`
	// ServiceName is the service.name resource attribute; Envoy's
	// default "unknown_service:envoy".
	ServiceName string `json:"service_name"`
}

// HeaderValue is one header name and value.
type HeaderValue struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// ZipkinTracer is envoy.config.trace.v3.ZipkinConfig with
// collector_endpoint_version HTTP_JSON: Zipkin JSON v2 POSTed to
// CollectorEndpoint on CollectorCluster.
type ZipkinTracer struct {
	CollectorCluster  string `json:"collector_cluster"`
	CollectorEndpoint string `json:"collector_endpoint"`
	// CollectorHostname is the Host of the POST; default the cluster
	// name, as Envoy sends.
	CollectorHostname string `json:"collector_hostname,omitempty"`
	// SharedSpanContext: the server span shares the client's span id
	// (Envoy's default true); false gives it a span id of its own,
	// child of the client's.
	SharedSpanContext bool `json:"shared_span_context"`
	// TraceID128Bit makes 128-bit trace ids for new traces (default 64).
	TraceID128Bit bool `json:"trace_id_128bit,omitempty"`
}

// CustomTag is one of tracing.custom_tags: a tag whose value is a
// literal, a request header's value or an environment variable's (read
// when the config is loaded, as Envoy does), else Default.
type CustomTag struct {
	Tag string `json:"tag"`
	// Exactly one of Literal, RequestHeader and Environment is set.
	Literal       string `json:"literal,omitempty"`
	RequestHeader string `json:"request_header,omitempty"`
	Environment   string `json:"environment,omitempty"`
	// Default is the value when the header or variable is missing ("":
	// the tag is left out).
	Default string `json:"default_value,omitempty"`
}

// Decorator is a route's decorator: the operation name of the spans of
// the requests it routes.
type Decorator struct {
	Operation string `json:"operation"`
	// Propagate sends the operation upstream in
	// x-envoy-decorator-operation (egress; Envoy's default true).
	Propagate bool `json:"propagate"`
}
