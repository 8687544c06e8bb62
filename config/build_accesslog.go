package config

import (
	"fmt"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/wasmproxy/wasmproxy/accesslog"
)

// Access logger payloads (the typed_config of an AccessLog).
const (
	fileAccessLogName   protoreflect.FullName = "envoy.extensions.access_loggers.file.v3.FileAccessLog"
	stdoutAccessLogName protoreflect.FullName = "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"
	stderrAccessLogName protoreflect.FullName = "envoy.extensions.access_loggers.stream.v3.StderrAccessLog"
)

// Logger names that select a stream logger without a typed_config.
var (
	stdoutAccessLogNames = map[string]bool{"envoy.access_loggers.stdout": true}
	stderrAccessLogNames = map[string]bool{"envoy.access_loggers.stderr": true}
)

// buildAccessLogs reads an access_log list (of an HTTP connection manager
// or a tcp_proxy). Format strings are parsed here, so a bad operator is
// an error naming its field.
func buildAccessLogs(pbs []*accesslogv3.AccessLog, path string) ([]*AccessLog, error) {
	var out []*AccessLog
	for i, pb := range pbs {
		al, err := buildAccessLog(pb, indexPath(path, i))
		if err != nil {
			return nil, err
		}
		out = append(out, al)
	}
	return out, nil
}

func buildAccessLog(pb *accesslogv3.AccessLog, path string) (*AccessLog, error) {
	al := &AccessLog{Name: pb.GetName()}
	tcPath := joinPath(path, "typed_config")
	payload, payloadPath, err := unpackAny(pb.GetTypedConfig(), tcPath)
	if err != nil {
		return nil, err
	}
	var format *corev3.SubstitutionFormatString
	formatPath := joinPath(payloadPath, "log_format") // where a bad format string is
	switch c := payload.(type) {
	case *filev3.FileAccessLog:
		al.Path = c.GetPath()
		if al.Path == "" {
			return nil, fieldError(joinPath(payloadPath, "path"), "missing: the file access logger needs a path")
		}
		switch f := c.GetAccessLogFormat().(type) {
		case *filev3.FileAccessLog_Format:
			al.Format = f.Format
			formatPath = joinPath(payloadPath, "format")
		case *filev3.FileAccessLog_JsonFormat:
			al.JSON = f.JsonFormat.AsMap()
			formatPath = joinPath(payloadPath, "json_format")
		case *filev3.FileAccessLog_LogFormat:
			format = f.LogFormat
		case nil:
		default:
			return nil, notSupported(payloadPath, "this access log format")
		}
	case *streamv3.StdoutAccessLog:
		al.Path = "/dev/stdout"
		format = c.GetLogFormat()
	case *streamv3.StderrAccessLog:
		al.Path = "/dev/stderr"
		format = c.GetLogFormat()
	case nil:
		switch name := pb.GetName(); {
		case stdoutAccessLogNames[name]:
			al.Path = "/dev/stdout"
		case stderrAccessLogNames[name]:
			al.Path = "/dev/stderr"
		default:
			return nil, fieldError(tcPath, "missing: access logger %q needs its typed_config", name)
		}
	default:
		return nil, notSupportedType(tcPath, "type.googleapis.com/"+string(messageName(payload)))
	}
	if format != nil {
		if err := buildLogFormat(format, formatPath, al); err != nil {
			return nil, err
		}
		switch format.GetFormat().(type) {
		case *corev3.SubstitutionFormatString_TextFormat:
			formatPath = joinPath(formatPath, "text_format")
		case *corev3.SubstitutionFormatString_TextFormatSource:
			formatPath = joinPath(formatPath, "text_format_source")
		case *corev3.SubstitutionFormatString_JsonFormat:
			formatPath = joinPath(formatPath, "json_format")
		}
	}
	if err := checkLogFormat(al, formatPath); err != nil {
		return nil, err
	}
	if f := pb.GetFilter(); f != nil {
		if al.Filter, err = buildAccessLogFilter(f, joinPath(path, "filter")); err != nil {
			return nil, err
		}
	}
	return al, nil
}

