package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/internal/http1"
	"github.com/wasmproxy/wasmproxy/internal/testnet"
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
	// In order, and in lower case as Envoy writes them.
	want := []string{"z-one: 1", "a-two: 2", "m-three: 3", "a-two: 4"}
	if !slices.Equal(ours, want) {
		t.Errorf("response fields %q, want %q", ours, want)
	}
}

// TestHTTP1ClientCloseCancelsStream: a client that closes its connection
// while its request waits on the upstream (a GET, and a POST whose body
// was read in full) ends the stream: the proxy closes the upstream
// connection, without waiting for any timeout (the route has none).
func TestHTTP1ClientCloseCancelsStream(t *testing.T) {
	for _, req := range []string{
		"GET /slow HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"POST /slow HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello",
	} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		gotRequest, upstreamClosed := make(chan struct{}), make(chan struct{})
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			var head http1.Request
			br := bufio.NewReader(c)
			if http1.ReadRequest(br, http1.Limits{}, &head) != nil {
				return
			}
			if _, err := io.Copy(io.Discard, http1.NewBodyReader(br, &head, http1.Limits{})); err != nil {
				return
			}
			close(gotRequest)
			// Never answer; wait for the proxy to give up on us.
			_, _ = io.Copy(io.Discard, br)
			close(upstreamClosed)
		}()
		route := prefixRoute("/", "web")
		route.Timeout = 0
		f := start(t, []*config.Route{route}, nil, loader{}, staticCluster("web", ln.Addr().String()))
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		select {
		case <-gotRequest:
		case <-time.After(30 * time.Second):
			t.Fatal("the upstream never got the request")
		}
		c.Close()
		select {
		case <-upstreamClosed:
		case <-time.After(30 * time.Second):
			t.Fatalf("%q: the client went away but the upstream request was not ended", strings.Fields(req)[0])
		}
	}
}

// TestHTTP1KeepAliveNoGoroutinePerRequest: keep-alive requests on one
// connection are served by the connection's goroutines: watching for the
// client's close while a stream runs starts no goroutine per request.
func TestHTTP1KeepAliveNoGoroutinePerRequest(t *testing.T) {
	up := newRawUpstream(t, func(conn, n int, req *http1.Request, body string) (string, bool) {
		return okResponse("hi"), false
	})
	f := start(t, []*config.Route{prefixRoute("/", "web")}, nil, loader{}, staticCluster("web", up.addr))
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReader(c)
	get := []byte("GET /x HTTP/1.1\r\nHost: example.com\r\n\r\n")
	roundTrip := func() {
		if _, err := c.Write(get); err != nil {
			t.Fatal(err)
		}
		n, err := testnet.ReadHead(br)
		if err != nil || n != 2 {
			t.Fatalf("response: body of %d bytes, %v", n, err)
		}
		if _, err := br.Discard(n); err != nil {
			t.Fatal(err)
		}
	}
	roundTrip() // connections open from here on
	const requests = 300
	before := goroutinesCreated()
	for i := 0; i < requests; i++ {
		roundTrip()
	}
	if created := goroutinesCreated() - before; created >= requests/2 {
		t.Errorf("%d keep-alive requests created %d goroutines", requests, created)
	}
}

func goroutinesCreated() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestUpstreamResponseHeadersInOrder: an HTTP/1.1 upstream response's
// header map, as the first response filter sees it, is :status and then
// the fields in the order the upstream sent them (names lower-cased,
// duplicates kept apart, hop-by-hop fields left out), built by the
// pool's codec with no http.Header in between; the router's own fields
// follow.
func TestUpstreamResponseHeadersInOrder(t *testing.T) {
	up := newRawUpstream(t, func(conn, n int, req *http1.Request, body string) (string, bool) {
		return "HTTP/1.1 200 OK\r\nZ-Last: 1\r\nA-First: 2\r\nKeep-Alive: timeout=5\r\nM-Mid: 3\r\nA-First: 4\r\nContent-Length: 2\r\nB-Second: 5\r\n\r\nok", false
	})
	seen := make(chan []filter.Pair, 1)
	h := &hooks{encodeHeaders: func(_ filter.Callbacks, m *filter.HeaderMap, _ bool) filter.HeadersStatus {
		seen <- slices.Clone(m.Pairs())
		return filter.HeadersContinue
	}}
	f := start(t, []*config.Route{prefixRoute("/", "web")}, []string{"rec"}, loader{"rec": h}, staticCluster("web", up.addr))
	resp, body := do(t, mustReq("GET", "http://"+f.addr+"/p", nil))
	if resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	var got []string
	for _, p := range <-seen {
		if p.Key == "x-envoy-upstream-service-time" {
			p.Value = "<ms>"
		}
		got = append(got, p.Key+"="+p.Value)
	}
	want := []string{":status=200", "z-last=1", "a-first=2", "m-mid=3", "a-first=4", "content-length=2", "b-second=5",
		"x-envoy-upstream-service-time=<ms>"}
	if !slices.Equal(got, want) {
		t.Errorf("response header map:\n got %s\nwant %s", strings.Join(got, " "), strings.Join(want, " "))
	}
}

