package config

import (
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"

	// Every message a config may name in an "@type" must be linked into
	// the binary, or protojson cannot resolve it. These are the ones the
	// model implements, plus those commonly present in configs we accept
	// (access loggers under admin) or reject with a precise message
	// (network wasm, tcp_proxy).
	udpav1 "github.com/cncf/xds/go/udpa/type/v1"
	xdsv3 "github.com/cncf/xds/go/xds/type/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/wasm/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	_ "google.golang.org/protobuf/types/known/structpb"
	_ "google.golang.org/protobuf/types/known/wrapperspb"
)

// Full names of the messages the loader treats specially.
const (
	udpaTypedStructName protoreflect.FullName = "udpa.type.v1.TypedStruct"
	xdsTypedStructName  protoreflect.FullName = "xds.type.v3.TypedStruct"

	hcmName             protoreflect.FullName = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
	routerName          protoreflect.FullName = "envoy.extensions.filters.http.router.v3.Router"
	httpWasmName        protoreflect.FullName = "envoy.extensions.filters.http.wasm.v3.Wasm"
	httpProtocolOptName protoreflect.FullName = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

// Filter names that select a filter when it has no typed_config (Envoy
// looks the factory up by name then), old and current spellings.
var (
	routerFilterNames = map[string]bool{
		"envoy.filters.http.router": true,
		"envoy.router":              true,
	}
	httpWasmFilterNames = map[string]bool{
		"envoy.filters.http.wasm": true,
	}
	hcmFilterNames = map[string]bool{
		"envoy.filters.network.http_connection_manager": true,
		"envoy.http_connection_manager":                 true,
	}
	// Keys of cluster.typed_extension_protocol_options that name the
	// upstream HTTP protocol options.
	httpProtocolOptionsKeys = map[string]bool{
		"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": true,
		"envoy.upstreams.http.http_protocol_options":             true,
	}
)

// isTypedStruct reports whether name is one of the two TypedStruct
// wrappers (a type_url plus a Struct holding the real message as JSON).
func isTypedStruct(name protoreflect.FullName) bool {
	return name == udpaTypedStructName || name == xdsTypedStructName
}

// findType resolves an "@type" / type_url to a linked message type.
func findType(url string) (protoreflect.MessageType, error) {
	return protoregistry.GlobalTypes.FindMessageByURL(url)
}

// unpackAny returns the message an Any carries, looking through
// TypedStruct wrappers, and the path of that message relative to the
// Any (".value" per wrapper). An empty Any (typed_config: {}) returns a
// nil message and no error.
func unpackAny(a *anypb.Any, path string) (proto.Message, string, error) {
	if a == nil || a.GetTypeUrl() == "" {
		return nil, path, nil
	}
	msg, err := a.UnmarshalNew()
	if err != nil {
		return nil, path, fieldError(path, "cannot decode %q: %v", a.GetTypeUrl(), err)
	}
	for {
		var typeURL string
		var value proto.Message
		switch ts := msg.(type) {
		case *udpav1.TypedStruct:
			typeURL, value = ts.GetTypeUrl(), ts.GetValue()
		case *xdsv3.TypedStruct:
			typeURL, value = ts.GetTypeUrl(), ts.GetValue()
		default:
			return msg, path, nil
		}
		mt, err := findType(typeURL)
		if err != nil {
			return nil, path, notSupportedType(path, typeURL)
		}
		path = joinPath(path, "value")
		inner := mt.New().Interface()
		if value != nil {
			js, err := protojson.Marshal(value)
			if err != nil {
				return nil, path, fieldError(path, "%v", err)
			}
			if err := protojson.Unmarshal(js, inner); err != nil {
				return nil, path, fieldError(path, "as %s: %v", mt.Descriptor().FullName(), err)
			}
		}
		msg = inner
	}
}

// messageName is the full name of m, or "" for nil.
func messageName(m proto.Message) protoreflect.FullName {
	if m == nil {
		return ""
	}
	return m.ProtoReflect().Descriptor().FullName()
}

// describeKind names a JSON value's kind for error messages, and its
// value unless it is secret.
func describeKind(v any, secret bool) string {
	if secret {
		switch v.(type) {
		case string:
			return "a string"
		case bool:
			return "a boolean"
		case json.Number, float64:
			return "a number"
		}
	}
	switch v := v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case string:
		return fmt.Sprintf("string %q", v)
	case bool:
		return fmt.Sprintf("boolean %v", v)
	default:
		return fmt.Sprintf("number %v", v)
	}
}
