package accesslog

import (
	"net/netip"
	"testing"

	"github.com/wasmproxy/wasmproxy/filter"
)

// TestFormatHeaderValue: as a header value, a command without a value
// renders empty (Envoy's omit_empty_values), not the log's "-"; a header
// whose value is "-" keeps it; literals and %% pass through.
func TestFormatHeaderValue(t *testing.T) {
	info := &filter.StreamInfo{DownstreamAddr: netip.MustParseAddrPort("10.0.0.7:5123")}
	req := map[string]string{"x-dash": "-", "x-a": "a"}
	e := &Entry{Info: info, RequestHeaders: func(n string) (string, bool) { v, ok := req[n]; return v, ok }}
	for format, want := range map[string]string{
		"%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%": "10.0.0.7",
		"[%DOWNSTREAM_REMOTE_ADDRESS%]":            "[10.0.0.7:5123]",
		"%REQ(x-missing)%":                         "",
		"%REQ(x-missing?x-a)%":                     "a",
		"%REQ(x-dash)%":                            "-",
		"%RESP(x-a)%":                              "", // no response headers
		"%UPSTREAM_HOST%":                          "", // not known
		"100%% %REQ(X-A):1%":                       "100% a",
	} {
		f, err := Parse(format)
		if err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		if got := f.FormatHeaderValue(e); got != want {
			t.Errorf("%s = %q, want %q", format, got, want)
		}
	}
}
