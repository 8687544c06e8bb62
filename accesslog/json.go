package accesslog

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// numeric operators render as JSON numbers in json_format, as Envoy's
// structured formatter types them.
var numeric = map[string]bool{
	"RESPONSE_CODE": true, "BYTES_RECEIVED": true, "BYTES_SENT": true,
	"DURATION": true, "CONNECTION_ID": true,
}

// JSONFormatter renders json_format: each key's string value is a format
// string. A value that is exactly one operator keeps its type: a number
// for numeric operators, null when absent ("-"). Keys are written sorted
// so lines are stable; Envoy's own key order was not checked.
type JSONFormatter struct {
	keys  []string
	parts map[string]*Formatter
	ops   map[string]string // key → sole operator, if the value is one
	// OmitEmpty (omit_empty_values) leaves out a key whose value is one
	// absent operator, rather than writing null. Set it before the first
	// Format.
	OmitEmpty bool
}

// ParseJSON parses a json_format object (string values only; nested
// objects are not supported yet and are an error naming the key).
func ParseJSON(obj map[string]any) (*JSONFormatter, error) {
	j := &JSONFormatter{parts: map[string]*Formatter{}, ops: map[string]string{}}
	for k, v := range obj {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("access log json_format: key %q: only string values are supported, got %T", k, v)
		}
		f, err := Parse(s)
		if err != nil {
			return nil, fmt.Errorf("access log json_format: key %q: %v", k, err)
		}
		j.keys = append(j.keys, k)
		j.parts[k] = f
		if len(f.pieces) == 1 && f.pieces[0].op != "" {
			j.ops[k] = f.pieces[0].op
		}
	}
	sort.Strings(j.keys)
	return j, nil
}

// Format renders one JSON line ending in a newline.
func (j *JSONFormatter) Format(e *Entry) string {
	var b strings.Builder
	b.WriteByte('{')
	first := true
	for _, k := range j.keys {
		v := j.parts[k].Format(e)
		op, sole := j.ops[k]
		if j.OmitEmpty && sole && v == "-" {
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		kb, _ := json.Marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		switch {
		case sole && v == "-":
			b.WriteString("null")
		case sole && op == "DYNAMIC_METADATA":
			// The value keeps its JSON type (Envoy's typed formatter);
			// truncation applies to strings only.
			mv, _ := dynamicMetadata(&j.parts[k].pieces[0], e.Info)
			if _, ok := mv.(string); ok {
				mv = v // as rendered: truncated to :Z
			}
			vb, _ := json.Marshal(mv)
			b.Write(vb)
		case sole && numeric[op]:
			if _, err := strconv.ParseInt(v, 10, 64); err == nil {
				b.WriteString(v)
				break
			}
			vb, _ := json.Marshal(v)
			b.Write(vb)
		default:
			vb, _ := json.Marshal(v)
			b.Write(vb)
		}
	}
	b.WriteString("}\n")
	return b.String()
}
