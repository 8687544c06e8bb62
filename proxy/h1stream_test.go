package proxy

import (
	"bufio"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
)

// TestHTTP1RequestHeadersInOrder: an HTTP/1 request's header map, as the
// first filter sees it, is the pseudo-headers and then the fields in the
// order the client sent them (names lower-cased, duplicates kept apart),
// with the fields the codec consumed (Host, Transfer-Encoding, an
// answered Expect) left out and Envoy's x-forwarded-proto and
// x-request-id added at the end.
func TestHTTP1RequestHeadersInOrder(t *testing.T) {
	seen := make(chan []filter.Pair, 1)
	h := &hooks{decodeHeaders: func(_ filter.Callbacks, m *filter.HeaderMap, _ bool) filter.HeadersStatus {
		seen <- slices.Clone(m.Pairs())
		return filter.HeadersContinue
	}}
	f := start(t, []*config.Route{{Match: config.RouteMatch{Prefix: "/", CaseSensitive: true},
		DirectResponse: &config.DirectResponse{Status: 200, Body: []byte("ok")}}}, []string{"rec"}, loader{"rec": h})
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	req := "POST /p?q=1 HTTP/1.1\r\nZ-Last: 1\r\nHost: example.com\r\nA-First: 2\r\nM-Mid: 3\r\nA-First: 4\r\n" +
		"Transfer-Encoding: chunked\r\nB-Second: 5\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	pairs := <-seen
	var got []string
	for _, p := range pairs {
		if p.Key == "x-request-id" {
			if p.Value == "" {
				t.Error("empty x-request-id")
			}
			p.Value = "<id>"
		}
		got = append(got, p.Key+"="+p.Value)
	}
	want := []string{":authority=example.com", ":path=/p?q=1", ":method=POST", ":scheme=http",
		"z-last=1", "a-first=2", "m-mid=3", "a-first=4", "b-second=5",
		"x-forwarded-proto=http", "x-request-id=<id>"} // in Envoy's order (mutateRequestHeaders)
	if !slices.Equal(got, want) {
		t.Errorf("request header map:\n got %s\nwant %s", strings.Join(got, " "), strings.Join(want, " "))
	}
}

// TestHTTP1ResponseFieldsInOrder: the HTTP/1 response head carries the
// response header map's fields in the map's order (as Envoy writes
// them), no longer re-sorted through an http.Header, with the proxy's
// framing, Date and Server fields after them.
func TestHTTP1ResponseFieldsInOrder(t *testing.T) {
	h := &hooks{encodeHeaders: func(_ filter.Callbacks, m *filter.HeaderMap, _ bool) filter.HeadersStatus {
		m.Add("z-one", "1")
		m.Add("a-two", "2")
		m.Add("m-three", "3")
		m.Add("a-two", "4")
		return filter.HeadersContinue
	}}
	f := start(t, []*config.Route{{Match: config.RouteMatch{Prefix: "/", CaseSensitive: true},
		DirectResponse: &config.DirectResponse{Status: 200, Body: []byte("ok")}}}, []string{"rec"}, loader{"rec": h})
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var ours []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			break
		}
		switch name, _, _ := strings.Cut(line, ":"); strings.ToLower(name) {
		case "z-one", "a-two", "m-three":
			ours = append(ours, line)
		}
	}
	want := []string{"Z-One: 1", "A-Two: 2", "M-Three: 3", "A-Two: 4"}
	if !slices.Equal(ours, want) {
		t.Errorf("response fields %q, want %q", ours, want)
	}
}
