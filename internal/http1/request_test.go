package http1

import (
	"bufio"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func parse(t testing.TB, raw string) (*Request, error) {
	t.Helper()
	var req Request
	err := ReadRequest(bufio.NewReader(strings.NewReader(raw)), Limits{}, &req)
	return &req, err
}

func TestReadRequest(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want Request
	}{
		{"GET", "GET /a?b HTTP/1.1\r\nHost: h\r\nX-A:  v  \r\n\r\n", Request{
			Method: "GET", Target: "/a?b", Path: "/a?b", Authority: "h", Minor: 1, KeepAlive: true,
			Fields: []Field{{"Host", "h"}, {"X-A", "v"}},
		}},
		{"chunked POST", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nExpect: 100-Continue\r\n\r\n", Request{
			Method: "POST", Target: "/", Path: "/", Authority: "h", Minor: 1, KeepAlive: true, Chunked: true, ContentLength: -1, ExpectContinue: true,
			Fields: []Field{{"Host", "h"}, {"Transfer-Encoding", "chunked"}, {"Expect", "100-Continue"}},
		}},
		{"absolute form", "GET HTTPS://a.example:8443?x HTTP/1.1\r\nHost: ignored\r\nConnection: close\r\n\r\n", Request{
			Method: "GET", Target: "HTTPS://a.example:8443?x", Path: "/?x", Authority: "a.example:8443", Scheme: "https", Minor: 1,
			Fields: []Field{{"Host", "ignored"}, {"Connection", "close"}},
		}},
		{"HTTP/1.0 keep-alive", "PUT /x HTTP/1.0\r\nContent-Length: 3\r\nConnection: Keep-Alive\r\n\r\n", Request{
			Method: "PUT", Target: "/x", Path: "/x", Minor: 0, ContentLength: 3, KeepAlive: true,
			Fields: []Field{{"Content-Length", "3"}, {"Connection", "Keep-Alive"}},
		}},
		{"IPv6 host and upgrade", "GET / HTTP/1.1\r\nHost: [::1]:80\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", Request{
			Method: "GET", Target: "/", Path: "/", Authority: "[::1]:80", Minor: 1, KeepAlive: true, Upgrade: "websocket",
			Fields: []Field{{"Host", "[::1]:80"}, {"Connection", "upgrade"}, {"Upgrade", "websocket"}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parse(t, tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			got.gathered = gathered{} // the parse's scratch space and the head string kept for the next
			if !reflect.DeepEqual(*got, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", *got, tc.want)
			}
		})
	}
}

func TestReadRequestRefusals(t *testing.T) {
	tests := []struct {
		raw     string
		status  int
		details string
	}{
		{"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400, DetailsChunkedAndLength},
		{"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 501, DetailsInvalidTE},
		{"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, DetailsTENotAllowed},
		{"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", 400, DetailsCodecError},
		{"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00\r\n\r\n", 400, DetailsInvalidCharacters},
		{"GET / HTTP/1.1\r\n\r\n", 400, DetailsMissingHost},
		{"GET / HTTP/3.0\r\nHost: h\r\n\r\n", 505, DetailsVersionNotSupported},
		{"GET " + strings.Repeat("a", 70<<10) + " HTTP/1.1\r\n\r\n", 431, DetailsHeadersTooLarge},
		{"GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400, DetailsInvalidURL},
		{"GET gopher://h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400, DetailsInvalidScheme},
		{"CONNECT h:443 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n", 400, DetailsBodyDisallowed},
	}
	for _, tc := range tests {
		_, err := parse(t, tc.raw)
		var e *Error
		if !errors.As(err, &e) || e.Status != tc.status || e.Details != tc.details {
			t.Errorf("%q: got %v, want %d %s", tc.raw[:min(len(tc.raw), 60)], err, tc.status, tc.details)
		}
	}
}

func TestReadRequestNoRequest(t *testing.T) {
	if _, err := parse(t, ""); !errors.Is(err, ErrNoRequest) {
		t.Fatalf("empty connection: %v, want ErrNoRequest", err)
	}
	if _, err := parse(t, "GET / HTTP/1.1\r\nHost: h\r\n"); err != io.ErrUnexpectedEOF {
		t.Fatalf("head cut short: %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestBodyReader(t *testing.T) {
	tests := []struct {
		name     string
		raw      string
		body     string
		trailers []Field
		err      bool
	}{
		{"length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloEXTRA", "hello", nil, false},
		{"chunked", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nhel\r\n2\r\nlo\r\n0\r\nA: 1\r\n\r\n", "hello", []Field{{"A", "1"}}, false},
		{"chunked, upper-case hex", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n", "0123456789", nil, false},
		{"short length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\nhello", "hello", nil, true},
		{"chunk without CRLF", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhelX\r\n0\r\n\r\n", "hel", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(tc.raw))
			var req Request
			if err := ReadRequest(br, Limits{}, &req); err != nil {
				t.Fatal(err)
			}
			b := NewBodyReader(br, &req, Limits{})
			got, err := io.ReadAll(b)
			if string(got) != tc.body || (err != nil) != tc.err {
				t.Fatalf("body %q err %v, want %q (error: %v)", got, err, tc.body, tc.err)
			}
			if !tc.err && (!b.Done() || !reflect.DeepEqual(b.Trailers(), tc.trailers)) {
				t.Fatalf("done %v trailers %v, want %v", b.Done(), b.Trailers(), tc.trailers)
			}
		})
	}
}

// serialize writes a parsed head back in the form the proxy would frame
// it: request line and fields as parsed.
func serialize(r *Request) string {
	var b strings.Builder
	b.WriteString(r.Method + " " + r.Target + " HTTP/1.")
	b.WriteByte(byte('0' + r.Minor))
	b.WriteString("\r\n")
	for _, f := range r.Fields {
		b.WriteString(f.Name + ": " + f.Value + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// FuzzReadRequest: no input panics the parser, and a head it accepts
// reads back the same after being written out again (no bytes whose
// meaning depends on who reads them).
func FuzzReadRequest(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nT: v\r\n\r\n",
		"POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
		"GET http://a:1/p?q HTTP/1.1\r\nHost: x\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		br := bufio.NewReader(strings.NewReader(raw))
		var req Request
		if err := ReadRequest(br, Limits{}, &req); err != nil {
			return
		}
		body, _ := io.ReadAll(io.LimitReader(NewBodyReader(br, &req, Limits{}), 1<<20))
		again, err := parse(t, serialize(&req))
		if err != nil {
			t.Fatalf("accepted %q, but not its re-serialization: %v", raw, err)
		}
		if !reflect.DeepEqual(*again, req) {
			t.Fatalf("re-serialization reads differently:\n%+v\n%+v", req, *again)
		}
		_ = body
	})
}

// TestFieldOf: the fields the codec interprets are found in any case
// (as strings.EqualFold found them), and no other name is one of them.
func TestFieldOf(t *testing.T) {
	want := map[string]int{"host": fieldHost, "transfer-encoding": fieldTransferEncoding,
		"content-length": fieldContentLength, "connection": fieldConnection,
		"expect": fieldExpect, "upgrade": fieldUpgrade}
	for n, f := range want {
		for _, k := range []string{n, strings.ToUpper(n), strings.ToUpper(n[:1]) + n[1:]} {
			if got := fieldOf(k); got != f {
				t.Errorf("fieldOf(%q) = %d, want %d", k, got, f)
			}
		}
	}
	for _, k := range []string{"", "hosts", "hos", "content-lengtH2", "content_length", "connectioN-", "x-upgrade", "expecT\r", "uPgrade!"} {
		if got := fieldOf(k); got != fieldOther {
			t.Errorf("fieldOf(%q) = %d, want none", k, got)
		}
	}
}
