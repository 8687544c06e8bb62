package headertometadata

import (
	"encoding/base64"
	"reflect"
	"strings"
	"testing"

	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/stats"
)

// TestExtract: a header's values are joined with "," (Envoy's
// getAllOfHeaderAsString) and removed with remove; a cookie is found
// across cookie headers, unquoted, and is absent when empty.
func TestExtract(t *testing.T) {
	h := filter.NewHeaderMap(filter.Pair{Key: "x-a", Value: "1"}, filter.Pair{Key: "x-a", Value: "2"},
		filter.Pair{Key: "cookie", Value: "a=1; b=\"two\""}, filter.Pair{Key: "cookie", Value: "c=; d=4;e=5"})
	if v, ok := (&Rule{Header: "x-a"}).extract(h); !ok || v != "1,2" {
		t.Errorf("x-a: %q %v", v, ok)
	}
	if v, ok := (&Rule{Header: "x-a", Remove: true}).extract(h); !ok || v != "1,2" || len(h.Values("x-a")) != 0 {
		t.Errorf("remove: %q %v, left %q", v, ok, h.Values("x-a"))
	}
	for name, want := range map[string]string{"a": "1", "b": "two", "c": "", "d": "4", "e": "5", "z": ""} {
		v, ok := (&Rule{Cookie: name}).extract(h)
		if v != want || ok != (want != "") {
			t.Errorf("cookie %s: %q %v, want %q", name, v, ok, want)
		}
	}
}

// TestConvert: each type and encoding, and the values Envoy skips: too
// long, bad base64, not a number, not a serialized Value.
func TestConvert(t *testing.T) {
	st := stats.New()
	c := &counters{base64Failed: st.Counter("b64"), tooLong: st.Counter("long")}
	for _, tc := range []struct {
		in   string
		kv   KV
		want any
		ok   bool
	}{
		{"v", KV{Type: "STRING"}, "v", true},
		{" 12.5 ", KV{Type: "NUMBER"}, 12.5, true},
		{"12x", KV{Type: "NUMBER"}, nil, false},
		{base64.StdEncoding.EncodeToString([]byte("hi!!")), KV{Type: "STRING", Base64: true}, "hi!!", true},
		{base64.RawStdEncoding.EncodeToString([]byte("hi!!")), KV{Type: "STRING", Base64: true}, "hi!!", true},
		{"%%%", KV{Type: "STRING", Base64: true}, nil, false},
		{base64.StdEncoding.EncodeToString([]byte{0x20, 0x01}), KV{Type: "PROTOBUF_VALUE", Base64: true}, true, true}, // bool_value: true
		{"\xff", KV{Type: "PROTOBUF_VALUE"}, nil, false},
		{strings.Repeat("x", maxValueLen), KV{Type: "STRING"}, nil, false},
		{strings.Repeat("x", maxValueLen-1), KV{Type: "STRING"}, strings.Repeat("x", maxValueLen-1), true},
	} {
		got, ok := convert(tc.in, &tc.kv, c)
		if ok != tc.ok || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("convert(%.20q, %+v) = %v %v, want %v %v", tc.in, tc.kv, got, ok, tc.want, tc.ok)
		}
	}
	if c.base64Failed.Value() != 1 || c.tooLong.Value() != 1 {
		t.Errorf("base64_decode_failed %d, header_value_too_long %d; want 1, 1", c.base64Failed.Value(), c.tooLong.Value())
	}
}
