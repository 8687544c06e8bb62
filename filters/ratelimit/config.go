package ratelimit

import (
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/wasmproxy/wasmproxy/config"
)

// defaultTimeout is Envoy's when timeout is unset.
const defaultTimeout = 20 * time.Millisecond

// Config is the filter's RateLimit message.
type Config struct {
	Domain string `json:"domain"`
	Stage  uint32 `json:"stage,omitempty"`
	// RequestType is "internal", "external" or "both" (the default).
	RequestType     string        `json:"request_type"`
	Timeout         time.Duration `json:"timeout"`
	FailureModeDeny bool          `json:"failure_mode_deny,omitempty"`
	Service         *Service      `json:"rate_limit_service"`
	// XRateLimitHeaders: enable_x_ratelimit_headers DRAFT_VERSION_03.
	XRateLimitHeaders        bool            `json:"x_ratelimit_headers,omitempty"`
	DisableXEnvoyRateLimited bool            `json:"disable_x_envoy_ratelimited_header,omitempty"`
	RateLimitedStatus        int             `json:"rate_limited_status"`
	StatusOnError            int             `json:"status_on_error"`
	StatPrefix               string          `json:"stat_prefix,omitempty"`
	FilterEnabled            *config.Percent `json:"filter_enabled,omitempty"`
	FilterEnforced           *config.Percent `json:"filter_enforced,omitempty"`
}

// Service is rate_limit_service.grpc_service.envoy_grpc.
type Service struct {
	Cluster   string   `json:"cluster_name"`
	Authority string   `json:"authority,omitempty"`
	Metadata  []Header `json:"initial_metadata,omitempty"`
}