// TestHTTP1KeepAliveBodiesInTurn: request bodies of different framings
// in turn on one keep-alive connection (length, chunked with a trailer,
// none, length again) each reach the upstream whole: the connection's
// reused body reader starts afresh for every request.
func TestHTTP1KeepAliveBodiesInTurn(t *testing.T) {
	up := newRawUpstream(t, func(conn, n int, req *http1.Request, body string) (string, bool) {
		return okResponse("got " + body), false
	})
	f := start(t, []*config.Route{prefixRoute("/", "web")}, nil, loader{}, staticCluster("web", up.addr))
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReader(c)
	for i, tc := range []struct{ req, want string }{
		{"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello", "got hello"},
		{"POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n", "got abcde"},
		{"GET /c HTTP/1.1\r\nHost: h\r\n\r\n", "got "},
		{"POST /d HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz", "got xyz"},
	} {
		if _, err := c.Write([]byte(tc.req)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || string(body) != tc.want {
			t.Fatalf("request %d: %d %q %v, want 200 %q", i, resp.StatusCode, body, err, tc.want)
		}
		if resp.Close {
			t.Fatalf("request %d: the proxy closes the connection", i)
		}
	}
	if n := up.connCount(); n != 1 {
		t.Errorf("upstream saw %d connections, want 1", n)
	}
}

// TestHTTP1PipelinedRequestsInOrder: requests a client sends before the
// previous response came are answered in order, whether they arrive
// with the first one or while it is being served — the latter is the
// case the wait that also sends the last response (awaitRequest) gets
// no wake-up for, and must still serve — and the connection serves
// requests in turn after it.
func TestHTTP1PipelinedRequestsInOrder(t *testing.T) {
	limits := awaitEvents
	got, release := make(chan string, 8), make(chan struct{})
	up := newRawUpstream(t, func(conn, n int, req *http1.Request, body string) (string, bool) {
		got <- req.Path
		if req.Path == "/hold" {
			<-release
		}
		return okResponse("got " + req.Path), false
	})
	f := start(t, []*config.Route{prefixRoute("/", "web")}, nil, loader{}, staticCluster("web", up.addr))
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReader(c)
	send := func(paths ...string) {
		t.Helper()
		var b strings.Builder
		for _, p := range paths {
			b.WriteString("GET " + p + " HTTP/1.1\r\nHost: h\r\n\r\n")
		}
		if _, err := io.WriteString(c, b.String()); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(paths ...string) {
		t.Helper()
		for _, p := range paths {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("response for %s: %v", p, err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || string(body) != "got "+p {
				t.Fatalf("response for %s: %d %q %v", p, resp.StatusCode, body, err)
			}
		}
	}
	send("/a", "/b", "/c") // one write
	expect("/a", "/b", "/c")
	for _, p := range []string{"/a", "/b", "/c"} {
		if g := <-got; g != p {
			t.Fatalf("upstream got %s, want %s", g, p)
		}
	}
	send("/hold")
	if g := <-got; g != "/hold" {
		t.Fatalf("upstream got %s", g)
	}
	// Sent while /hold is being served, and in the proxy's socket
	// before /hold's response goes out.
	send("/next")
	waitAcked(t, c)
	close(release)
	expect("/hold", "/next")
	if g := <-got; g != "/next" {
		t.Fatalf("upstream got %s", g)
	}
	if noHold := limits.next(t, c); !noHold {
		t.Error("the wait that missed /next left the connection holding responses")
	}
	for _, p := range []string{"/d", "/e"} {
		send(p)
		expect(p)
	}

	// A client that is only idle past awaitLimit keeps its connection
	// as it was, and its next requests are served.
	c2, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	_ = c2.SetDeadline(time.Now().Add(60 * time.Second))
	c, br = c2, bufio.NewReader(c2)
	send("/f")
	expect("/f")
	if noHold := limits.next(t, c); noHold {
		t.Error("an idle client's connection stopped holding responses")
	}
	for _, p := range []string{"/g", "/h"} {
		send(p)
		expect(p)
	}
}

// awaitLimitEvents is what awaitLimitHook reports, by client address.
type awaitLimitEvents struct {
	mu sync.Mutex
	ch map[string]chan bool
}

var awaitEvents = &awaitLimitEvents{ch: map[string]chan bool{}}

func init() {
	// Set before any server starts: the hook is read without a lock.
	awaitLimitHook = func(client string, noHold bool) {
		select {
		case awaitEvents.of(client) <- noHold:
		default:
		}
	}
}

func (e *awaitLimitEvents) of(client string) chan bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.ch[client]
	if !ok {
		c = make(chan bool, 8)
		e.ch[client] = c
	}
	return c
}

// next waits for awaitLimit to end a wait of the proxy's connection
// with client c (the test's own end).
func (e *awaitLimitEvents) next(t *testing.T, c net.Conn) bool {
	t.Helper()
	select {
	case noHold := <-e.of(c.LocalAddr().String()):
		return noHold
	case <-time.After(60 * time.Second):
		t.Fatal("awaitLimit never ended the connection's wait")
		return false
	}
}
