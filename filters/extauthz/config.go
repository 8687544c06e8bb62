package extauthz

import (
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/wasmproxy/wasmproxy/config"
)

// defaultTimeout is Envoy's when grpc_service.timeout is unset (200ms,
// ext_authz config.cc).
const defaultTimeout = 200 * time.Millisecond

// Config is one ExtAuthz filter's configuration.
type Config struct {
	// GRPC is set for a grpc_service, HTTP for an http_service.
	GRPC *GRPCService `json:"grpc_service,omitempty"`
	HTTP *HTTPService `json:"http_service,omitempty"`

	FailureModeAllow          bool `json:"failure_mode_allow,omitempty"`
	FailureModeAllowHeaderAdd bool `json:"failure_mode_allow_header_add,omitempty"`
	// StatusOnError is the status of the reply when the check failed
	// and failure_mode_allow is off (default 403, as Envoy).
	StatusOnError int          `json:"status_on_error"`
	WithBody      *BodySetting `json:"with_request_body,omitempty"`
	StatPrefix    string       `json:"stat_prefix,omitempty"`
}

// GRPCService is grpc_service.envoy_grpc.
type GRPCService struct {
	Cluster   string        `json:"cluster_name"`
	Authority string        `json:"authority,omitempty"`
	Timeout   time.Duration `json:"timeout"`
	Metadata  []Header      `json:"initial_metadata,omitempty"`
}

// HTTPService is http_service.
type HTTPService struct {
	URI        string        `json:"uri"`
	Cluster    string        `json:"cluster"`
	Timeout    time.Duration `json:"timeout"`
	PathPrefix string        `json:"path_prefix,omitempty"`
	// AllowedHeaders are the request headers sent on besides Envoy's
	// defaults (:method, :path, :authority, authorization).
	AllowedHeaders []config.StringMatcher `json:"allowed_headers,omitempty"`
	HeadersToAdd   []Header               `json:"headers_to_add,omitempty"`
	// Upstream: authorization response headers set on the upstream
	// request on success; Client: sent to the client on denial (nil:
	// all but host); ClientOnSuccess: added to the response on success.
	Upstream        []config.StringMatcher `json:"allowed_upstream_headers,omitempty"`
	UpstreamAppend  []config.StringMatcher `json:"allowed_upstream_headers_to_append,omitempty"`
	Client          []config.StringMatcher `json:"allowed_client_headers,omitempty"`
	ClientOnSuccess []config.StringMatcher `json:"allowed_client_headers_on_success,omitempty"`
}

// BodySetting is with_request_body.
type BodySetting struct {
	MaxBytes     uint32 `json:"max_request_bytes"`
	AllowPartial bool   `json:"allow_partial_message,omitempty"`
	PackAsBytes  bool   `json:"pack_as_bytes,omitempty"`
}

// Header is a key and value.
type Header struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// PerRoute is ExtAuthzPerRoute.
type PerRoute struct {
	Disabled          bool              `json:"disabled,omitempty"`
	ContextExtensions map[string]string `json:"context_extensions,omitempty"`
	// DisableBody is check_settings.disable_request_body_buffering.
	DisableBody bool `json:"disable_request_body_buffering,omitempty"`
}

// checkFields refuses any field set on msg that is not in supported.
func checkFields(msg proto.Message, path string, supported ...protoreflect.Name) error {
	ok := map[protoreflect.Name]bool{}
	for _, n := range supported {
		ok[n] = true
	}
	var err error
	msg.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if !ok[fd.Name()] {
			err = config.NotSupportedError(config.JoinPath(path, string(fd.Name())), "")
			return false
		}
		return true
	})
	return err
}

