package config

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/wasmproxy/wasmproxy/config/redact"
	"github.com/wasmproxy/wasmproxy/filters"
)

// The JSON stage runs between YAML→JSON and protojson. It walks the
// generic JSON value against the proto descriptors and
//
//   - rewrites enum names to their exact proto spelling (Envoy accepts
//     codec_type: auto, lb_policy: round_robin; protojson does not), and
//     only where the field is an enum, so strings elsewhere are untouched;
//   - descends into Any payloads by their "@type", and into the Struct of
//     a TypedStruct as the message its type_url names;
//   - reports unknown fields, unknown type URLs, unknown enum values and
//     values of the wrong JSON kind with their field path, which protojson
//     cannot do; under a sensitive field (a private key, session ticket
//     keys, a generic secret: see package redact) the error never quotes
//     the value.
//
// It changes nothing else: the result unmarshals to the same message the
// input would, with enum names fixed.

// normalizeMessage checks and rewrites v, the JSON form of a message of
// type md at path. It returns the (possibly replaced) value.
func normalizeMessage(v any, md protoreflect.MessageDescriptor, path string, w walk) (any, error) {
	if v == nil {
		return nil, nil // null: field unset, as protojson reads it
	}
	if md.FullName().Parent() == "google.protobuf" {
		return normalizeWellKnown(v, md, path, w)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fieldError(path, "expected an object (%s), got %s", md.Name(), describeKind(v, w.secret))
	}
	return obj, normalizeFields(obj, md, path, nil, w)
}

// normalizeFields normalises each key of obj as a field of md, except the
// keys in skip. Where w.check holds, the keys are first held against the
// allow-list (supported.go), all of this message's before any value is
// looked into, so the outermost field wasmproxy does not implement is
// the one an error names — not a type URL or a value deep inside it.
func normalizeFields(obj map[string]any, md protoreflect.MessageDescriptor, path string, skip map[string]bool, w walk) error {
	fields := md.Fields()
	fds := make(map[string]protoreflect.FieldDescriptor, len(obj))
	var unsupported protoreflect.FieldDescriptor
	for _, key := range sortedKeys(obj) {
		if skip[key] {
			continue
		}
		fd := fields.ByJSONName(key)
		if fd == nil {
			fd = fields.ByName(protoreflect.Name(key))
		}
		if fd == nil {
			return fieldError(joinPath(path, key), "unknown field (%s has no field %q)", md.FullName(), key)
		}
		fds[key] = fd
		if _, ok := supportedFields[ruleKey(fd)]; w.check && !ok && !jsonUnset(obj[key], fd) {
			if unsupported == nil || fd.Index() < unsupported.Index() {
				unsupported = fd // the allow-list check reports the first in field order
			}
		}
	}
	if unsupported != nil {
		return notSupported(joinPath(path, string(unsupported.Name())), "")
	}
	for _, key := range sortedKeys(obj) {
		fd, ok := fds[key]
		if !ok {
			continue
		}
		nv, err := normalizeField(obj[key], fd, joinPath(path, string(fd.Name())), w.into(fd))
		if err != nil {
			return err
		}
		obj[key] = nv
	}
	return nil
}

// walk is what the JSON stage carries down the tree.
type walk struct {
	// secret: under a sensitive field, errors never quote values.
	secret bool
	// check: the allow-list applies here (false inside opaque and inert
	// fields, whose contents wasmproxy passes on or ignores).
	check bool
	// payloads are the message types an Any field accepts (check only).
	payloads []protoreflect.FullName
	// native: the Any may also hold a native HTTP filter's config, whose
	// fields that filter's Parse checks (see fieldRule.native).
	native bool
}

// into is the walk for the value of fd.
func (w walk) into(fd protoreflect.FieldDescriptor) walk {
	child := walk{secret: w.secret || redact.Sensitive(fd)}
	if !w.check {
		return child
	}
	rule := supportedFields[ruleKey(fd)]
	child.check = rule.use == implemented && !rule.opaque
	child.payloads = rule.payloads
	child.native = rule.native
	if fd.Message() != nil && fd.Message().FullName() == "google.protobuf.Any" && len(rule.payloads) == 0 {
		child.check = false // an Any without payloads is taken whole
	}
	return child
}

