package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Load reads an Envoy v3 bootstrap file (YAML or JSON) and returns its
// validated model. The model's Source is path. Errors are *Error values
// whose text starts with path; see Parse for what is checked.
func Load(path string) (*Bootstrap, error) {
	return LoadPatched(path, nil)
}

// readConfig reads the config file, refusing one over MaxConfigBytes.
func readConfig(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{Source: path, Reason: err.Error()}
	}
	defer f.Close()
	// Read one byte past the limit, so a huge file is refused without
	// being read whole.
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigBytes+1))
	if err != nil {
		return nil, &Error{Source: path, Reason: err.Error()}
	}
	if len(data) > MaxConfigBytes {
		size := int64(len(data))
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			size = fi.Size()
		}
		return nil, withSource(checkConfigSize(size), path)
	}
	return data, nil
}

// Parse turns an Envoy v3 bootstrap (YAML or JSON text) into the model.
// source names the input in errors and in Bootstrap.Source; it may be "".
//
// In order, Parse
//  0. applies the document limits (limits.go): size, size and values
//     with YAML aliases expanded, values and nesting depth;
//  1. converts YAML to JSON, typing scalars as Envoy does (yamlconv.go;
//     syntax errors carry the line, duplicate keys are errors);
//  2. walks the JSON against the proto descriptors: enum names in any
//     letter case become the exact proto names, "@type" URLs (also the
//     type_url of udpa/xds TypedStruct wrappers) must name a known
//     message, unknown fields are errors;
//  3. unmarshals it into envoy.config.bootstrap.v3.Bootstrap (protojson);
//  4. runs the protoc-gen-validate rules on the bootstrap and on every
//     message carried in an Any;
//  5. rejects every set field wasmproxy does not implement, naming its
//     path, unless it is on the list of fields that change nothing here
//     (see docs/compatibility.md);
//  6. builds the model: defaults filled in, references (route → cluster)
//     and Envoy's cross-field rules checked.
//
// Relative paths in the config (vm_config.code.local.filename) are kept
// as written; Parse reads no files. It is safe for concurrent use.
func Parse(data []byte, source string) (*Bootstrap, error) {
	return ParsePatched(data, source, nil)
}

// Patch changes a decoded bootstrap proto before it is validated and
// built (Istio EnvoyFilter patches, package istio). Its errors are
// returned as they are, not prefixed with the config's source: they are
// about the patch, not the config file.
type Patch func(*bootstrapv3.Bootstrap) error

// Chain is the Patch that runs patches in order (nil ones skipped),
// stopping at the first error.
func Chain(patches ...Patch) Patch {
	return func(pb *bootstrapv3.Bootstrap) error {
		for _, p := range patches {
			if p == nil {
				continue
			}
			if err := p(pb); err != nil {
				return err
			}
		}
		return nil
	}
}

// LoadPatched is Load with patch run between steps 3 and 4 of Parse.
func LoadPatched(path string, patch Patch) (*Bootstrap, error) {
	data, err := readConfig(path)
	if err != nil {
		return nil, err
	}
	return ParsePatched(data, path, patch)
}

// ParsePatched is Parse with patch (if not nil) run on the decoded proto
// between steps 3 and 4: what the patch produces is validated and built
// like the file itself, and the dump (RawJSON) is the patched config.
func ParsePatched(data []byte, source string, patch Patch) (*Bootstrap, error) {
	b, err := parse(data, patch)
	if err != nil {
		var pe patchError
		if errors.As(err, &pe) {
			return nil, pe.err
		}
		return nil, withSource(err, source)
	}
	b.Source = source
	return b, nil
}

// patchError marks an error of the Patch, kept apart from config errors.
type patchError struct{ err error }

func (e patchError) Error() string { return e.err.Error() }

func parse(data []byte, patch Patch) (*Bootstrap, error) {
	pb, err := decodeBootstrap(data)
	if err != nil {
		return nil, err
	}
	if patch != nil {
		if err := patch(pb); err != nil {
			return nil, patchError{err}
		}
	}
	if err := validateProto(pb); err != nil {
		return nil, err
	}
	if err := checkSupported(pb); err != nil {
		return nil, err
	}
	model, err := buildBootstrap(pb)
	if err != nil {
		return nil, err
	}
	raw, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(pb)
	if err != nil {
		return nil, fmt.Errorf("encoding the bootstrap as JSON: %w", err)
	}
	// protojson varies its spacing on purpose; compact it so the dump is
	// stable.
	var compact bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		return nil, fmt.Errorf("encoding the bootstrap as JSON: %w", err)
	}
	model.RawJSON = compact.Bytes()
	return model, nil
}

