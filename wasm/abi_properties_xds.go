package wasm

import (
	"encoding/binary"
	"math"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/wasmproxy/wasmproxy/filter"
)

// legacyAliases are the top-level Wasm attribute names Envoy dropped in
// 1.33 in favour of xds.*; plugins in the wild (Istio-era) still use
// them, so this host keeps them.
var legacyAliases = map[string]string{
	"node":                   "node",
	"cluster_name":           "cluster_name",
	"cluster_metadata":       "cluster_metadata",
	"listener_direction":     "listener_direction",
	"listener_metadata":      "listener_metadata",
	"route_name":             "route_name",
	"route_metadata":         "route_metadata",
	"upstream_host_metadata": "upstream_host_metadata",
}

// xdsNode resolves xds.node[.field...]: the bootstrap Node as serialized
// envoy.config.core.v3.Node, or one of its fields (metadata as a map).
func (inst *instance) xdsNode(rest [][]byte) ([]byte, status) {
	node := inst.vm.host.node
	if len(rest) == 0 {
		if node == nil {
			return inst.value(""), statusOK
		}
		return inst.value(string(node.Proto)), statusOK
	}
	if node == nil {
		return nil, statusNotFound
	}
	var n corev3.Node
	if err := proto.Unmarshal(node.Proto, &n); err != nil {
		return nil, statusNotFound
	}
	return inst.protoPath(n.ProtoReflect(), rest)
}

// metadataValue resolves xds.*_metadata[.filter_metadata.ns.key...]:
// the whole Metadata serialized, or a path into it.
func (inst *instance) metadataValue(md map[string]map[string]any, rest [][]byte) ([]byte, status) {
	m := &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{}}
	for ns, fields := range md {
		s, err := structpb.NewStruct(fields)
		if err != nil {
			continue
		}
		m.FilterMetadata[ns] = s
	}
	return inst.protoPath(m.ProtoReflect(), rest)
}

// protoPath walks a message by proto field names (maps by key, lists by
// index, Struct/Value as maps and JSON values) and encodes the result as
// Envoy does (§2.2).
func (inst *instance) protoPath(m protoreflect.Message, rest [][]byte) ([]byte, status) {
	if len(rest) == 0 {
		return inst.encodeMessage(m)
	}
	switch v := m.Interface().(type) {
	case *structpb.Struct:
		f, ok := v.GetFields()[string(rest[0])]
		if !ok {
			return nil, statusNotFound
		}
		return inst.protoPath(f.ProtoReflect(), rest[1:])
	case *structpb.Value:
		if s := v.GetStructValue(); s != nil {
			return inst.protoPath(s.ProtoReflect(), rest)
		}
		if l := v.GetListValue(); l != nil {
			i, err := strconv.Atoi(string(rest[0]))
			if err != nil || i < 0 || i >= len(l.Values) {
				return nil, statusNotFound
			}
			return inst.protoPath(l.Values[i].ProtoReflect(), rest[1:])
		}
		return nil, statusNotFound
	}
	fd := m.Descriptor().Fields().ByName(protoreflect.Name(rest[0]))
	if fd == nil {
		return nil, statusNotFound
	}
	val := m.Get(fd)
	rest = rest[1:]
	switch {
	case fd.IsMap():
		if len(rest) == 0 {
			return inst.encodeMap(fd, val.Map())
		}
		mv := val.Map().Get(protoreflect.ValueOfString(string(rest[0])).MapKey())
		if !mv.IsValid() {
			return nil, statusNotFound
		}
		if fd.MapValue().Message() != nil {
			return inst.protoPath(mv.Message(), rest[1:])
		}
		return inst.leafScalar(fd.MapValue(), mv, rest[1:])
	case fd.IsList():
		if len(rest) == 0 {
			return nil, statusNotFound
		}
		i, err := strconv.Atoi(string(rest[0]))
		if err != nil || i < 0 || i >= val.List().Len() {
			return nil, statusNotFound
		}
		if fd.Message() != nil {
			return inst.protoPath(val.List().Get(i).Message(), rest[1:])
		}
		return inst.leafScalar(fd, val.List().Get(i), rest[1:])
	case fd.Message() != nil:
		if !m.Has(fd) {
			return nil, statusNotFound
		}
		return inst.protoPath(val.Message(), rest)
	}
	return inst.leafScalar(fd, val, rest)
}

func (inst *instance) leafScalar(fd protoreflect.FieldDescriptor, v protoreflect.Value, rest [][]byte) ([]byte, status) {
	if len(rest) != 0 {
		return nil, statusNotFound
	}
	b, ok := encodeScalar(fd.Kind(), v)
	if !ok {
		return nil, statusNotFound
	}
	inst.scratch = append(inst.scratch[:0], b...)
	return inst.scratch, statusOK
}

