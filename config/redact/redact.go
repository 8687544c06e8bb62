// Package redact hides secrets before configuration or errors are shown:
// in admin output (/config_dump and every other endpoint) and in logs.
//
// For configuration it does what Envoy's MessageUtil::redact does
// (source/common/protobuf/utility.cc): every field annotated
// (udpa.annotations.sensitive) in the protos, and everything below such
// a field, is redacted — string and bytes values become "[redacted]"
// (bytes print as its base64, "W3JlZGFjdGVkXQ==", as in Envoy's dump),
// other scalars are cleared. So a TLS private_key shows
// {"inline_string": "[redacted]"} (and, as in Envoy, {"filename":
// "[redacted]"}), session ticket keys, a Secret's generic_secret and a
// certificate's password likewise. The walk goes through repeated and
// map fields and into Any and TypedStruct payloads by their type URL,
// so every sensitive field present and future is covered, not a list.
//
// Beyond Envoy, every string anywhere (sensitive or not) goes through
// Text, which hides the password of a URL's userinfo and PEM private-key
// blocks: a remote plugin URL with basic-auth credentials, or a key
// pasted into a plugin's configuration, never shows either.
package redact

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/cncf/xds/go/udpa/annotations"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/structpb"
)

// Redacted replaces a secret, as in Envoy.
const Redacted = "[redacted]"

// Message redacts m in place (see the package documentation). Payloads
// of Any and TypedStruct are resolved with the global type registry; one
// whose type is not linked in is walked as a plain message, as Envoy
// does.
func Message(m proto.Message) {
	if m != nil {
		redactMessage(m.ProtoReflect(), false)
	}
}

// ProtoJSON reads data, protojson of the message type name, redacts it
// and returns it as compact protojson with proto field names (Envoy's
// config dump form). An error never quotes data.
func ProtoJSON(data []byte, name protoreflect.FullName) ([]byte, error) {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(name)
	if err != nil {
		return nil, fmt.Errorf("redacting %s: type not linked in", name)
	}
	m := mt.New().Interface()
	if err := protojson.Unmarshal(data, m); err != nil {
		// protojson quotes the offending token, which may be the
		// secret itself: say where, not what.
		return nil, fmt.Errorf("redacting %s: not valid protojson of it", name)
	}
	Message(m)
	out, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("redacting %s: %v", name, err)
	}
	// protojson varies its spacing on purpose; compact it so the output
	// is stable.
	var compact bytes.Buffer
	if err := json.Compact(&compact, out); err != nil {
		return nil, fmt.Errorf("redacting %s: %v", name, err)
	}
	return compact.Bytes(), nil
}

// The field names of Any, udpa.type.v1.TypedStruct and
// xds.type.v3.TypedStruct.
const (
	typeURLField protoreflect.Name = "type_url"
	valueField   protoreflect.Name = "value"
)

func redactMessage(m protoreflect.Message, ancestorSensitive bool) {
	switch m.Descriptor().FullName() {
	case "google.protobuf.Any":
		if redactAny(m, ancestorSensitive) {
			return
		}
	case "udpa.type.v1.TypedStruct", "xds.type.v3.TypedStruct":
		if redactTypedStruct(m, ancestorSensitive) {
			return
		}
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		sensitive := ancestorSensitive || Sensitive(fd)
		switch {
		case sensitive && fd.Message() == nil && !isText(fd):
			m.Clear(fd) // secret numbers or enums: Envoy clears them
		case fd.IsMap():
			redactMap(m.Mutable(fd).Map(), fd.MapValue(), sensitive)
		case fd.IsList():
			list := m.Mutable(fd).List()
			for i := 0; i < list.Len(); i++ {
				if nv, set := redactValue(list.Get(i), fd, sensitive); set {
					list.Set(i, nv)
				}
			}
		case fd.Message() != nil:
			redactMessage(m.Mutable(fd).Message(), sensitive)
		default:
			if nv, set := redactValue(v, fd, sensitive); set {
				m.Set(fd, nv)
			}
		}
		return true
	})
}

// redactMap redacts the values of a map, never its keys (redacting keys
// would leave several "[redacted]" keys, as Envoy notes).
func redactMap(mp protoreflect.Map, valueFD protoreflect.FieldDescriptor, sensitive bool) {
	var keys []protoreflect.MapKey
	mp.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
		keys = append(keys, k)
		return true
	})
	for _, k := range keys {
		switch {
		case valueFD.Message() != nil:
			redactMessage(mp.Mutable(k).Message(), sensitive)
		case sensitive && !isText(valueFD):
			mp.Set(k, valueFD.Default())
		default:
			if nv, set := redactValue(mp.Get(k), valueFD, sensitive); set {
				mp.Set(k, nv)
			}
		}
	}
}

