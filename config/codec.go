package config

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	preservecasev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/header_formatters/preserve_case/v3"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// preserveCaseName is the one stateful header formatter Envoy has.
const preserveCaseName protoreflect.FullName = "envoy.extensions.http.header_formatters.preserve_case.v3.PreserveCaseFormatterConfig"

// headerKeyFormat reads an Http1ProtocolOptions.header_key_format (at
// path, the options' own path): proper_case_words, or the preserve_case
// stateful_formatter. Neither set: false, nil.
func headerKeyFormat(pb *corev3.Http1ProtocolOptions, path string) (properCase bool, pc *PreserveCase, err error) {
	f := pb.GetHeaderKeyFormat()
	if f.GetProperCaseWords() != nil {
		return true, nil, nil
	}
	sf := f.GetStatefulFormatter()
	if sf == nil {
		return false, nil, nil
	}
	cfgPath := joinPath(path, "header_key_format.stateful_formatter.typed_config")
	payload, payloadPath, err := unpackAny(sf.GetTypedConfig(), cfgPath)
	if err != nil {
		return false, nil, err
	}
	cfg, ok := payload.(*preservecasev3.PreserveCaseFormatterConfig)
	if !ok {
		if payload == nil {
			return false, nil, fieldError(cfgPath, "missing: a stateful_formatter needs its typed_config (%s)", preserveCaseName)
		}
		return false, nil, notSupported(cfgPath, string(messageName(payload)))
	}
	pc = &PreserveCase{ForwardReasonPhrase: cfg.GetForwardReasonPhrase()}
	switch t := cfg.GetFormatterTypeOnEnvoyHeaders(); t {
	case preservecasev3.PreserveCaseFormatterConfig_DEFAULT:
	case preservecasev3.PreserveCaseFormatterConfig_PROPER_CASE:
		pc.ProperCaseOnEnvoyHeaders = true
	default:
		return false, nil, fieldError(joinPath(payloadPath, "formatter_type_on_envoy_headers"), "unknown value %d", int32(t))
	}
	return false, pc, nil
}

// buildHCMCodec reads the connection manager's codec options beside
// its timeouts: the HTTP/1.1 header_key_format,
// stream_error_on_invalid_http_message (and the HTTP/1.1 override of
// it), drain_timeout and delayed_close_timeout.
func buildHCMCodec(pb *hcmv3.HttpConnectionManager, path string, h *HTTPConnectionManager) error {
	h1Path := joinPath(path, "http_protocol_options")
	var err error
	if h.ProperCaseHeaderKeys, h.PreserveCase, err = headerKeyFormat(pb.GetHttpProtocolOptions(), h1Path); err != nil {
		return err
	}
	// Envoy's parseHttp1Settings: the protocol options' override, else
	// the connection manager's value, else false.
	h.StreamErrorOnInvalidHTTPMessage = pb.GetStreamErrorOnInvalidHttpMessage().GetValue()
	if o := pb.GetHttpProtocolOptions().GetOverrideStreamErrorOnInvalidHttpMessage(); o != nil {
		h.StreamErrorOnInvalidHTTPMessage = o.GetValue()
	}
	if d := pb.GetDrainTimeout(); d != nil {
		v, err := nonNegative(d, joinPath(path, "drain_timeout"))
		if err != nil {
			return err
		}
		h.DrainTimeout = &v
	}
	if d := pb.GetDelayedCloseTimeout(); d != nil {
		v, err := nonNegative(d, joinPath(path, "delayed_close_timeout"))
		if err != nil {
			return err
		}
		h.DelayedCloseTimeout = &v
	}
	return nil
}
