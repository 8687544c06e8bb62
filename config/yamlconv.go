package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	yamlv3 "go.yaml.in/yaml/v3"
)

// yamlTree reads the first YAML (or JSON, which is YAML) document of
// data into a generic JSON value: map[string]any, []any, string,
// json.Number, bool or nil (also for an empty document).
//
// Scalars are typed as Envoy types them (parseYamlNode in Envoy's
// source/common/protobuf/yaml_utility.cc, on yaml-cpp), not by YAML 1.1
// or 1.2 rules:
//   - a mapping key is its text, verbatim: `n`, `on`, `1`, `0x10` stay
//     strings (a null key, `~`, is "null"); a key tagged `!ignore` is
//     dropped with its value (Envoy's way of keeping anchors in a file);
//   - a quoted or block (| >) scalar, or one with the bare `!` tag, is
//     a string (yaml-cpp tags it "!"); a scalar with another explicit
//     tag, !!str included, is typed by its text, as Envoy does;
//   - a plain ~, null, Null, NULL or empty scalar is null;
//   - y, n, yes, no, true, false, on, off in lower case, upper case or
//     capitalized are booleans (yaml-cpp's convert<bool>);
//   - an integer as C++ streams read it with the base detected (0x1f
//     hex, 017 octal, 42, +42, -42) is a number inside the int32 range
//     and a decimal string outside it, which the proto JSON mapping
//     reads into 64-bit fields;
//   - a decimal floating-point literal (1.5, .5, 1e3) is a number;
//     .inf, -.inf and .nan become "Infinity", "-Infinity" and "NaN";
//   - anything else is a string, as written (1_000, 0b101, 0o17, 1e400,
//     2024-01-01, inf).
//
// Besides, like the converter used before, a key given twice in one
// mapping is an error naming its line, and `<<` merge keys are applied.
func yamlTree(data []byte) (any, error) {
	var doc yamlv3.Node
	if err := yamlv3.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, yamlError(err)
	}
	c := &yamlConv{data: data}
	return c.value(&doc)
}

// yamlConv converts one document; data is its text, for what the node
// tree does not keep (the bare "!" tag).
type yamlConv struct {
	data  []byte
	lines []int // byte offset of each line's start, made on first use
	maybe bool  // the text has a "! " or "!<tab>" (bareTag)
	// bareTag's cursor: the byte offset of a line and column.
	curLine, curCol, curOff int
}

func (c *yamlConv) value(n *yamlv3.Node) (any, error) {
	switch n.Kind {
	case yamlv3.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return c.value(n.Content[0])
	case yamlv3.AliasNode:
		return c.value(n.Alias)
	case yamlv3.ScalarNode:
		if n.Style == 0 && c.bareTag(n) {
			return n.Value, nil // `! text`: yaml-cpp's "!" tag, a string
		}
		return yamlScalar(n), nil
	case yamlv3.SequenceNode:
		list := make([]any, 0, len(n.Content))
		for _, e := range n.Content {
			v, err := c.value(e)
			if err != nil {
				return nil, err
			}
			list = append(list, v)
		}
		return list, nil
	case yamlv3.MappingNode:
		m := map[string]any{}
		if err := c.mapping(n, m, false); err != nil {
			return nil, err
		}
		return m, nil
	}
	return nil, &Error{Line: n.Line, Reason: "unsupported YAML node"}
}