func encodeScalar(k protoreflect.Kind, v protoreflect.Value) ([]byte, bool) {
	switch k {
	case protoreflect.StringKind:
		return []byte(v.String()), true
	case protoreflect.BytesKind:
		return v.Bytes(), true
	case protoreflect.BoolKind:
		if v.Bool() {
			return []byte{1}, true
		}
		return []byte{0}, true
	case protoreflect.EnumKind:
		return binary.LittleEndian.AppendUint64(nil, uint64(v.Enum())), true
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return binary.LittleEndian.AppendUint64(nil, uint64(v.Int())), true
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return binary.LittleEndian.AppendUint64(nil, v.Uint()), true
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return binary.LittleEndian.AppendUint64(nil, math.Float64bits(v.Float())), true
	}
	return nil, false
}

// encodeMessage encodes a whole value: Struct as a pair-encoded map,
// Value as its JSON value, other messages as serialized protobuf.
func (inst *instance) encodeMessage(m protoreflect.Message) ([]byte, status) {
	b, ok := encodeWhole(m)
	if !ok {
		return nil, statusNotFound
	}
	inst.scratch = append(inst.scratch[:0], b...)
	return inst.scratch, statusOK
}

func encodeWhole(m protoreflect.Message) ([]byte, bool) {
	switch v := m.Interface().(type) {
	case *structpb.Struct:
		var pairs []filter.Pair
		for k, f := range v.GetFields() {
			b, ok := encodeWhole(f.ProtoReflect())
			if !ok {
				continue
			}
			pairs = append(pairs, filter.Pair{Key: k, Value: string(b)})
		}
		return appendPairs(nil, pairs), true
	case *structpb.Value:
		switch k := v.GetKind().(type) {
		case *structpb.Value_StringValue:
			return []byte(k.StringValue), true
		case *structpb.Value_NumberValue:
			return binary.LittleEndian.AppendUint64(nil, math.Float64bits(k.NumberValue)), true
		case *structpb.Value_BoolValue:
			if k.BoolValue {
				return []byte{1}, true
			}
			return []byte{0}, true
		case *structpb.Value_StructValue:
			return encodeWhole(k.StructValue.ProtoReflect())
		case *structpb.Value_ListValue:
			var pairs []filter.Pair
			for _, e := range k.ListValue.Values {
				b, _ := encodeWhole(e.ProtoReflect())
				pairs = append(pairs, filter.Pair{Key: string(b)})
			}
			return appendPairs(nil, pairs), true
		}
		return nil, false
	}
	b, err := proto.Marshal(m.Interface())
	return b, err == nil
}

func (inst *instance) encodeMap(fd protoreflect.FieldDescriptor, mp protoreflect.Map) ([]byte, status) {
	var pairs []filter.Pair
	mp.Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
		var b []byte
		if fd.MapValue().Message() != nil {
			b, _ = encodeWhole(v.Message())
		} else {
			b, _ = encodeScalar(fd.MapValue().Kind(), v)
		}
		pairs = append(pairs, filter.Pair{Key: k.String(), Value: string(b)})
		return true
	})
	inst.scratch = appendPairs(inst.scratch[:0], pairs)
	return inst.scratch, statusOK
}

// streamXDS resolves the stream-dependent xds.* names (and their legacy
// top-level aliases).
func (inst *instance) streamXDS(info *filter.StreamInfo, name string, rest [][]byte) ([]byte, status) {
	str := func(v string) ([]byte, status) {
		if v == "" {
			return nil, statusNotFound
		}
		return inst.leafString(rest, v)
	}
	md := func(m map[string]map[string]any) ([]byte, status) {
		if m == nil {
			m = map[string]map[string]any{}
		}
		return inst.metadataValue(m, rest)
	}
	switch name {
	case "cluster_name":
		return str(info.ClusterName)
	case "route_name":
		return str(info.RouteName)
	case "virtual_host_name":
		return str(info.VirtualHost)
	case "filter_chain_name":
		return str(info.FilterChainName)
	case "listener_direction":
		return inst.leafInt(rest, 0) // UNSPECIFIED: listeners carry no direction
	case "cluster_metadata":
		return md(info.ClusterMetadata)
	case "route_metadata":
		return md(info.RouteMetadata)
	case "virtual_host_metadata":
		return md(info.VirtualHostMetadata)
	case "listener_metadata":
		return md(info.ListenerMetadata)
	case "upstream_host_metadata":
		return md(nil)
	}
	return nil, statusNotFound
}

// filterStateProperty reads filter_state[.key]: a stored value verbatim.
func (inst *instance) filterStateProperty(info *filter.StreamInfo, rest [][]byte) ([]byte, status) {
	if len(rest) != 1 {
		return nil, statusNotFound
	}
	v, ok := info.FilterState.Get(string(rest[0]))
	if !ok {
		return nil, statusNotFound
	}
	inst.scratch = append(inst.scratch[:0], v...)
	return inst.scratch, statusOK
}