// jsonUnset reports whether v leaves fd unset as protojson reads it: a
// null, an empty list or map, or the zero value of a scalar without
// presence (proto3 does not record "use_remote_address: false"), so the
// allow-list sees the fields the decoded message has.
func jsonUnset(v any, fd protoreflect.FieldDescriptor) bool {
	switch {
	case v == nil:
		return true
	case fd.IsList():
		l, ok := v.([]any)
		return ok && len(l) == 0
	case fd.IsMap():
		m, ok := v.(map[string]any)
		return ok && len(m) == 0
	case fd.HasPresence():
		return false
	}
	switch v := v.(type) {
	case bool:
		return !v
	case string:
		if fd.Kind() == protoreflect.EnumKind {
			ev := fd.Enum().Values().ByName(protoreflect.Name(v))
			if ev == nil {
				for i := 0; i < fd.Enum().Values().Len(); i++ {
					if strings.EqualFold(string(fd.Enum().Values().Get(i).Name()), v) {
						ev = fd.Enum().Values().Get(i)
					}
				}
			}
			return ev != nil && ev.Number() == 0
		}
		if v == "" {
			return true
		}
		f, err := strconv.ParseFloat(v, 64) // 64-bit integers may be strings
		return err == nil && f == 0 && fd.Kind() != protoreflect.StringKind && fd.Kind() != protoreflect.BytesKind
	case json.Number:
		f, err := v.Float64()
		return err == nil && f == 0
	}
	return false
}

func normalizeField(v any, fd protoreflect.FieldDescriptor, path string, w walk) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch {
	case fd.IsMap():
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, fieldError(path, "expected a map (object), got %s", describeKind(v, w.secret))
		}
		for _, key := range sortedKeys(obj) {
			nv, err := normalizeSingular(obj[key], fd.MapValue(), keyPath(path, key), w)
			if err != nil {
				return nil, err
			}
			obj[key] = nv
		}
		return obj, nil
	case fd.IsList():
		list, ok := v.([]any)
		if obj, isObj := v.(map[string]any); isObj && fd.Message() != nil {
			// A repeated message field written as one object
			// ("listeners:" holding a single mapping): Envoy's parser
			// takes it as a list of one.
			list, ok = []any{obj}, true
		}
		if !ok {
			return nil, fieldError(path, "expected a list, got %s", describeKind(v, w.secret))
		}
		for i := range list {
			nv, err := normalizeSingular(list[i], fd, indexPath(path, i), w)
			if err != nil {
				return nil, err
			}
			list[i] = nv
		}
		return list, nil
	default:
		return normalizeSingular(v, fd, path, w)
	}
}

// normalizeSingular handles one value of fd (one list element, one map
// value, or the value of a singular field).
func normalizeSingular(v any, fd protoreflect.FieldDescriptor, path string, w walk) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return normalizeMessage(v, fd.Message(), path, w)
	case protoreflect.EnumKind:
		return normalizeEnum(v, fd.Enum(), path, w.secret)
	default:
		return v, checkScalar(v, fd.Kind(), path, w.secret)
	}
}

// normalizeEnum returns the exact proto name for a name written in any
// letter case; numbers pass through (protojson accepts them).
func normalizeEnum(v any, ed protoreflect.EnumDescriptor, path string, secret bool) (any, error) {
	if ed.FullName() == "google.protobuf.NullValue" {
		return v, nil
	}
	switch v := v.(type) {
	case json.Number:
		return v, nil
	case string:
		values := ed.Values()
		if values.ByName(protoreflect.Name(v)) != nil {
			return v, nil
		}
		var names []string
		for i := 0; i < values.Len(); i++ {
			name := string(values.Get(i).Name())
			if strings.EqualFold(name, v) {
				return name, nil
			}
			names = append(names, name)
		}
		if secret {
			return nil, fieldError(path, "unknown value for %s (one of %s)", ed.Name(), strings.Join(names, ", "))
		}
		return nil, fieldError(path, "unknown value %q for %s (one of %s)", v, ed.Name(), strings.Join(names, ", "))
	default:
		return nil, fieldError(path, "expected an enum name (%s), got %s", ed.Name(), describeKind(v, secret))
	}
}

