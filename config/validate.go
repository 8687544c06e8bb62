package config

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// pgvError is what every protoc-gen-validate error type implements.
type pgvError interface {
	error
	Field() string
	Reason() string
	Cause() error
	Key() bool
}

// validateProto runs the protoc-gen-validate rules on root and, since
// those rules stop at an Any, on every message carried in an Any.
func validateProto(root proto.Message) error {
	if err := validateMessage(root, ""); err != nil {
		return err
	}
	return validateAnys(root.ProtoReflect(), "")
}

// validateMessage runs m.Validate() and turns its error into an *Error
// whose path is in proto field names.
func validateMessage(m proto.Message, path string) error {
	v, ok := m.(interface{ Validate() error })
	if !ok {
		return nil
	}
	if err := v.Validate(); err != nil {
		return pgvToError(err, m.ProtoReflect().Descriptor(), path)
	}
	return nil
}

// validateAnys finds the Any fields under m and validates their payloads.
func validateAnys(m protoreflect.Message, path string) error {
	return walkMessages(m, path, func(_ protoreflect.FieldDescriptor, child protoreflect.Message, childPath string) error {
		a, ok := child.Interface().(*anypb.Any)
		if !ok {
			return validateAnys(child, childPath)
		}
		payload, payloadPath, err := unpackAny(a, childPath)
		if err != nil || payload == nil {
			return err
		}
		if err := validateMessage(payload, payloadPath); err != nil {
			return err
		}
		return validateAnys(payload.ProtoReflect(), payloadPath)
	})
}

// walkMessages calls fn for each message value directly under m (set
// singular fields, list elements, map values) in field order, map keys
// sorted, with the field it is in and its path.
func walkMessages(m protoreflect.Message, path string, fn func(protoreflect.FieldDescriptor, protoreflect.Message, string) error) error {
	for _, fd := range populatedFields(m) {
		fieldPath := joinPath(path, string(fd.Name()))
		v := m.Get(fd)
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				continue
			}
			for _, key := range sortedMapKeys(v.Map()) {
				if err := fn(fd, v.Map().Get(key).Message(), keyPath(fieldPath, key.Interface())); err != nil {
					return err
				}
			}
		case fd.IsList():
			if fd.Message() == nil {
				continue
			}
			for i := 0; i < v.List().Len(); i++ {
				if err := fn(fd, v.List().Get(i).Message(), indexPath(fieldPath, i)); err != nil {
					return err
				}
			}
		case fd.Message() != nil:
			if err := fn(fd, v.Message(), fieldPath); err != nil {
				return err
			}
		}
	}
	return nil
}

// populatedFields lists the set fields of m in declaration order, so the
// first error reported is stable.
func populatedFields(m protoreflect.Message) []protoreflect.FieldDescriptor {
	fields := m.Descriptor().Fields()
	var set []protoreflect.FieldDescriptor
	for i := 0; i < fields.Len(); i++ {
		if fd := fields.Get(i); m.Has(fd) {
			set = append(set, fd)
		}
	}
	return set
}

func sortedMapKeys(m protoreflect.Map) []protoreflect.MapKey {
	var keys []protoreflect.MapKey
	m.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
		keys = append(keys, k)
		return true
	})
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	return keys
}

// pgvField splits a protoc-gen-validate field ("Clusters[0]",
// "KeyValues[FOO]", "Name") into the Go name and the index or key.
var pgvField = regexp.MustCompile(`^(\w+)(?:\[(.*)\])?$`)

// pgvToError follows the chain of "embedded message failed validation"
// causes down to the failing rule, turning each Go field name into the
// proto field name, so the result reads
// static_resources.clusters[0].name: value length must be at least 1 runes.
func pgvToError(err error, md protoreflect.MessageDescriptor, path string) error {
	for {
		var pe pgvError
		if !errors.As(err, &pe) {
			return fieldError(path, "%v", err)
		}
		m := pgvField.FindStringSubmatch(pe.Field())
		if m == nil {
			return fieldError(joinPath(path, pe.Field()), "%s", pe.Reason())
		}
		goName, index := m[1], m[2]
		hasIndex := strings.HasSuffix(pe.Field(), "]")
		fd, name := fieldByGoName(md, goName)
		path = joinPath(path, name)
		if hasIndex {
			if fd != nil && fd.IsMap() {
				path = keyPath(path, index)
			} else {
				path = fmt.Sprintf("%s[%s]", path, index)
			}
		}
		reason := pe.Reason()
		if pe.Key() {
			reason = "key: " + reason
		}
		cause := pe.Cause()
		if cause == nil || fd == nil {
			if cause != nil {
				reason += ": " + cause.Error()
			}
			return fieldError(path, "%s", reason)
		}
		var next protoreflect.MessageDescriptor
		if fd.IsMap() {
			next = fd.MapValue().Message()
		} else {
			next = fd.Message()
		}
		if next == nil {
			return fieldError(path, "%s: %v", reason, cause)
		}
		md, err = next, cause
	}
}

// fieldByGoName finds the field (or oneof) of md whose generated Go name
// is goName and returns it with its proto name. Go names are the proto
// names in CamelCase, so comparing without underscores and case finds
// them.
func fieldByGoName(md protoreflect.MessageDescriptor, goName string) (protoreflect.FieldDescriptor, string) {
	flat := func(s string) string { return strings.ReplaceAll(s, "_", "") }
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		if fd := fields.Get(i); strings.EqualFold(flat(string(fd.Name())), goName) {
			return fd, string(fd.Name())
		}
	}
	oneofs := md.Oneofs()
	for i := 0; i < oneofs.Len(); i++ {
		if od := oneofs.Get(i); strings.EqualFold(flat(string(od.Name())), goName) {
			return nil, string(od.Name())
		}
	}
	return nil, goName
}