// yamlMapping adds n's entries to m. Entries merged in (merged) do not
// replace keys already there; the mapping's own keys are added first, so
// they win over merged ones, and a key given twice among them is an
// error.
func (c *yamlConv) mapping(n *yamlv3.Node, m map[string]any, merged bool) error {
	var merges []*yamlv3.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yamlv3.ScalarNode && k.Tag == "!!merge" && k.Style&yamlv3.TaggedStyle == 0 {
			merges = append(merges, v)
			continue
		}
		if k.Tag == "!ignore" {
			continue
		}
		key, err := yamlKey(k)
		if err != nil {
			return err
		}
		if _, dup := m[key]; dup {
			if merged {
				continue
			}
			return &Error{Line: k.Line, Reason: fmt.Sprintf("key %q already set in map", key)}
		}
		val, err := c.value(v)
		if err != nil {
			return err
		}
		m[key] = val
	}
	for _, v := range merges {
		if v.Kind == yamlv3.AliasNode {
			v = v.Alias
		}
		var sources []*yamlv3.Node
		switch v.Kind {
		case yamlv3.MappingNode:
			sources = []*yamlv3.Node{v}
		case yamlv3.SequenceNode:
			for _, s := range v.Content {
				if s.Kind == yamlv3.AliasNode {
					s = s.Alias
				}
				sources = append(sources, s)
			}
		default:
			return &Error{Line: v.Line, Reason: "a << merge takes a mapping or a list of mappings"}
		}
		for _, s := range sources {
			if s.Kind != yamlv3.MappingNode {
				return &Error{Line: v.Line, Reason: "a << merge takes a mapping or a list of mappings"}
			}
			if err := c.mapping(s, m, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// yamlKey is a mapping key's text, as yaml-cpp's as<std::string> gives
// it.
func yamlKey(k *yamlv3.Node) (string, error) {
	if k.Kind == yamlv3.AliasNode {
		k = k.Alias
	}
	if k.Kind != yamlv3.ScalarNode {
		return "", &Error{Line: k.Line, Reason: "a mapping key must be a scalar, not a list or mapping"}
	}
	if yamlPlainUntagged(k) && yamlNull(k.Value) {
		return "null", nil
	}
	return k.Value, nil
}

func yamlPlainUntagged(n *yamlv3.Node) bool {
	return n.Style&(yamlv3.TaggedStyle|yamlv3.DoubleQuotedStyle|yamlv3.SingleQuotedStyle|yamlv3.LiteralStyle|yamlv3.FoldedStyle) == 0
}

func yamlNull(s string) bool {
	switch s {
	case "", "~", "null", "Null", "NULL":
		return true
	}
	return false
}

// yamlScalar types a scalar value; see yamlTree.
func yamlScalar(n *yamlv3.Node) any {
	s := n.Value
	switch {
	case n.Style&yamlv3.TaggedStyle != 0:
		// yaml-cpp keeps the written tag, and only "!" means "a
		// string"; other tags leave the text to be typed.
	case !yamlPlainUntagged(n):
		return s // quoted or block: yaml-cpp tags it "!"
	case yamlNull(s):
		return nil
	}
	if b, ok := yamlBool(s); ok {
		return b
	}
	if i, ok := yamlInt(s); ok {
		text := strconv.FormatInt(i, 10)
		if i >= math.MinInt32 && i <= math.MaxInt32 {
			return json.Number(text)
		}
		return text
	}
	if f, ok := yamlDouble(s); ok {
		switch {
		case math.IsNaN(f):
			return "NaN"
		case math.IsInf(f, 1):
			return "Infinity"
		case math.IsInf(f, -1):
			return "-Infinity"
		}
		return json.Number(strconv.FormatFloat(f, 'g', -1, 64))
	}
	return s
}

// yamlBool is yaml-cpp's convert<bool>: the word in lower case, upper
// case, or with a capital first letter and the rest in one case.
func yamlBool(s string) (value, ok bool) {
	if s == "" {
		return false, false
	}
	lower := strings.ToLower(s)
	rest := s[1:]
	flexible := s == lower || s == strings.ToUpper(s) ||
		(s[0] >= 'A' && s[0] <= 'Z' && (rest == strings.ToLower(rest) || rest == strings.ToUpper(rest)))
	if !flexible {
		return false, false
	}
	switch lower {
	case "y", "yes", "true", "on":
		return true, true
	case "n", "no", "false", "off":
		return false, true
	}
	return false, false
}

// yamlInt reads s as a C++ stream reads an int64_t with no base set: an
// optional sign, then 0x/0X and hex digits, 0 and octal digits, or
// decimal digits, all of s, within range.
func yamlInt(s string) (int64, bool) {
	digits, neg := s, false
	if len(digits) > 0 && (digits[0] == '+' || digits[0] == '-') {
		neg = digits[0] == '-'
		digits = digits[1:]
	}
	base := 10
	switch {
	case len(digits) > 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X'):
		base, digits = 16, digits[2:]
	case len(digits) > 1 && digits[0] == '0':
		base, digits = 8, digits[1:]
	}
	if digits == "" || strings.ContainsAny(digits, "_+-") {
		return 0, false // ParseUint would take what C++ refuses
	}
	u, err := strconv.ParseUint(digits, base, 64)
	if err != nil {
		return 0, false
	}
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return int64(-u), true
	}
	if u > math.MaxInt64 {
		return 0, false
	}
	return int64(u), true
}

var yamlDecimal = regexp.MustCompile(`^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$`)

// yamlDouble is yaml-cpp's convert<double>: a decimal literal as a C++
// stream reads it (overflow refused), or YAML's .inf / .nan spellings.
func yamlDouble(s string) (float64, bool) {
	switch s {
	case ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF":
		return math.Inf(1), true
	case "-.inf", "-.Inf", "-.INF":
		return math.Inf(-1), true
	case ".nan", ".NaN", ".NAN":
		return math.NaN(), true
	}
	if !yamlDecimal.MatchString(s) {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, false // out of range: C++ sets failbit
	}
	return f, true
}

// bareTag reports whether the plain scalar n was written with the bare
// "!" tag, which yaml.v3 resolves away: its node starts at the tag, and
// a plain scalar itself cannot begin with "!". Only a document with a
// "! " or "!<tab>" anywhere needs looking; a cursor carried from one
// scalar to the next keeps a long line (minified JSON) from being walked
// again for each of its scalars.
func (c *yamlConv) bareTag(n *yamlv3.Node) bool {
	if c.lines == nil {
		c.maybe = bytes.Contains(c.data, []byte("! ")) || bytes.Contains(c.data, []byte("!\t"))
		c.lines = []int{0}
		if c.maybe {
			for i, b := range c.data {
				if b == '\n' {
					c.lines = append(c.lines, i+1)
				}
			}
		}
	}
	if !c.maybe || n.Line < 1 || n.Line > len(c.lines) || n.Column < 1 {
		return false
	}
	if n.Line != c.curLine || n.Column < c.curCol {
		c.curLine, c.curCol, c.curOff = n.Line, 1, c.lines[n.Line-1]
	}
	// Columns count characters, not bytes.
	for c.curCol < n.Column && c.curOff < len(c.data) {
		_, size := utf8.DecodeRune(c.data[c.curOff:])
		c.curOff += size
		c.curCol++
	}
	rest := c.data[c.curOff:]
	return len(rest) > 1 && rest[0] == '!' && (rest[1] == ' ' || rest[1] == '\t')
}
