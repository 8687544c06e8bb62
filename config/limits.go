package config

import (
	"bytes"
	"fmt"
	"regexp"
	"regexp/syntax"

	yamlv3 "go.yaml.in/yaml/v3"
)

// Limits on what a config can make the proxy read, allocate or compute
// while it loads ("config bombs"). Where Envoy has a limit wasmproxy has
// the same one; elsewhere the limit is generous, far above real configs,
// and low enough that a config at it loads in seconds and a few hundred
// MB. docs/compatibility.md lists them. Each error names the field (or,
// for the whole-document limits, the place the limit was crossed).
const (
	// MaxConfigBytes bounds the config file and the JSON a YAML file
	// becomes once its aliases are expanded (a "billion laughs" document
	// of a few hundred bytes would otherwise become gigabytes).
	MaxConfigBytes = 64 << 20
	// MaxConfigValues bounds the objects, lists, strings, numbers and
	// booleans of the document after alias expansion: listeners,
	// clusters, endpoints, virtual hosts, routes, matchers, metadata all
	// count. Loading costs about 2.5 µs per value (1,000,000 load in
	// about 2.5 s on the CI machine).
	MaxConfigValues = 1_000_000
	// MaxNestingDepth is how deeply objects and lists may nest, the top
	// level counting as 1: protobuf's JSON parser, which Envoy loads
	// configs with, refuses deeper documents ("Message too deep").
	MaxNestingDepth = 100
	// DefaultMaxDirectResponseBodyBytes is Envoy's default for
	// route_config.max_direct_response_body_size_bytes.
	DefaultMaxDirectResponseBodyBytes = 4096
	// MaxRegexProgramSize bounds a route or header safe_regex: Envoy's
	// re2.max_program_size.error_level default. The size is counted in
	// instructions of Go's regexp/syntax program, which for the same
	// expression is within about half to one and a half times RE2's
	// ProgramSize (a{100}: 102 here, 104 in RE2).
	MaxRegexProgramSize = 100
	// MaxTagRegexProgramSize bounds a stats_config tag regex, which every
	// stat name is matched against when stats are rendered. Envoy uses
	// std::regex there, without a size check; Envoy's default tag
	// extractors are under 50.
	MaxTagRegexProgramSize = 1000
	// MaxPluginConfigurationBytes bounds a plugin's or VM's
	// configuration as the plugin reads it: each instance of the pool
	// gets its own copy.
	MaxPluginConfigurationBytes = 16 << 20
)

// checkConfigSize is the first check, before any parsing.
func checkConfigSize(size int64) error {
	if size > MaxConfigBytes {
		return &Error{Reason: fmt.Sprintf("the config is %d bytes; maximum is %d (64 MiB)", size, MaxConfigBytes)}
	}
	return nil
}

// checkYAMLExpansion measures a YAML document with its aliases expanded,
// before it is converted (which expands them): at most MaxConfigBytes of
// JSON and MaxConfigValues values. It reads the document's node graph
// (yaml.v3), where an alias is a pointer, and sizes each anchored node
// once, so a bomb costs no more to measure than its text. JSON input has
// no aliases and is left to checkTree.
func checkYAMLExpansion(data []byte) error {
	if !bytes.Contains(data, []byte("&")) {
		return nil // no anchor, so no alias can expand anything
	}
	var doc yamlv3.Node
	if err := yamlv3.Unmarshal(data, &doc); err != nil {
		// A document with anchors that cannot be measured is not
		// expanded either.
		return yamlError(err)
	}
	m := &yamlMeasure{sizes: map[*yamlv3.Node]nodeSize{}}
	m.walk(&doc, nil)
	return m.err
}

// nodeSize is the expanded size of a YAML node: approximate JSON bytes
// and values.
type nodeSize struct{ bytes, values int64 }

type yamlMeasure struct {
	sizes map[*yamlv3.Node]nodeSize // anchored nodes, sized once
	total nodeSize
	err   error
}

// walk adds n's own text to the total and sizes its children; an alias
// adds its target's expanded size at once. path is the field path of n
// (built into a string only for an error).
func (m *yamlMeasure) walk(n *yamlv3.Node, path []string) {
	if m.err != nil || n == nil {
		return
	}
	if n.Kind == yamlv3.AliasNode {
		s := m.size(n.Alias)
		m.total.bytes += s.bytes
		m.total.values += s.values
		m.check(path, n)
		return
	}
	m.total.bytes += int64(len(n.Value)) + 2
	if n.Kind != yamlv3.DocumentNode {
		m.total.values++
	}
	m.check(path, n)
	switch n.Kind {
	case yamlv3.DocumentNode:
		for _, c := range n.Content {
			m.walk(c, path)
		}
	case yamlv3.SequenceNode:
		for i, c := range n.Content {
			m.walk(c, append(path, fmt.Sprintf("[%d]", i)))
		}
	case yamlv3.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			m.total.bytes += int64(len(n.Content[i].Value)) + 3
			m.walk(n.Content[i+1], append(path, "."+n.Content[i].Value))
		}
	}
}