// Header is one header pair.
type Header struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// PerRoute is RateLimitPerRoute.
type PerRoute struct {
	// VHRateLimits is OVERRIDE (the default), INCLUDE or IGNORE.
	VHRateLimits string `json:"vh_rate_limits"`
	Domain       string `json:"domain,omitempty"`
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
	pb, ok := msg.(*rlv3.RateLimit)
	if !ok || pb == nil {
		return nil, config.FieldError(path, "missing: ratelimit needs a typed_config with domain and rate_limit_service")
	}
	if err := checkFields(pb, path, "domain", "stage", "request_type", "timeout", "failure_mode_deny",
		"rate_limit_service", "enable_x_ratelimit_headers", "disable_x_envoy_ratelimited_header",
		"rate_limited_status", "status_on_error", "stat_prefix", "filter_enabled", "filter_enforced"); err != nil {
		return nil, err
	}
	c := &Config{
		Domain: pb.GetDomain(), Stage: pb.GetStage(), RequestType: "both", Timeout: defaultTimeout,
		FailureModeDeny: pb.GetFailureModeDeny(), DisableXEnvoyRateLimited: pb.GetDisableXEnvoyRatelimitedHeader(),
		RateLimitedStatus: 429, StatusOnError: 500, StatPrefix: pb.GetStatPrefix(),
	}
	if c.Domain == "" {
		// The proto's validation: domain min_len 1.
		return nil, config.FieldError(config.JoinPath(path, "domain"), "missing: the rate limit domain")
	}
	if c.Stage > 10 {
		return nil, config.FieldError(config.JoinPath(path, "stage"), "%d is over 10", c.Stage)
	}
	switch t := pb.GetRequestType(); t {
	case "", "both":
	case "internal", "external":
		c.RequestType = t
	default:
		return nil, config.FieldError(config.JoinPath(path, "request_type"), "%q is not internal, external or both", t)
	}
	if d := pb.GetTimeout(); d != nil {
		c.Timeout = d.AsDuration()
		if c.Timeout <= 0 {
			// Envoy treats 0 as no timeout; a call then waits for the service.
			c.Timeout = 0
		}
	}
	switch pb.GetEnableXRatelimitHeaders() {
	case rlv3.RateLimit_OFF:
	case rlv3.RateLimit_DRAFT_VERSION_03:
		c.XRateLimitHeaders = true
	default:
		return nil, config.FieldError(config.JoinPath(path, "enable_x_ratelimit_headers"), "unknown version %d", pb.GetEnableXRatelimitHeaders())
	}
	if s := pb.GetRateLimitedStatus(); s != nil && s.GetCode() >= 400 {
		// Envoy's rule: a status under 400 falls back to 429.
		c.RateLimitedStatus = int(s.GetCode())
	}
	if s := pb.GetStatusOnError(); s != nil && s.GetCode() >= 400 {
		c.StatusOnError = int(s.GetCode())
	}
	var err error
	if c.FilterEnabled, err = percent(pb.GetFilterEnabled(), config.JoinPath(path, "filter_enabled")); err != nil {
		return nil, err
	}
	if c.FilterEnforced, err = percent(pb.GetFilterEnforced(), config.JoinPath(path, "filter_enforced")); err != nil {
		return nil, err
	}
	sp := config.JoinPath(path, "rate_limit_service")
	rs := pb.GetRateLimitService()
	if rs == nil {
		return nil, config.FieldError(sp, "missing: the rate limit service's grpc_service")
	}
	if err := checkFields(rs, sp, "grpc_service", "transport_api_version"); err != nil {
		return nil, err
	}
	if v := rs.GetTransportApiVersion(); v != corev3.ApiVersion_V3 && v != corev3.ApiVersion_AUTO {
		return nil, config.FieldError(config.JoinPath(sp, "transport_api_version"), "%v: only V3 is served", v)
	}
	gp := config.JoinPath(sp, "grpc_service")
	gs := rs.GetGrpcService()
	if gs == nil {
		return nil, config.FieldError(gp, "missing")
	}
	if err := checkFields(gs, gp, "envoy_grpc", "initial_metadata", "timeout"); err != nil {
		return nil, err
	}
	eg := gs.GetEnvoyGrpc()
	ep := config.JoinPath(gp, "envoy_grpc")
	if eg == nil {
		return nil, config.FieldError(ep, "missing: the rate limit service is reached through a cluster (google_grpc is not supported)")
	}
	if err := checkFields(eg, ep, "cluster_name", "authority"); err != nil {
		return nil, err
	}
	if eg.GetClusterName() == "" {
		return nil, config.FieldError(config.JoinPath(ep, "cluster_name"), "missing")
	}
	c.Service = &Service{Cluster: eg.GetClusterName(), Authority: eg.GetAuthority()}
	for i, md := range gs.GetInitialMetadata() {
		if len(md.GetRawValue()) > 0 {
			return nil, config.NotSupportedError(config.JoinPath(config.IndexPath(config.JoinPath(gp, "initial_metadata"), i), "raw_value"), "")
		}
		c.Service.Metadata = append(c.Service.Metadata, Header{Key: md.GetKey(), Value: md.GetValue()})
	}
	return c, nil
}

// percent reads a RuntimeFractionalPercent's default value; nil stays nil.
func percent(pb *corev3.RuntimeFractionalPercent, path string) (*config.Percent, error) {
	if pb == nil {
		return nil, nil
	}
	return config.BuildPercent(pb.GetDefaultValue(), config.JoinPath(path, "default_value"))
}

func parsePerRoute(msg proto.Message, path string) (any, error) {
	pb, ok := msg.(*rlv3.RateLimitPerRoute)
	if !ok || pb == nil {
		return &PerRoute{VHRateLimits: "OVERRIDE"}, nil
	}
	if err := checkFields(pb, path, "vh_rate_limits", "override_option", "domain"); err != nil {
		return nil, err
	}
	if o := pb.GetOverrideOption(); o != rlv3.RateLimitPerRoute_DEFAULT {
		// Limit overrides come from dynamic-metadata limits, which the
		// route actions here do not carry.
		return nil, config.NotSupportedError(config.JoinPath(path, "override_option"), o.String())
	}
	pr := &PerRoute{VHRateLimits: pb.GetVhRateLimits().String(), Domain: pb.GetDomain()}
	switch pb.GetVhRateLimits() {
	case rlv3.RateLimitPerRoute_OVERRIDE, rlv3.RateLimitPerRoute_INCLUDE, rlv3.RateLimitPerRoute_IGNORE:
	default:
		return nil, config.FieldError(config.JoinPath(path, "vh_rate_limits"), "unknown option %d", pb.GetVhRateLimits())
	}
	return pr, nil
}
