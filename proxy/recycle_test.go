package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
)

// recycleEvent is what recycleObserver reported for one request.
type recycleEvent struct {
	s        *stream
	recycled bool
	why      string
	path     string
}

// startRecycleProxy runs recycleYAML (or yaml, when not "") in front
// of the upstream up.
func startRecycleProxy(t *testing.T, yaml, up string) *fixture {
	t.Helper()
	if yaml == "" {
		yaml = recycleYAML
	}
	_, port, _ := net.SplitHostPort(up)
	return startYAML(t, strings.NewReplacer("{{UPPORT}}", port, "{{DOWNPORT}}", "1").Replace(yaml), up)
}

// observeRecycling reports each HTTP/1 request's recycling decision on
// the returned channel until the test ends.
func observeRecycling(t *testing.T) <-chan recycleEvent {
	ch := make(chan recycleEvent, 4096)
	f := func(s *stream, recycled bool, why string) {
		path, _ := s.fc.ReqHeaders.Get(":path")
		select {
		case ch <- recycleEvent{s, recycled, why, path}:
		default:
			panic("recycle events not read")
		}
	}
	recycleObserver.Store(&f)
	t.Cleanup(func() { recycleObserver.Store(nil) })
	return ch
}

// nextRecycle waits for the next decision.
func nextRecycle(t *testing.T, ch <-chan recycleEvent) recycleEvent {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no recycling decision reported")
		return recycleEvent{}
	}
}

// echoRequest is an upstream that answers with the request's X-Req-*
// fields (sorted, "name=value" joined by ";"), "|" and the request's
// body; /block waits for the proxy to give up on it, /reset's response
// ends before its body does; a request with
// X-Fail-Once gets a 503 the first time its value is seen.
func echoRequest(t *testing.T) string {
	var failed sync.Map
	return upstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			<-r.Context().Done()
			return
		}
		if r.URL.Path == "/reset" {
			// A response cut short: the proxy resets the stream.
			c, bw, _ := http.NewResponseController(w).Hijack()
			_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
			_ = bw.Flush()
			_ = c.Close()
			return
		}
		if v := r.Header.Get("X-Fail-Once"); v != "" {
			if _, seen := failed.LoadOrStore(v, true); !seen {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
		}
		var fields []string
		for k, vs := range r.Header {
			if strings.HasPrefix(k, "X-Req-") {
				fields = append(fields, k+"="+strings.Join(vs, ","))
			}
		}
		sort.Strings(fields)
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s|%s", strings.Join(fields, ";"), b)
	})
}

// rawClient is a keep-alive HTTP/1.1 client on one connection.
type rawClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, c: c, br: bufio.NewReader(c)}
}

// do sends a request with fields ("Name: value") and body, and returns
// the response's status and body.
func (rc *rawClient) do(method, path string, fields []string, body string) (int, string) {
	rc.t.Helper()
	status, got, err := rc.try(method, path, fields, body)
	if err != nil {
		rc.t.Fatalf("%s %s: %v", method, path, err)
	}
	return status, got
}

// try is do that returns the connection's failure.
func (rc *rawClient) try(method, path string, fields []string, body string) (int, string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: recycle.test\r\n", method, path)
	for _, f := range fields {
		b.WriteString(f + "\r\n")
	}
	if body != "" || method == "POST" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n" + body)
	_ = rc.c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(rc.c, b.String()); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		return 0, "", err
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(got), err
}

// expectEcho sends a request and checks that the upstream saw exactly
// its X-Req-* fields and body.
func (rc *rawClient) expectEcho(method, path string, fields []string, body string) {
	rc.t.Helper()
	status, got := rc.do(method, path, fields, body)
	var want []string
	for _, f := range fields {
		name, value, _ := strings.Cut(f, ": ")
		if strings.HasPrefix(name, "X-Req-") {
			want = append(want, name+"="+value)
		}
	}
	sort.Strings(want)
	if w := strings.Join(want, ";") + "|" + body; status != 200 || got != w {
		rc.t.Fatalf("%s %s: %d %.200q, want 200 %.200q", method, path, status, got, w)
	}
}