// decodeBootstrap runs steps 1–3 of Parse.
func decodeBootstrap(data []byte) (*bootstrapv3.Bootstrap, error) {
	tree, err := jsonTree(data)
	if err != nil {
		return nil, err
	}
	pb := &bootstrapv3.Bootstrap{}
	if err := decodeTree(tree, pb, walk{check: true}); err != nil {
		return nil, err
	}
	return pb, nil
}

// decodeTree runs steps 2–3 of Parse on a JSON value, into pb; w.check
// applies the allow-list of implemented fields.
func decodeTree(tree any, pb proto.Message, w walk) error {
	tree, err := normalizeMessage(tree, pb.ProtoReflect().Descriptor(), "", w)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(tree); err != nil {
		return err
	}
	if err := protojson.Unmarshal(buf.Bytes(), pb); err != nil {
		// The JSON stage catches what has a path; what is left (a number
		// out of range, bad base64, a malformed duration) is reported as
		// protojson words it, without its JSON-offset prefix.
		return &Error{Reason: strings.TrimPrefix(protojsonDetail(err), "proto: ")}
	}
	return nil
}

var protojsonOffset = regexp.MustCompile(`^proto:\s*\(line \d+:\d+\):\s*`)

func protojsonDetail(err error) string {
	return protojsonOffset.ReplaceAllString(err.Error(), "")
}

// checkJSONSyntax reports the line of a syntax error in JSON input; the
// YAML parser, which also reads JSON, would name the line the enclosing
// object starts on.
func checkJSONSyntax(data []byte) error {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || (trimmed[0] != '{' && trimmed[0] != '[') {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var v any
	err := dec.Decode(&v)
	if err == nil {
		end := dec.InputOffset()
		rest := data[end:]
		if extra := bytes.TrimLeft(rest, " \t\r\n"); len(extra) > 0 {
			return &Error{Line: lineOf(data, end+int64(len(rest)-len(extra))), Reason: "unexpected data after the top-level JSON value"}
		}
		return nil
	}
	var syntax *json.SyntaxError
	if errors.As(err, &syntax) {
		return &Error{Line: lineOf(data, syntax.Offset), Reason: strings.TrimPrefix(syntax.Error(), "json: ")}
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return &Error{Line: lineOf(data, int64(len(data))), Reason: "unexpected end of JSON input"}
	}
	return nil // let the YAML parser word it
}

func lineOf(data []byte, offset int64) int {
	if offset > int64(len(data)) {
		offset = int64(len(data))
	}
	return bytes.Count(data[:offset], []byte("\n")) + 1
}

var yamlLine = regexp.MustCompile(`line (\d+): ([^\n]*)`)

// yamlError turns a YAML parser error into an *Error with the line.
func yamlError(err error) error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{Line: line, Reason: m[2]}
	}
	msg = strings.TrimPrefix(msg, "error converting YAML to JSON: ")
	msg = strings.TrimPrefix(msg, "yaml: ")
	return &Error{Reason: "invalid YAML: " + msg}
}

// nodeProto serializes the node as Envoy hands it to plugins (xds.node).
func nodeProto(pb *bootstrapv3.Bootstrap) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(pb.GetNode())
}

// jsonTree reads YAML or JSON into a generic JSON value (numbers kept
// exact, scalars typed as Envoy types them: yamlconv.go), within the
// limits on size and expansion.
func jsonTree(data []byte) (any, error) {
	if err := checkConfigSize(int64(len(data))); err != nil { // limits.go
		return nil, err
	}
	if err := checkJSONSyntax(data); err != nil {
		return nil, err
	}
	if err := checkYAMLExpansion(data); err != nil {
		return nil, err
	}
	tree, err := yamlTree(data) // scalars typed as Envoy types them
	if err != nil {
		return nil, err
	}
	if tree == nil {
		return nil, &Error{Reason: "empty config"}
	}
	if err := checkTree(tree); err != nil {
		return nil, err
	}
	return tree, nil
}