func parse(msg proto.Message, path string) (any, error) {
	pb, ok := msg.(*extauthzv3.ExtAuthz)
	if !ok || pb == nil {
		return nil, config.FieldError(path, "missing: ext_authz needs a typed_config with grpc_service or http_service")
	}
	if err := checkFields(pb, path, "grpc_service", "http_service", "transport_api_version", "failure_mode_allow",
		"failure_mode_allow_header_add", "with_request_body", "status_on_error", "stat_prefix"); err != nil {
		return nil, err
	}
	if v := pb.GetTransportApiVersion(); v != corev3.ApiVersion_V3 && v != corev3.ApiVersion_AUTO {
		return nil, config.FieldError(config.JoinPath(path, "transport_api_version"), "%v: only V3 is served", v)
	}
	c := &Config{
		FailureModeAllow: pb.GetFailureModeAllow(), FailureModeAllowHeaderAdd: pb.GetFailureModeAllowHeaderAdd(),
		StatusOnError: 403, StatPrefix: pb.GetStatPrefix(),
	}
	if s := pb.GetStatusOnError(); s != nil && s.GetCode() != 0 {
		if s.GetCode() < 100 || s.GetCode() > 599 {
			return nil, config.FieldError(config.JoinPath(path, "status_on_error.code"), "%d is not an HTTP status", s.GetCode())
		}
		c.StatusOnError = int(s.GetCode())
	}
	if b := pb.GetWithRequestBody(); b != nil {
		bp := config.JoinPath(path, "with_request_body")
		if err := checkFields(b, bp, "max_request_bytes", "allow_partial_message", "pack_as_bytes"); err != nil {
			return nil, err
		}
		if b.GetMaxRequestBytes() == 0 {
			// Envoy's validation: max_request_bytes > 0.
			return nil, config.FieldError(config.JoinPath(bp, "max_request_bytes"), "must be greater than 0")
		}
		c.WithBody = &BodySetting{MaxBytes: b.GetMaxRequestBytes(), AllowPartial: b.GetAllowPartialMessage(), PackAsBytes: b.GetPackAsBytes()}
	}
	switch {
	case pb.GetGrpcService() != nil:
		g, err := parseGRPC(pb.GetGrpcService(), config.JoinPath(path, "grpc_service"))
		if err != nil {
			return nil, err
		}
		c.GRPC = g
	case pb.GetHttpService() != nil:
		h, err := parseHTTP(pb.GetHttpService(), config.JoinPath(path, "http_service"))
		if err != nil {
			return nil, err
		}
		c.HTTP = h
	default:
		return nil, config.FieldError(path, "ext_authz needs grpc_service or http_service")
	}
	return c, nil
}

func parseGRPC(pb *corev3.GrpcService, path string) (*GRPCService, error) {
	if err := checkFields(pb, path, "envoy_grpc", "timeout", "initial_metadata"); err != nil {
		return nil, err
	}
	eg := pb.GetEnvoyGrpc()
	if eg == nil {
		return nil, config.FieldError(config.JoinPath(path, "envoy_grpc"), "missing: the authorization service is reached through a cluster (google_grpc is not supported)")
	}
	ep := config.JoinPath(path, "envoy_grpc")
	if err := checkFields(eg, ep, "cluster_name", "authority"); err != nil {
		return nil, err
	}
	if eg.GetClusterName() == "" {
		return nil, config.FieldError(config.JoinPath(ep, "cluster_name"), "missing")
	}
	g := &GRPCService{Cluster: eg.GetClusterName(), Authority: eg.GetAuthority(), Timeout: defaultTimeout}
	if pb.GetTimeout() != nil {
		g.Timeout = pb.GetTimeout().AsDuration()
	}
	for i, md := range pb.GetInitialMetadata() {
		if len(md.GetRawValue()) > 0 {
			return nil, config.NotSupportedError(config.JoinPath(config.IndexPath(config.JoinPath(path, "initial_metadata"), i), "raw_value"), "")
		}
		g.Metadata = append(g.Metadata, Header{Key: md.GetKey(), Value: md.GetValue()})
	}
	return g, nil
}