// buildLogFormat reads a SubstitutionFormatString.
func buildLogFormat(pb *corev3.SubstitutionFormatString, path string, al *AccessLog) error {
	al.OmitEmptyValues = pb.GetOmitEmptyValues()
	switch f := pb.GetFormat().(type) {
	case *corev3.SubstitutionFormatString_TextFormat:
		al.Format = f.TextFormat
	case *corev3.SubstitutionFormatString_JsonFormat:
		al.JSON = f.JsonFormat.AsMap()
	case *corev3.SubstitutionFormatString_TextFormatSource:
		src := f.TextFormatSource
		switch s := src.GetSpecifier().(type) {
		case *corev3.DataSource_InlineString:
			al.Format = s.InlineString
		case *corev3.DataSource_InlineBytes:
			al.Format = string(s.InlineBytes)
		default:
			return notSupported(joinPath(path, "text_format_source"), "only inline_string and inline_bytes")
		}
	}
	return nil
}

// checkLogFormat parses the logger's format, as the proxy will; path
// names the field that holds it.
func checkLogFormat(al *AccessLog, path string) error {
	var err error
	if al.JSON != nil {
		_, err = accesslog.ParseJSON(al.JSON)
	} else {
		_, err = accesslog.Parse(al.Format)
	}
	if err != nil {
		return fieldError(path, "%v", err)
	}
	return nil
}

var comparisonOps = map[accesslogv3.ComparisonFilter_Op]string{
	accesslogv3.ComparisonFilter_EQ: "EQ",
	accesslogv3.ComparisonFilter_GE: "GE",
	accesslogv3.ComparisonFilter_LE: "LE",
}

func buildComparison(pb *accesslogv3.ComparisonFilter, path string) (*AccessLogComparison, error) {
	if pb == nil {
		return nil, fieldError(joinPath(path, "comparison"), "missing")
	}
	op, ok := comparisonOps[pb.GetOp()]
	if !ok {
		return nil, notSupported(joinPath(path, "comparison.op"), pb.GetOp().String())
	}
	return &AccessLogComparison{Op: op, Value: pb.GetValue().GetDefaultValue()}, nil
}

// buildAccessLogFilter reads one AccessLogFilter; the allow-list has
// already refused the kinds that are not supported.
func buildAccessLogFilter(pb *accesslogv3.AccessLogFilter, path string) (*AccessLogFilter, error) {
	f := &AccessLogFilter{}
	var err error
	switch s := pb.GetFilterSpecifier().(type) {
	case *accesslogv3.AccessLogFilter_StatusCodeFilter:
		f.StatusCode, err = buildComparison(s.StatusCodeFilter.GetComparison(), joinPath(path, "status_code_filter"))
	case *accesslogv3.AccessLogFilter_DurationFilter:
		f.Duration, err = buildComparison(s.DurationFilter.GetComparison(), joinPath(path, "duration_filter"))
	case *accesslogv3.AccessLogFilter_NotHealthCheckFilter:
		f.NotHealthCheck = true
	case *accesslogv3.AccessLogFilter_AndFilter:
		f.And, err = buildAccessLogFilters(s.AndFilter.GetFilters(), joinPath(path, "and_filter.filters"))
	case *accesslogv3.AccessLogFilter_OrFilter:
		f.Or, err = buildAccessLogFilters(s.OrFilter.GetFilters(), joinPath(path, "or_filter.filters"))
	case *accesslogv3.AccessLogFilter_HeaderFilter:
		var h HeaderMatcher
		h, err = buildHeaderMatcher(s.HeaderFilter.GetHeader(), joinPath(path, "header_filter.header"))
		f.Header = &h
	case *accesslogv3.AccessLogFilter_ResponseFlagFilter:
		f.ResponseFlag = &AccessLogResponseFlags{Flags: s.ResponseFlagFilter.GetFlags()}
	default:
		return nil, notSupported(path, fmt.Sprintf("access log filter %T", s))
	}
	if err != nil {
		return nil, err
	}
	return f, nil
}

func buildAccessLogFilters(pbs []*accesslogv3.AccessLogFilter, path string) ([]*AccessLogFilter, error) {
	var out []*AccessLogFilter
	for i, pb := range pbs {
		f, err := buildAccessLogFilter(pb, indexPath(path, i))
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}