// checkScalar rejects JSON kinds protojson would reject for kind, so the
// error carries a path.
func checkScalar(v any, kind protoreflect.Kind, path string, secret bool) error {
	var want string
	switch kind {
	case protoreflect.BoolKind:
		if _, ok := v.(bool); ok {
			return nil
		}
		want = "a boolean"
	case protoreflect.StringKind:
		if _, ok := v.(string); ok {
			return nil
		}
		want = "a string (quote the value)"
	case protoreflect.BytesKind:
		if text, ok := v.(string); ok && isBase64(text) {
			return nil
		}
		want = "base64 text"
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		switch v.(type) {
		case json.Number, string:
			return nil
		}
		want = "a number"
	default: // integers: protojson takes a JSON number or a numeric string
		var text string
		switch n := v.(type) {
		case json.Number:
			text = string(n)
		case string:
			text = n
		default:
			return fieldError(path, "expected an integer, got %s", describeKind(v, secret))
		}
		return checkInteger(text, kind, path, secret)
	}
	return fieldError(path, "expected %s, got %s", want, describeKind(v, secret))
}

// checkInteger reports an integer that does not fit its field.
func checkInteger(text string, kind protoreflect.Kind, path string, secret bool) error {
	var bits int
	signed := true
	switch kind {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		bits = 32
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		bits, signed = 32, false
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		bits = 64
	default:
		bits, signed = 64, false
	}
	var err error
	if signed {
		_, err = strconv.ParseInt(text, 10, bits)
	} else {
		_, err = strconv.ParseUint(text, 10, bits)
	}
	if err == nil {
		return nil
	}
	if f, ferr := strconv.ParseFloat(text, 64); ferr == nil && f == math.Trunc(f) && (signed || f >= 0) &&
		math.Abs(f) <= math.Ldexp(1, bits-1) {
		return nil // 1e3 and 5.0 are integers to protojson too
	}
	kindName := "an integer"
	if !signed {
		kindName = "a non-negative integer"
	}
	if secret {
		text = "the value"
	}
	return fieldError(path, "%s does not fit (%s of %d bits)", text, kindName, bits)
}

// isBase64 accepts what protojson accepts for bytes: standard or URL
// alphabet, padded or not.
func isBase64(text string) bool {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if _, err := enc.DecodeString(text); err == nil {
			return true
		}
	}
	return false
}

// normalizeWellKnown handles the google.protobuf types with a special
// JSON form.
func normalizeWellKnown(v any, md protoreflect.MessageDescriptor, path string, w walk) (any, error) {
	secret := w.secret
	switch md.Name() {
	case "Any":
		return normalizeAny(v, path, w)
	case "Duration":
		if _, ok := v.(string); !ok {
			return nil, fieldError(path, `expected a duration such as "5s" or "0.25s", got %s`, describeKind(v, secret))
		}
	case "Timestamp", "FieldMask":
		if _, ok := v.(string); !ok {
			return nil, fieldError(path, "expected a string (%s), got %s", md.Name(), describeKind(v, secret))
		}
	case "Struct":
		if _, ok := v.(map[string]any); !ok {
			return nil, fieldError(path, "expected an object (Struct), got %s", describeKind(v, secret))
		}
	case "ListValue":
		if _, ok := v.([]any); !ok {
			return nil, fieldError(path, "expected a list, got %s", describeKind(v, secret))
		}
	case "BoolValue", "StringValue", "BytesValue", "Int32Value", "Int64Value",
		"UInt32Value", "UInt64Value", "FloatValue", "DoubleValue":
		// A wrapper's JSON is the bare value of its one field.
		return v, checkScalar(v, md.Fields().ByName("value").Kind(), path, secret)
	}
	return v, nil
}

