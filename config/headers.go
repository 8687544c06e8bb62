package config

import (
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/wasmproxy/wasmproxy/accesslog"
)

// HeaderAppendAction is HeaderValueOption.append_action.
type HeaderAppendAction string

const (
	// AppendIfExistsOrAdd adds a value beside any the header has
	// (Envoy's default, and the deprecated append: true).
	AppendIfExistsOrAdd HeaderAppendAction = "APPEND_IF_EXISTS_OR_ADD"
	// AddIfAbsent adds the header only when it has no value.
	AddIfAbsent HeaderAppendAction = "ADD_IF_ABSENT"
	// OverwriteIfExistsOrAdd replaces the header's values, or adds it
	// (the deprecated append: false).
	OverwriteIfExistsOrAdd HeaderAppendAction = "OVERWRITE_IF_EXISTS_OR_ADD"
	// OverwriteIfExists replaces the header's values only when it has any.
	OverwriteIfExists HeaderAppendAction = "OVERWRITE_IF_EXISTS"
)

var appendActions = map[corev3.HeaderValueOption_HeaderAppendAction]HeaderAppendAction{
	corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:    AppendIfExistsOrAdd,
	corev3.HeaderValueOption_ADD_IF_ABSENT:              AddIfAbsent,
	corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD: OverwriteIfExistsOrAdd,
	corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:        OverwriteIfExists,
}

// HeaderMutations are one level's *_headers_to_remove and
// *_headers_to_add (a route configuration, virtual host, route or
// weighted cluster), applied as Envoy's HeaderParser::evaluateHeaders:
// the removals first, then the overwrites, then the additions.
type HeaderMutations struct {
	// Remove are lower-cased header names.
	Remove []string            `json:"remove,omitempty"`
	Add    []HeaderValueOption `json:"add,omitempty"`
}

// Empty reports that m changes nothing (m may be nil).
func (m *HeaderMutations) Empty() bool { return m == nil || len(m.Remove) == 0 && len(m.Add) == 0 }

// HeaderValueOption is one header to add: Key (lower-cased) and Value,
// a format string with Envoy's command operators (%REQ(x)%,
// %DOWNSTREAM_REMOTE_ADDRESS%, … as package accesslog renders them).
type HeaderValueOption struct {
	Key    string             `json:"key"`
	Value  string             `json:"value"`
	Action HeaderAppendAction `json:"append_action"`
	// KeepEmptyValue adds the header even when Value renders empty.
	KeepEmptyValue bool `json:"keep_empty_value,omitempty"`
	format         *accesslog.Formatter
}

// Render is the option's value for one request.
func (o *HeaderValueOption) Render(e *accesslog.Entry) string {
	if o.format == nil {
		return o.Value
	}
	return o.format.FormatHeaderValue(e)
}

// buildHeaderMutations reads the *_headers_to_add and
// *_headers_to_remove of one level; nil when both are empty. Envoy
// refuses pseudo-headers and host in either list.
func buildHeaderMutations(add []*corev3.HeaderValueOption, remove []string, addPath, removePath string) (*HeaderMutations, error) {
	if len(add) == 0 && len(remove) == 0 {
		return nil, nil
	}
	m := &HeaderMutations{}
	for i, name := range remove {
		if !modifiableHeader(name) {
			return nil, fieldError(indexPath(removePath, i), ":-prefixed or host headers may not be removed (%q)", name)
		}
		m.Remove = append(m.Remove, strings.ToLower(name))
	}
	for i, pb := range add {
		o, err := buildHeaderValueOption(pb, indexPath(addPath, i))
		if err != nil {
			return nil, err
		}
		m.Add = append(m.Add, o)
	}
	return m, nil
}

// BuildHeaderValueOption reads one HeaderValueOption at path as the
// router's header mutations do (format strings, append_action, the
// deprecated append), for native filters that add headers.
func BuildHeaderValueOption(pb *corev3.HeaderValueOption, path string) (HeaderValueOption, error) {
	return buildHeaderValueOption(pb, path)
}

func buildHeaderValueOption(pb *corev3.HeaderValueOption, path string) (HeaderValueOption, error) {
	o := HeaderValueOption{Key: strings.ToLower(pb.GetHeader().GetKey()), Value: pb.GetHeader().GetValue(), KeepEmptyValue: pb.GetKeepEmptyValue()}
	if len(pb.GetHeader().GetRawValue()) > 0 {
		return o, notSupported(joinPath(path, "header.raw_value"), "use value")
	}
	if !modifiableHeader(o.Key) {
		return o, fieldError(joinPath(path, "header.key"), ":-prefixed or host headers may not be modified (%q)", o.Key)
	}
	var ok bool
	if o.Action, ok = appendActions[pb.GetAppendAction()]; !ok {
		return o, fieldError(joinPath(path, "append_action"), "unknown value %d", pb.GetAppendAction())
	}
	if a := pb.GetAppend(); a != nil {
		// Envoy's words (router/header_parser.cc).
		if pb.GetAppendAction() != corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD {
			return o, fieldError(path, "Both append and append_action are set and it's not allowed")
		}
		if !a.GetValue() {
			o.Action = OverwriteIfExistsOrAdd
		}
	}
	if strings.Contains(o.Value, "%") {
		f, err := accesslog.Parse(o.Value)
		if err != nil {
			return o, fieldError(joinPath(path, "header.value"), "%s", strings.TrimPrefix(err.Error(), "access log format: "))
		}
		o.format = f
	}
	return o, nil
}

// ModifiableHeader reports whether a filter may add, set or remove the
// header (Envoy's HeaderUtility::isModifiableHeader: not a pseudo-header,
// not host).
func ModifiableHeader(name string) bool { return modifiableHeader(name) }

// modifiableHeader is Envoy's HeaderUtility::isModifiableHeader.
func modifiableHeader(name string) bool {
	return (name == "" || name[0] != ':') && !strings.EqualFold(name, "host")
}

// headerLevel is what RouteConfiguration, VirtualHost, Route and
// WeightedCluster.ClusterWeight have in common.
type headerLevel interface {
	GetRequestHeadersToAdd() []*corev3.HeaderValueOption
	GetRequestHeadersToRemove() []string
	GetResponseHeadersToAdd() []*corev3.HeaderValueOption
	GetResponseHeadersToRemove() []string
}

// buildHeaderLevel reads one level's request and response mutations.
func buildHeaderLevel(pb headerLevel, path string) (req, resp *HeaderMutations, err error) {
	if req, err = buildHeaderMutations(pb.GetRequestHeadersToAdd(), pb.GetRequestHeadersToRemove(),
		joinPath(path, "request_headers_to_add"), joinPath(path, "request_headers_to_remove")); err != nil {
		return nil, nil, err
	}
	if resp, err = buildHeaderMutations(pb.GetResponseHeadersToAdd(), pb.GetResponseHeadersToRemove(),
		joinPath(path, "response_headers_to_add"), joinPath(path, "response_headers_to_remove")); err != nil {
		return nil, nil, err
	}
	return req, resp, nil
}