// redactValue handles one value of fd that is not a secret number (a
// singular field, or a list element): it returns the value to store and
// whether it changed.
func redactValue(v protoreflect.Value, fd protoreflect.FieldDescriptor, sensitive bool) (protoreflect.Value, bool) {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		redactMessage(v.Message(), sensitive)
		return v, false
	case protoreflect.StringKind:
		if sensitive {
			return protoreflect.ValueOfString(Redacted), true
		}
		if s := Text(v.String()); s != v.String() {
			return protoreflect.ValueOfString(s), true
		}
	case protoreflect.BytesKind:
		if sensitive {
			return protoreflect.ValueOfBytes([]byte(Redacted)), true
		}
	}
	return v, false
}

func isText(fd protoreflect.FieldDescriptor) bool {
	return fd.Kind() == protoreflect.StringKind || fd.Kind() == protoreflect.BytesKind
}

// Sensitive reports whether fd carries the udpa.annotations.sensitive
// option: its value, and everything below it, is secret.
func Sensitive(fd protoreflect.FieldDescriptor) bool {
	opts := fd.Options()
	if opts == nil {
		return false
	}
	s, _ := proto.GetExtension(opts, annotations.E_Sensitive).(bool)
	return s
}

// redactAny unpacks an Any by its type URL, redacts the payload and packs
// it again. It returns false, for the caller to walk the Any as a plain
// message, when the type is not linked in or the payload does not
// decode.
func redactAny(m protoreflect.Message, sensitive bool) bool {
	fields := m.Descriptor().Fields()
	typeURLFD, valueFD := fields.ByName(typeURLField), fields.ByName(valueField)
	if typeURLFD == nil || valueFD == nil {
		return false
	}
	value := m.Get(valueFD).Bytes()
	if len(value) == 0 {
		return true // nothing inside
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(m.Get(typeURLFD).String())
	if err != nil {
		return false
	}
	payload := mt.New().Interface()
	if err := proto.Unmarshal(value, payload); err != nil {
		return false
	}
	redactMessage(payload.ProtoReflect(), sensitive)
	packed, err := proto.MarshalOptions{Deterministic: true}.Marshal(payload)
	if err != nil {
		return false
	}
	m.Set(valueFD, protoreflect.ValueOfBytes(packed))
	return true
}

// redactTypedStruct reads the Struct of a TypedStruct as the message its
// type_url names (through JSON, as Envoy does), redacts it and writes it
// back. It returns false when that cannot be done, for the caller to
// walk the TypedStruct as a plain message.
func redactTypedStruct(m protoreflect.Message, sensitive bool) bool {
	fields := m.Descriptor().Fields()
	typeURLFD, valueFD := fields.ByName(typeURLField), fields.ByName(valueField)
	if typeURLFD == nil || valueFD == nil || valueFD.Message() == nil {
		return false
	}
	if !m.Has(valueFD) {
		return true
	}
	st, ok := m.Get(valueFD).Message().Interface().(*structpb.Struct)
	if !ok {
		return false
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(m.Get(typeURLFD).String())
	if err != nil {
		return false
	}
	js, err := protojson.Marshal(st)
	if err != nil {
		return false
	}
	typed := mt.New().Interface()
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(js, typed); err != nil {
		return false
	}
	redactMessage(typed.ProtoReflect(), sensitive)
	if js, err = (protojson.MarshalOptions{UseProtoNames: true}).Marshal(typed); err != nil {
		return false
	}
	back := &structpb.Struct{}
	if err := protojson.Unmarshal(js, back); err != nil {
		return false
	}
	m.Set(valueFD, protoreflect.ValueOfMessage(back.ProtoReflect()))
	return true
}

var (
	// userinfo is the userinfo of a URL anywhere in a text: a scheme,
	// "://", then everything up to "@" that cannot end the authority.
	userinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.\-]*://)([^\s/?#@\[\]"'<>\\]+)@`)
	// pemKey is a PEM private-key block, or the start of one cut short.
	pemKey = regexp.MustCompile(`-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?s:.*?)(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)`)
)

// Text hides the credentials a free text may carry: the password of a
// URL's userinfo ("https://user:[redacted]@host/…"; a userinfo without a
// password, often a token, is hidden whole: "https://[redacted]@host/…")
// and PEM private-key blocks (each becomes "[redacted]"). It is cheap on
// text that has neither, so loggers can run it on every line.
func Text(s string) string {
	if strings.Contains(s, "://") {
		s = userinfo.ReplaceAllStringFunc(s, func(match string) string {
			sub := userinfo.FindStringSubmatch(match)
			scheme, info := sub[1], sub[2]
			if user, _, hasPassword := strings.Cut(info, ":"); hasPassword {
				return scheme + user + ":" + Redacted + "@"
			}
			return scheme + Redacted + "@"
		})
	}
	if strings.Contains(s, "PRIVATE KEY-----") {
		s = pemKey.ReplaceAllLiteralString(s, Redacted)
	}
	return s
}