func parseHTTP(pb *extauthzv3.HttpService, path string) (*HTTPService, error) {
	if err := checkFields(pb, path, "server_uri", "path_prefix", "authorization_request", "authorization_response"); err != nil {
		return nil, err
	}
	su := pb.GetServerUri()
	sp := config.JoinPath(path, "server_uri")
	if su == nil {
		return nil, config.FieldError(sp, "missing")
	}
	if su.GetCluster() == "" {
		return nil, config.FieldError(config.JoinPath(sp, "cluster"), "missing")
	}
	if su.GetUri() == "" {
		return nil, config.FieldError(config.JoinPath(sp, "uri"), "missing")
	}
	h := &HTTPService{URI: su.GetUri(), Cluster: su.GetCluster(), Timeout: defaultTimeout, PathPrefix: pb.GetPathPrefix()}
	if su.GetTimeout() != nil {
		h.Timeout = su.GetTimeout().AsDuration()
	}
	if p := h.PathPrefix; p != "" && p[0] != '/' {
		// Envoy's validation: path_prefix starts with "/".
		return nil, config.FieldError(config.JoinPath(path, "path_prefix"), "%q does not start with /", p)
	}
	var err error
	if rq := pb.GetAuthorizationRequest(); rq != nil {
		rp := config.JoinPath(path, "authorization_request")
		if err := checkFields(rq, rp, "allowed_headers", "headers_to_add"); err != nil {
			return nil, err
		}
		if h.AllowedHeaders, err = matchers(rq.GetAllowedHeaders(), config.JoinPath(rp, "allowed_headers")); err != nil {
			return nil, err
		}
		for _, hv := range rq.GetHeadersToAdd() {
			h.HeadersToAdd = append(h.HeadersToAdd, Header{Key: hv.GetKey(), Value: hv.GetValue()})
		}
	}
	if rs := pb.GetAuthorizationResponse(); rs != nil {
		rp := config.JoinPath(path, "authorization_response")
		if err := checkFields(rs, rp, "allowed_upstream_headers", "allowed_upstream_headers_to_append", "allowed_client_headers", "allowed_client_headers_on_success"); err != nil {
			return nil, err
		}
		for _, f := range []struct {
			pb  *matcherv3.ListStringMatcher
			out *[]config.StringMatcher
			n   string
		}{
			{rs.GetAllowedUpstreamHeaders(), &h.Upstream, "allowed_upstream_headers"},
			{rs.GetAllowedUpstreamHeadersToAppend(), &h.UpstreamAppend, "allowed_upstream_headers_to_append"},
			{rs.GetAllowedClientHeaders(), &h.Client, "allowed_client_headers"},
			{rs.GetAllowedClientHeadersOnSuccess(), &h.ClientOnSuccess, "allowed_client_headers_on_success"},
		} {
			if *f.out, err = matchers(f.pb, config.JoinPath(rp, f.n)); err != nil {
				return nil, err
			}
		}
	}
	return h, nil
}

func matchers(pb *matcherv3.ListStringMatcher, path string) ([]config.StringMatcher, error) {
	var out []config.StringMatcher
	for i, m := range pb.GetPatterns() {
		sm, err := config.BuildStringMatcher(m, config.IndexPath(config.JoinPath(path, "patterns"), i))
		if err != nil {
			return nil, err
		}
		out = append(out, sm)
	}
	return out, nil
}

func parsePerRoute(msg proto.Message, path string) (any, error) {
	pb, ok := msg.(*extauthzv3.ExtAuthzPerRoute)
	if !ok || pb == nil {
		return nil, config.FieldError(path, "missing ExtAuthzPerRoute")
	}
	if err := checkFields(pb, path, "disabled", "check_settings"); err != nil {
		return nil, err
	}
	if pb.GetDisabled() && pb.GetCheckSettings() != nil {
		return nil, config.FieldError(path, "disabled and check_settings are alternatives (one of override)")
	}
	if !pb.GetDisabled() && pb.GetCheckSettings() == nil {
		// Envoy's validation: the override oneof is required.
		return nil, config.FieldError(path, "needs disabled: true or check_settings")
	}
	r := &PerRoute{Disabled: pb.GetDisabled()}
	if cs := pb.GetCheckSettings(); cs != nil {
		cp := config.JoinPath(path, "check_settings")
		if err := checkFields(cs, cp, "context_extensions", "disable_request_body_buffering"); err != nil {
			return nil, err
		}
		r.ContextExtensions = cs.GetContextExtensions()
		r.DisableBody = cs.GetDisableRequestBodyBuffering()
	}
	return r, nil
}
