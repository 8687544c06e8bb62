package proxy

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/filter"
)

// TestAppendLowerKey: the pool writes header names in lower case,
// byte by byte, whatever case the pairs or an http.Header held; bytes
// other than ASCII letters stay as they are.
func TestAppendLowerKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"a", "a"}, {"user-agent", "user-agent"}, {"USER-AGENT", "user-agent"}, {"X-Forwarded-Proto", "x-forwarded-proto"},
		{"X--Y", "x--y"}, {"Te", "te"}, {"X_Under_Score", "x_under_score"}, {"X Y", "x y"}, {"Ünicode-X", "Ünicode-x"},
		{"X\x7f", "x\x7f"}, {"X-1A-2b", "x-1a-2b"}, {"!#$%&'*+-.^_`|~", "!#$%&'*+-.^_`|~"},
	} {
		if got := string(appendLowerKey([]byte("p:"), tc.in)); got != "p:"+tc.want {
			t.Errorf("appendLowerKey(%q) = %q, want %q", tc.in, got, "p:"+tc.want)
		}
	}
}

// TestUpstreamFieldsMatchHTTPHeader: the fields the pool writes from
// the router's pairs are, field by field, those it wrote from the
// http.Header the router used to build (upstreamHead.httpHeader),
// including the hop-by-hop, Host, framing, empty User-Agent,
// x-forwarded-proto and route-timeout rules, and a bad field is the
// same error.
func TestUpstreamFieldsMatchHTTPHeader(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pairs   []filter.Pair
		timeout time.Duration
	}{
		{"plain", []filter.Pair{{Key: ":method", Value: "GET"}, {Key: ":path", Value: "/"}, {Key: ":authority", Value: "h"},
			{Key: "user-agent", Value: "wrk"}, {Key: "accept", Value: "a"}, {Key: "accept", Value: "b"}, {Key: "x-request-id", Value: "id"}}, 0},
		{"hop-by-hop and framing", []filter.Pair{{Key: "connection", Value: "close"}, {Key: "keep-alive", Value: "1"},
			{Key: "te", Value: "trailers"}, {Key: "transfer-encoding", Value: "chunked"}, {Key: "content-length", Value: "5"},
			{Key: "host", Value: "other"}, {Key: "upgrade", Value: "ws"}, {Key: "proxy-connection", Value: "x"},
			{Key: "trailer", Value: "t"}, {Key: "proxy-authenticate", Value: "p"}, {Key: "X-Mixed-CASE", Value: "v"}}, 0},
		{"empty user-agent, own x-forwarded-proto, timeout replaced", []filter.Pair{{Key: "user-agent", Value: ""},
			{Key: "x-forwarded-proto", Value: "https"}, {Key: "x-envoy-expected-rq-timeout-ms", Value: "7"}}, 1500 * time.Millisecond},
		{"no user-agent, sub-millisecond timeout", nil, time.Microsecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			uh := &upstreamHead{pairs: tc.pairs, scheme: "http", timeout: tc.timeout}
			req := &http.Request{Method: "GET", URL: originFormURL("up:80", "/p"), Host: "h"}
			fromPairs, err := appendRequestHead(nil, req, uh, 0, false)
			if err != nil {
				t.Fatal(err)
			}
			req.Header = uh.httpHeader()
			fromHeader, err := appendRequestHead(nil, req, nil, 0, false)
			if err != nil {
				t.Fatal(err)
			}
			if a, b := headLines(string(fromPairs)), headLines(string(fromHeader)); !slices.Equal(a, b) {
				t.Errorf("fields written from the pairs:\n%q\nfrom the http.Header:\n%q", a, b)
			}
		})
	}
	for _, bad := range []filter.Pair{{Key: "bad name", Value: "v"}, {Key: "x-ok", Value: "bad\nvalue"}} {
		uh := &upstreamHead{pairs: []filter.Pair{bad}, scheme: "http"}
		req := &http.Request{Method: "GET", URL: originFormURL("up:80", "/"), Host: "h"}
		_, errPairs := appendRequestHead(nil, req, uh, 0, false)
		req.Header = uh.httpHeader()
		_, errHeader := appendRequestHead(nil, req, nil, 0, false)
		if errPairs == nil || errHeader == nil || errPairs.Error() != errHeader.Error() {
			t.Errorf("field %q: error %v from the pairs, %v from the http.Header", bad.Key, errPairs, errHeader)
		}
	}
}

// headLines is a request head's lines after the request line, sorted
// stably by name: the http.Header wrote names in map order, the values
// of one name in order in both.
func headLines(head string) []string {
	lines := strings.Split(strings.TrimSuffix(head, "\r\n\r\n"), "\r\n")[1:]
	slices.SortStableFunc(lines, func(a, b string) int {
		na, _, _ := strings.Cut(a, ":")
		nb, _, _ := strings.Cut(b, ":")
		return strings.Compare(na, nb)
	})
	return lines
}