// size is the expanded size of n, counted once per node.
func (m *yamlMeasure) size(n *yamlv3.Node) nodeSize {
	if n == nil {
		return nodeSize{}
	}
	if s, ok := m.sizes[n]; ok {
		return s
	}
	m.sizes[n] = nodeSize{} // a cycle (which yaml refuses anyway) adds nothing
	s := nodeSize{bytes: int64(len(n.Value)) + 2, values: 1}
	if n.Kind == yamlv3.AliasNode {
		s = m.size(n.Alias)
	}
	for _, c := range n.Content {
		cs := m.size(c)
		// Saturate: a bomb's size overflows int64 long before it is done.
		s.bytes = min(s.bytes+cs.bytes, 1<<62)
		s.values = min(s.values+cs.values, 1<<62)
	}
	m.sizes[n] = s
	return s
}

func (m *yamlMeasure) check(path []string, n *yamlv3.Node) {
	var reason string
	switch {
	case m.total.bytes > MaxConfigBytes:
		reason = fmt.Sprintf("the config is over %d bytes (64 MiB) with its YAML aliases expanded", MaxConfigBytes)
	case m.total.values > MaxConfigValues:
		reason = fmt.Sprintf("the config has over %d values (objects, lists, scalars) with its YAML aliases expanded", MaxConfigValues)
	default:
		return
	}
	if n.Kind == yamlv3.AliasNode {
		reason += fmt.Sprintf(" (alias *%s at line %d)", n.Value, n.Line)
	}
	m.err = fieldError(pathString(path), "%s", reason)
}

func pathString(parts []string) string {
	var b bytes.Buffer
	for _, p := range parts {
		b.WriteString(p)
	}
	return string(bytes.TrimPrefix(b.Bytes(), []byte(".")))
}

// checkTree bounds the decoded JSON document: MaxConfigValues values and
// MaxNestingDepth levels. It runs before anything walks the document
// recursively against the protos.
func checkTree(tree any) error {
	t := &treeMeasure{}
	t.walk(tree, 1)
	if t.err != "" {
		return fieldError(pathString(t.errPath), "%s", t.err)
	}
	return nil
}

type treeMeasure struct {
	values  int
	path    []string
	err     string
	errPath []string
}

func (t *treeMeasure) walk(v any, depth int) {
	if t.err != "" {
		return
	}
	t.values++
	if t.values > MaxConfigValues {
		t.fail(fmt.Sprintf("the config has over %d values (objects, lists, scalars); maximum is %d", MaxConfigValues, MaxConfigValues))
		return
	}
	switch v := v.(type) {
	case map[string]any:
		if depth > MaxNestingDepth {
			t.fail(fmt.Sprintf("objects and lists nested %d deep; maximum is %d", depth, MaxNestingDepth))
			return
		}
		for _, k := range sortedKeys(v) {
			t.path = append(t.path, "."+k)
			t.walk(v[k], depth+1)
			t.path = t.path[:len(t.path)-1]
		}
	case []any:
		if depth > MaxNestingDepth {
			t.fail(fmt.Sprintf("objects and lists nested %d deep; maximum is %d", depth, MaxNestingDepth))
			return
		}
		for i, e := range v {
			t.path = append(t.path, fmt.Sprintf("[%d]", i))
			t.walk(e, depth+1)
			t.path = t.path[:len(t.path)-1]
		}
	}
}

func (t *treeMeasure) fail(reason string) {
	t.err = reason
	t.errPath = append([]string(nil), t.path...)
}

// regexProgramSize is the instruction count of re's compiled program
// (regexp/syntax, as regexp compiles it), the measure the program size
// limits apply to.
func regexProgramSize(re string) (int, error) {
	parsed, err := syntax.Parse(re, syntax.Perl)
	if err != nil {
		return 0, err
	}
	prog, err := syntax.Compile(parsed.Simplify())
	if err != nil {
		return 0, err
	}
	return len(prog.Inst), nil
}

// compileBoundedRegex compiles re if its program is at most limit
// instructions; the error follows Envoy's words. shown is re cut for the
// message.
func compileBoundedRegex(re string, limit int, path, limitName string) (*regexp.Regexp, error) {
	size, err := regexProgramSize(re)
	if err != nil {
		return nil, fieldError(path, "invalid regular expression: %v", err)
	}
	if size > limit {
		return nil, fieldError(path, "regex '%s' RE2 program size of %d > max program size of %d %s", shortRegex(re), size, limit, limitName)
	}
	compiled, err := regexp.Compile(re)
	if err != nil {
		return nil, fieldError(path, "invalid regular expression: %v", err)
	}
	return compiled, nil
}

// shortRegex is re as an error quotes it: at most 100 bytes.
func shortRegex(re string) string {
	if len(re) > 100 {
		return re[:100] + "…"
	}
	return re
}