const recycleYAML = yamlListener + `
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes:
              - match: {prefix: /retry}
                route:
                  cluster: up
                  retry_policy: {retry_on: 5xx, num_retries: 1}
              - match: {prefix: /mirror}
                route: {cluster: up, request_mirror_policies: [{cluster: up}]}
              - match: {prefix: /msd}
                route: {cluster: up, max_stream_duration: {max_stream_duration: 30s}}
              - match: {prefix: /block}
                route: {cluster: up, idle_timeout: 0.2s}
              - match: {prefix: /}
                route: {cluster: up}
` + yamlClusters

// TestRecycledStreamServesNextRequestAlone: on a keep-alive connection,
// a plain request's stream serves the next request, which sees none of
// the previous request's fields, body or cancellation: the upstream
// echoes exactly what each request sent (a previous request with more
// fields than the stream holds inline, a longer body), and each answer
// is a 200 (a context left cancelled by the previous request would fail
// the exchange).
func TestRecycledStreamServesNextRequestAlone(t *testing.T) {
	events := observeRecycling(t)
	up := echoRequest(t)
	f := startRecycleProxy(t, "", up)
	rc := dialRaw(t, f.addr)
	rc.expectEcho("GET", "/warm", nil, "") // opens the upstream connection
	nextRecycle(t, events)

	var many []string
	for i := range 20 {
		many = append(many, fmt.Sprintf("X-Req-A%02d: secret-%d", i, i))
	}
	rc.expectEcho("POST", "/a", many, strings.Repeat("A", 300))
	first := nextRecycle(t, events)
	if !first.recycled {
		t.Fatalf("a plain POST's stream was not recycled: %s", first.why)
	}
	rc.expectEcho("POST", "/b", []string{"X-Req-B: 1"}, "bb")
	ev := nextRecycle(t, events)
	if !ev.recycled || ev.s != first.s || ev.path != "/b" {
		t.Fatalf("the next request did not run on the recycled stream: %+v (first %p)", ev, first.s)
	}
	rc.expectEcho("GET", "/c", nil, "")
	if ev := nextRecycle(t, events); !ev.recycled || ev.s != first.s {
		t.Fatalf("a GET did not run on the recycled stream: %+v", ev)
	}
	rc.expectEcho("POST", "/d", []string{"X-Req-D: d"}, "")
	if ev := nextRecycle(t, events); !ev.recycled || ev.s != first.s {
		t.Fatalf("an empty POST did not run on the recycled stream: %+v", ev)
	}
}

// TestEscapedStreamNotRecycled: a stream that may outlive its request
// (a retry, a mirror, a body read on a goroutine, a stream timer with a
// closure, a stream timeout that expired, a refused upgrade) is not
// recycled, and the next request on the connection runs on a new
// stream and sees only its own fields and body.
func TestEscapedStreamNotRecycled(t *testing.T) {
	events := observeRecycling(t)
	up := echoRequest(t)
	f := startRecycleProxy(t, "", up)
	rc := dialRaw(t, f.addr)
	rc.expectEcho("GET", "/warm", nil, "")
	nextRecycle(t, events)
	n := 0
	for _, tc := range []struct {
		name string
		send func()
	}{
		{"retry", func() {
			rc.expectEcho("POST", "/retry", []string{"X-Req-R: r", "X-Fail-Once: " + t.Name()}, "retried")
		}},
		{"mirror", func() { rc.expectEcho("POST", "/mirror", []string{"X-Req-M: m"}, "mirrored") }},
		{"large body", func() { rc.expectEcho("POST", "/large", []string{"X-Req-L: l"}, strings.Repeat("L", 100<<10)) }},
		{"max_stream_duration", func() { rc.expectEcho("GET", "/msd", []string{"X-Req-T: t"}, "") }},
		{"stream idle timeout", func() {
			if status, _ := rc.do("GET", "/block", []string{"X-Req-I: i"}, ""); status != http.StatusRequestTimeout {
				t.Fatalf("/block: %d, want 408", status)
			}
		}},
		{"refused upgrade", func() {
			if status, _ := rc.do("GET", "/upgrade", []string{"X-Req-U: u", "Connection: upgrade", "Upgrade: websocket"}, ""); status != http.StatusForbidden {
				t.Fatalf("upgrade: %d, want 403", status)
			}
		}},
	} {
		// A plain request first, so that the escaping one runs on a
		// recycled stream: it must not go back to the connection.
		rc.expectEcho("GET", "/plain", []string{"X-Req-P: " + tc.name}, "")
		if ev := nextRecycle(t, events); !ev.recycled {
			t.Fatalf("%s: the plain request before was not recycled: %s", tc.name, ev.why)
		}
		tc.send()
		esc := nextRecycle(t, events)
		if esc.recycled {
			t.Fatalf("%s: the stream was recycled", tc.name)
		}
		t.Logf("%s: not recycled: %s", tc.name, esc.why)
		rc.expectEcho("POST", "/after", []string{"X-Req-N: " + tc.name}, "next")
		if ev := nextRecycle(t, events); ev.s == esc.s {
			t.Fatalf("%s: the next request ran on the stream that was not recycled", tc.name)
		}
		n++
	}
	if n != 6 {
		t.Fatalf("%d cases ran", n)
	}
}