// normalizeAny handles {"@type": url, ...fields}. The payload's fields
// keep the Any's path (typed_config.stat_prefix), as a reader of the
// YAML sees them.
func normalizeAny(v any, path string, w walk) (any, error) {
	secret := w.secret
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fieldError(path, `expected an object with "@type", got %s`, describeKind(v, secret))
	}
	if len(obj) == 0 {
		return obj, nil // typed_config: {} is an empty Any
	}
	typeURL, ok := obj["@type"].(string)
	if !ok {
		return nil, fieldError(path, `missing "@type" (the type URL of the message it holds)`)
	}
	mt, err := findType(typeURL)
	if err != nil {
		return nil, notSupportedType(path, typeURL)
	}
	md := mt.Descriptor()
	typedStruct := isTypedStruct(md.FullName())
	native := w.check && w.nativeFilter(md.FullName())
	if w.check && !typedStruct && !native && !acceptsPayload(w.payloads, md.FullName()) {
		return nil, notSupportedType(path, typeURL)
	}
	if md.FullName().Parent() == "google.protobuf" && md.Name() != "Empty" {
		// Special JSON forms sit under "value" inside an Any.
		for key := range obj {
			if key != "@type" && key != "value" {
				return nil, fieldError(joinPath(path, key), "unknown field (an Any holding %s has only \"value\")", md.FullName())
			}
		}
		if val, ok := obj["value"]; ok {
			nv, err := normalizeWellKnown(val, md, joinPath(path, "value"), walk{secret: secret})
			if err != nil {
				return nil, err
			}
			obj["value"] = nv
		}
		return obj, nil
	}
	// The payload is held against the allow-list as checkSupported holds
	// it (a TypedStruct's own fields are not config: its value is).
	if err := normalizeFields(obj, md, path, map[string]bool{"@type": true}, walk{secret: secret, check: w.check && !typedStruct && !native}); err != nil {
		return nil, err
	}
	if typedStruct {
		if err := normalizeTypedStruct(obj, path, w); err != nil {
			return nil, err
		}
	}
	return obj, nil
}

// normalizeTypedStruct normalises the Struct of a TypedStruct as the
// message its type_url names, so enum case is fixed and unknown fields
// are found there too.
func normalizeTypedStruct(obj map[string]any, path string, w walk) error {
	typeURL, _ := obj["type_url"].(string)
	if typeURL == "" {
		typeURL, _ = obj["typeUrl"].(string)
	}
	if typeURL == "" {
		return fieldError(joinPath(path, "type_url"), "missing (the type URL of the message in value)")
	}
	mt, err := findType(typeURL)
	if err != nil {
		return notSupportedType(path, typeURL)
	}
	native := w.check && w.nativeFilter(mt.Descriptor().FullName())
	if w.check && !native && !acceptsPayload(w.payloads, mt.Descriptor().FullName()) {
		return notSupportedType(path, typeURL)
	}
	value, ok := obj["value"]
	if !ok || value == nil {
		return nil
	}
	nv, err := normalizeMessage(value, mt.Descriptor(), joinPath(path, "value"), walk{secret: w.secret, check: w.check && !native})
	if err != nil {
		return err
	}
	obj["value"] = nv
	return nil
}

// nativeFilter reports whether the Any may hold name as the config of
// a registered native HTTP or network filter (the builder refuses one
// in the wrong place).
func (w walk) nativeFilter(name protoreflect.FullName) bool {
	return w.native && (filters.Lookup(name) != nil || filters.LookupNetwork(name) != nil)
}

// acceptsPayload reports whether an Any field whose rule lists payloads
// takes a message of type name.
func acceptsPayload(payloads []protoreflect.FullName, name protoreflect.FullName) bool {
	for _, p := range payloads {
		if p == name {
			return true
		}
	}
	return false
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
