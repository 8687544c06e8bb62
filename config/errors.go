package config

import (
	"errors"
	"fmt"
	"strings"

	"github.com/wasmproxy/wasmproxy/config/redact"
)

// ErrNotSupported is matched (errors.Is) by every error about a valid
// Envoy field or value that wasmproxy does not implement yet.
var ErrNotSupported = errors.New("not supported yet")

// Error is a config error: where it is and why. Its text is one line,
// and never shows a secret (the value of a sensitive field, a password in
// a URL, a PEM private key):
//
//	<source>: <field path>: <reason>             invalid value
//	<source>: not supported yet: <field path>     valid for Envoy, not implemented here
//	<source>: line <n>: <reason>                  YAML/JSON syntax error
//
// The field path uses the proto field names as written in Envoy YAML,
// with list indexes and map keys: static_resources.clusters[0].name,
// typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].
// Inside a TypedStruct the path goes through its value:
// typed_config.value.config.vm_config.
type Error struct {
	// Source is the file name given to Load or Parse ("" for none).
	Source string
	// Path is the field path; empty for syntax errors.
	Path string
	// Line is the 1-based line of a syntax error; 0 otherwise.
	Line int
	// Reason says what is wrong. For NotSupported errors it may be empty
	// or add detail (the unsupported value).
	Reason string
	// NotSupported marks a valid Envoy setting wasmproxy does not implement.
	NotSupported bool
	// TypeURL, for a NotSupported extension, is the type URL of the
	// message wasmproxy does not implement (or does not take there).
	TypeURL string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Source != "" {
		b.WriteString(e.Source)
		b.WriteString(": ")
	}
	switch {
	case e.NotSupported:
		b.WriteString("not supported yet: ")
		b.WriteString(e.Path)
		if e.TypeURL != "" {
			b.WriteString(" (")
			b.WriteString(e.TypeURL)
			b.WriteString(")")
		}
		if e.Reason != "" {
			b.WriteString(": ")
			b.WriteString(e.Reason)
		}
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: %s", e.Line, e.Reason)
	case e.Path != "":
		b.WriteString(e.Path)
		b.WriteString(": ")
		b.WriteString(e.Reason)
	default:
		b.WriteString(e.Reason)
	}
	// A library's words may quote a value: never a password in a URL or
	// a private key. The contract is one line: fold any newline a library
	// put in.
	return strings.ReplaceAll(redact.Text(b.String()), "\n", " ")
}

// Is reports whether target is ErrNotSupported and e is a NotSupported error.
func (e *Error) Is(target error) bool {
	return target == ErrNotSupported && e.NotSupported
}

// fieldError is an invalid value at path.
func fieldError(path, format string, args ...any) *Error {
	return &Error{Path: path, Reason: fmt.Sprintf(format, args...)}
}

// notSupported is a valid Envoy setting at path that wasmproxy does not
// implement; detail (optional) names the value.
func notSupported(path, detail string) *Error {
	return &Error{Path: path, Reason: detail, NotSupported: true}
}

// notSupportedType is an extension (the message typeURL names, in the
// Any at path) that wasmproxy does not implement, or not at path.
func notSupportedType(path, typeURL string) *Error {
	return &Error{Path: path, TypeURL: typeURL, NotSupported: true}
}

// withSource sets the source of a config error, and turns any other error
// into one.
func withSource(err error, source string) error {
	if err == nil {
		return nil
	}
	var ce *Error
	if errors.As(err, &ce) {
		ce.Source = source
		return ce
	}
	return &Error{Source: source, Reason: err.Error()}
}

// Field path builders. Paths are built only on the way to an error or
// while walking, so plain string concatenation is fine.

func joinPath(parent, field string) string {
	if parent == "" {
		return field
	}
	return parent + "." + field
}

func indexPath(parent string, i int) string {
	return fmt.Sprintf("%s[%d]", parent, i)
}

func keyPath(parent string, key any) string {
	if s, ok := key.(string); ok {
		return fmt.Sprintf("%s[%q]", parent, s)
	}
	return fmt.Sprintf("%s[%v]", parent, key)
}