// TestStreamHeldByFilterNotRecycled: a filter may keep what its
// callbacks handed it (the request's header map, the stream's info)
// past the stream's end. With a filter configured the stream is never
// recycled: what the filter of request N holds still shows request N
// once request N+1 (with other fields) was served on the connection.
func TestStreamHeldByFilterNotRecycled(t *testing.T) {
	events := observeRecycling(t)
	up := echoRequest(t)
	type held struct {
		h    *filter.HeaderMap
		info *filter.StreamInfo
	}
	var mu sync.Mutex
	var kept []held
	hk := &hooks{decodeHeaders: func(cb filter.Callbacks, h *filter.HeaderMap, end bool) filter.HeadersStatus {
		mu.Lock()
		kept = append(kept, held{cb.RequestHeaders(), cb.Info()})
		mu.Unlock()
		return filter.HeadersContinue
	}}
	f := start(t, []*config.Route{prefixRoute("/", "up")}, []string{"hold"}, loader{"hold": hk}, staticCluster("up", up))
	rc := dialRaw(t, f.addr)
	for i := range 4 {
		rc.expectEcho("POST", fmt.Sprintf("/held/%d", i), []string{fmt.Sprintf("X-Req-Marker: request-%d", i)}, strings.Repeat("x", i+1))
		if ev := nextRecycle(t, events); ev.recycled || ev.why != "filters" {
			t.Fatalf("request %d: recycled %v (%s), want not for its filters", i, ev.recycled, ev.why)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i, k := range kept {
		if v, _ := k.h.Get("x-req-marker"); v != fmt.Sprintf("request-%d", i) {
			t.Errorf("request %d's header map, held by its filter, now says %q", i, v)
		}
		if n := k.info.RequestBodyBytes.Load(); n != uint64(i+1) {
			t.Errorf("request %d's stream info, held by its filter, now counts %d body bytes", i, n)
		}
		for j := range i {
			if kept[j].h == k.h || kept[j].info == k.info {
				t.Errorf("requests %d and %d share a stream", j, i)
			}
		}
	}
}

// TestH2StreamNotRecycled: HTTP/2 streams (x/net/http2 runs a
// connection's streams concurrently) never reach recycling; an HTTP/1
// connection of the same listener still does.
func TestH2StreamNotRecycled(t *testing.T) {
	events := observeRecycling(t)
	up := echoRequest(t)
	f := startRecycleProxy(t, "", up)
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	for i := range 3 {
		req, _ := http.NewRequest("POST", "http://"+f.addr+"/h2", strings.NewReader("h2 body"))
		req.Header.Set("X-Req-H2", fmt.Sprint(i))
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("X-Req-H2=%d|h2 body", i); string(b) != want {
			t.Fatalf("h2: %q, want %q", b, want)
		}
	}
	rc := dialRaw(t, f.addr)
	for i := range 3 {
		rc.expectEcho("GET", "/h1", []string{fmt.Sprintf("X-Req-H1: %d", i)}, "")
		if ev := nextRecycle(t, events); ev.path != "/h1" {
			t.Fatalf("a decision for %s, want only HTTP/1 requests'", ev.path)
		}
	}
}

// TestRecycleWithLateIdleTimer races the connection's stream idle timer
// against the streams' ends: with an idle timeout of 200µs, the
// timer fires during requests (408) and after them, while the stream it
// was armed for is recycled for the next request. Every 200 must echo
// its own request alone; the race detector checks that no firing
// touches a stream being cleared.
func TestRecycleWithLateIdleTimer(t *testing.T) {
	events := observeRecycling(t)
	go func() {
		for range events {
		}
	}()
	up := echoRequest(t)
	yaml := strings.Replace(recycleYAML, "route: {cluster: up}\n", "route: {cluster: up, idle_timeout: 0.0002s}\n", 1)
	f := startRecycleProxy(t, yaml, up)
	var ok, expired, reset int
	rc := dialRaw(t, f.addr)
	for i := range 300 {
		marker := fmt.Sprint(i)
		status, got, err := rc.try("POST", "/late", []string{"X-Req-Late: " + marker}, marker)
		switch {
		case err != nil:
			// Expired once its response began: the stream is reset and
			// the connection closes.
			reset++
			rc = dialRaw(t, f.addr)
		case status == 200 && got == "X-Req-Late="+marker+"|"+marker:
			ok++
		case status == http.StatusRequestTimeout:
			expired++
		default:
			t.Fatalf("request %s: %d %q", marker, status, got)
		}
	}
	t.Logf("%d answered, %d expired, %d reset", ok, expired, reset)
}

// TestResetStreamNotRecycled: a stream reset mid-body (the upstream's
// response cut short, the client gone in the middle of its request
// body) ends its connection and is never recycled; the next
// connection's requests see only their own fields and body.
func TestResetStreamNotRecycled(t *testing.T) {
	events := observeRecycling(t)
	up := echoRequest(t)
	f := startRecycleProxy(t, "", up)
	dialRaw(t, f.addr).expectEcho("GET", "/warm", nil, "")
	nextRecycle(t, events)

	rc := dialRaw(t, f.addr)
	rc.expectEcho("POST", "/plain", []string{"X-Req-P: p"}, "plain")
	if ev := nextRecycle(t, events); !ev.recycled {
		t.Fatalf("the plain request was not recycled: %s", ev.why)
	}
	if status, got, err := rc.try("GET", "/reset", []string{"X-Req-R: r"}, ""); err == nil {
		t.Fatalf("a response cut short reached the client whole: %d %q", status, got)
	}

	rc = dialRaw(t, f.addr)
	rc.expectEcho("POST", "/plain", []string{"X-Req-P: p2"}, "plain2")
	nextRecycle(t, events)
	// The client goes away in the middle of its request body (the
	// stream runs on the recycled stream of the request before).
	if _, err := io.WriteString(rc.c, "POST /cut HTTP/1.1\r\nHost: recycle.test\r\nX-Req-C: c\r\nContent-Length: 1000\r\n\r\nonly this"); err != nil {
		t.Fatal(err)
	}
	_ = rc.c.(*net.TCPConn).CloseWrite()
	if b, _ := io.ReadAll(rc.br); len(b) > 0 && !strings.HasPrefix(string(b), "HTTP/1.1 400") {
		t.Fatalf("the cut request got %q", b)
	}

	rc = dialRaw(t, f.addr)
	for i := range 3 {
		rc.expectEcho("POST", "/after", []string{fmt.Sprintf("X-Req-A: %d", i)}, fmt.Sprint(i))
		// The first dials the upstream again (the reset closed its
		// connection): its context is shared with the dial.
		if ev := nextRecycle(t, events); ev.path != "/after" || !ev.recycled && i > 0 {
			t.Fatalf("after the resets: a decision for %s (recycled %v, %s), want /after's", ev.path, ev.recycled, ev.why)
		}
	}
}
