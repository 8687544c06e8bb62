package accesslog

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/filter"
)

func headers(kv ...string) Lookup {
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(n string) (string, bool) { v, ok := m[n]; return v, ok }
}

func entry() *Entry {
	si := &filter.StreamInfo{
		StartTime:           time.Date(2026, 12, 5, 16, 1, 2, 345678912, time.UTC),
		Protocol:            "HTTP/1.1",
		ConnectionID:        7,
		DownstreamAddr:      netip.MustParseAddrPort("127.0.0.1:50000"),
		LocalAddr:           netip.MustParseAddrPort("127.0.0.1:10000"),
		RouteName:           "r1",
		ClusterName:         "backend",
		UpstreamAddr:        "127.0.0.1:8080",
		ResponseCode:        200,
		ResponseCodeDetails: "via_upstream",
	}
	si.EndTime = si.StartTime.Add(15 * time.Millisecond)
	si.RequestBodyBytes.Store(3)
	si.ResponseBodyBytes.Store(11)
	return &Entry{
		Info: si,
		RequestHeaders: headers(":method", "GET", ":path", "/p?q=1", ":authority", "example.com",
			"user-agent", "curl/8.5.0", "x-request-id", "abc"),
		ResponseHeaders: headers("x-envoy-upstream-service-time", "4"),
		Hostname:        "host1",
	}
}

func TestFormat(t *testing.T) {
	tests := []struct{ format, want string }{
		{DefaultFormat, `[2026-12-05T16:01:02.345Z] "GET /p?q=1 HTTP/1.1" 200 - 3 11 15 4 "-" "curl/8.5.0" "abc" "example.com" "127.0.0.1:8080"` + "\n"},
		{"%REQ(X-ENVOY-ORIGINAL-PATH?:PATH):2%", "/p"},
		{"%RESP(missing)% %TRAILER(grpc-status)%", "- -"},
		{"%START_TIME(%Y/%m/%d %H:%M:%S %s)%", "2026/12/05 16:01:02 1796486462"},
		{"%START_TIME(%E6S)%", "02.345678"},
		{"%RESPONSE_CODE_DETAILS% %CONNECTION_ID% %ROUTE_NAME% %UPSTREAM_CLUSTER%", "via_upstream 7 r1 backend"},
		{"%DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %DOWNSTREAM_LOCAL_ADDRESS%", "127.0.0.1:50000 127.0.0.1 127.0.0.1:10000"},
		{"%UPSTREAM_LOCAL_ADDRESS% %REQUESTED_SERVER_NAME% %UPSTREAM_TRANSPORT_FAILURE_REASON% %HOSTNAME%", "- - - host1"},
		{"100%% %PROTOCOL%", "100% HTTP/1.1"},
		// Outside a local reply's body format the body is empty, never "-".
		{"[%LOCAL_REPLY_BODY%]", "[]"},
	}
	for _, tc := range tests {
		f, err := Parse(tc.format)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.format, err)
		}
		if got := f.Format(entry()); got != tc.want {
			t.Errorf("Format(%q)\n got %q\nwant %q", tc.format, got, tc.want)
		}
	}
}

func TestFormatTCPHasNoHeaders(t *testing.T) {
	e := entry()
	e.RequestHeaders, e.ResponseHeaders = nil, nil
	e.Info.ResponseCode = 0
	e.Info.ResponseCodeDetails = ""
	f, _ := Parse(`"%REQ(:METHOD)%" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED%`)
	if got, want := f.Format(e), `"-" 0 - 3`; got != want {
		t.Errorf("got %q want %q", got, want)
	}
}

func TestParseErrors(t *testing.T) {
	for format, want := range map[string]string{
		"%BOGUS%":       `unknown or unsupported command operator "BOGUS"`,
		"abc %REQ(x":    "unterminated command at offset 4",
		"%REQ()%":       "needs a header name",
		"%PROTOCOL(x)%": "takes no argument",
		"%REQ(:path%":   "missing ')'",
	} {
		_, err := Parse(format)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want error containing %q", format, err, want)
		}
	}
}

func TestFlags(t *testing.T) {
	for details, want := range map[string]string{
		"via_upstream":        "",
		"route_not_found":     "NR",
		"cluster_not_found":   "NC",
		"no_healthy_upstream": "UH",
		"upstream_reset_before_response_started{connection_failure}": "UF",
		"upstream_reset_before_response_started{overflow}":           "UO",
		"upstream_reset_before_response_started{remote_reset}":       "UC",
		"upstream_response_timeout":                                  "UT",
		"downstream_remote_disconnect":                               "DC",
		"stream_idle_timeout":                                        "SI",
		"filter_config_not_found":                                    "NFCF",
		"upstream_max_stream_duration_reached":                       "UMSDR",
	} {
		if got := Flags(details); got != want {
			t.Errorf("Flags(%q) = %q, want %q", details, got, want)
		}
	}
}

// BenchmarkFormatDefault renders Envoy's default format: the work the
// data path adds per stream (queueing is one channel send more).
func BenchmarkFormatDefault(b *testing.B) {
	f, err := Parse(DefaultFormat)
	if err != nil {
		b.Fatal(err)
	}
	e := entry()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = f.Format(e)
	}
}
