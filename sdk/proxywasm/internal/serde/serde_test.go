package serde

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"testing"
)

func TestSerializeMapLayout(t *testing.T) {
	got := SerializeMap([][2]string{{"a", "1"}, {"bb", ""}})
	var want []byte
	want = binary.LittleEndian.AppendUint32(want, 2)
	want = binary.LittleEndian.AppendUint32(want, 1)
	want = binary.LittleEndian.AppendUint32(want, 1)
	want = binary.LittleEndian.AppendUint32(want, 2)
	want = binary.LittleEndian.AppendUint32(want, 0)
	want = append(want, 'a', 0, '1', 0, 'b', 'b', 0, 0)
	if !bytes.Equal(got, want) {
		t.Fatalf("SerializeMap = %v, want %v", got, want)
	}
}

func TestSerializeEmptyMap(t *testing.T) {
	for _, in := range [][][2]string{nil, {}} {
		got := SerializeMap(in)
		if !bytes.Equal(got, []byte{0, 0, 0, 0}) {
			t.Fatalf("SerializeMap(%v) = %v, want 4 zero bytes", in, got)
		}
	}
}

func TestMapRoundTrip(t *testing.T) {
	cases := [][][2]string{
		{},
		{{":method", "GET"}},
		{{":path", "/a?b=c"}, {"x-dup", "1"}, {"x-dup", "2"}, {"empty", ""}, {"", "no-key"}},
		{{"bin", "a\x00b"}}, // NUL inside a value survives: lengths rule
	}
	for _, in := range cases {
		out := DeserializeMap(SerializeMap(in))
		if !reflect.DeepEqual(out, in) {
			t.Errorf("round trip of %q = %q", in, out)
		}
	}
}

func TestDeserializeMapRejectsMalformed(t *testing.T) {
	good := SerializeMap([][2]string{{"k", "v"}, {"key2", "value2"}})
	bad := map[string][]byte{
		"empty":                   nil,
		"short":                   {1, 0},
		"count too big":           {9, 0, 0, 0, 1, 0, 0, 0},
		"truncated":               good[:len(good)-1],
		"trailing bytes":          append(append([]byte{}, good...), 0),
		"empty map with trailing": {0, 0, 0, 0, 1},
		"missing NUL": func() []byte {
			b := append([]byte{}, good...)
			b[4+8*2+1] = 'x' // NUL after first key
			return b
		}(),
		"huge lengths": func() []byte {
			b := binary.LittleEndian.AppendUint32(nil, 1)
			b = binary.LittleEndian.AppendUint32(b, 0xffffffff)
			b = binary.LittleEndian.AppendUint32(b, 0xffffffff)
			return append(b, 0, 0)
		}(),
	}
	for name, in := range bad {
		if got := DeserializeMap(in); got != nil {
			t.Errorf("%s: DeserializeMap = %q, want nil", name, got)
		}
	}
}

func TestSerializePropertyPath(t *testing.T) {
	cases := []struct {
		in   []string
		want string
	}{
		{[]string{"request", "headers", "x-foo"}, "request\x00headers\x00x-foo"},
		{[]string{"plugin_name"}, "plugin_name"},
		{nil, ""},
	}
	for _, c := range cases {
		if got := string(SerializePropertyPath(c.in)); got != c.want {
			t.Errorf("SerializePropertyPath(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
