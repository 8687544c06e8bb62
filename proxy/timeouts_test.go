package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/wasmproxy/wasmproxy/config"
)

// Tests of the connection manager's timeouts. A timeout expected to fire
// is short (the slower the machine, the surer it fires); one expected not
// to fire has a wide margin.

func timeoutFixture(t *testing.T, up string, adjust func(h *config.HTTPConnectionManager)) *fixture {
	t.Helper()
	return startWith(t, []*config.Route{prefixRoute("/", "web")}, nil, nil, func(l *config.Listener) {
		adjust(l.FilterChains[0].HTTP)
	}, staticCluster("web", up))
}

// readStatus reads one response on br and returns its status and body.
func readStatus(t *testing.T, br *bufio.Reader) (int, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no response: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b)
}

// expectClosed waits (bounded) for the server to close c.
func expectClosed(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("connection not closed by the server: %v", err)
	}
}

// TestIdleTimeout: a connection that never sends a byte, or that went
// quiet after a request, is closed after idle_timeout.
func TestIdleTimeout(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	f := timeoutFixture(t, up, func(h *config.HTTPConnectionManager) {
		h.IdleTimeout = config.Duration(200 * time.Millisecond)
		// No drain period (TestDrainTimeoutAfterIdle): the close comes
		// at the idle timeout.
		noDrain := config.Duration(0)
		h.DrainTimeout = &noDrain
	})
	silent, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	expectClosed(t, silent, bufio.NewReader(silent))

	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if code, _ := readStatus(t, br); code != 200 {
		t.Fatalf("status %d", code)
	}
	expectClosed(t, c, br)
	if got := f.counter("http.ingress_http.downstream_cx_idle_timeout"); got != 2 {
		t.Errorf("downstream_cx_idle_timeout = %d, want 2", got)
	}

	// HTTP/2: an idle connection gets a GOAWAY.
	expectGoAway(t, f.addr)
}

// expectGoAway opens an HTTP/2 connection that sends nothing after its
// preface and waits (bounded) for the server's GOAWAY.
func expectGoAway(t *testing.T, addr string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		frame, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("HTTP/2: no GOAWAY before the connection ended: %v", err)
		}
		if _, ok := frame.(*http2.GoAwayFrame); ok {
			return
		}
	}
}

// TestStreamIdleTimeout: a request whose body stalls gets 408 "stream
// timeout" (HTTP/1 and HTTP/2); a response that stalls after its
// headers is reset.
func TestStreamIdleTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/stall" {
			w.WriteHeader(200)
			fmt.Fprint(w, "partial")
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		fmt.Fprint(w, "ok")
	})
	f := timeoutFixture(t, up, func(h *config.HTTPConnectionManager) {
		h.StreamIdleTimeout = config.Duration(300 * time.Millisecond)
	})

	for _, size := range []string{"10", "100000"} { // read on the stream goroutine, and on a reader goroutine
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: "+size+"\r\n\r\nabc")
		code, body := readStatus(t, br)
		if code != 408 || body != "stream timeout" {
			t.Fatalf("content-length %s, stalled body: %d %q, want 408 \"stream timeout\"", size, code, body)
		}
		expectClosed(t, c, br)
		c.Close()
	}

	// HTTP/2: headers without END_STREAM, then nothing.
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.WriteSettings()
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: requestBlock("POST", "/"), EndHeaders: true})
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	status := ""
	for status == "" {
		frame, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("HTTP/2 stalled stream: no answer: %v", err)
		}
		if mh, ok := frame.(*http2.MetaHeadersFrame); ok && mh.StreamID == 1 {
			status = mh.PseudoValue("status")
		}
	}
	if status != "408" {
		t.Fatalf("HTTP/2 stalled stream: status %s, want 408", status)
	}

	// A response that stalls after its headers: the client sees it cut.
	resp, err := http.Get("http://" + f.addr + "/stall")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || string(b) != "partial" {
		t.Fatalf("stalled response: %q %v, want \"partial\" then an error", b, err)
	}
	if got := f.counter("http.ingress_http.downstream_rq_idle_timeout"); got != 4 {
		t.Errorf("downstream_rq_idle_timeout = %d, want 4", got)
	}
}

// requestBlock is an HPACK header block for a request.
func requestBlock(method, path string) []byte {
	var b bytes.Buffer
	enc := hpack.NewEncoder(&b)
	for _, hf := range [][2]string{{":method", method}, {":scheme", "http"}, {":authority", "x"}, {":path", path}} {
		enc.WriteField(hpack.HeaderField{Name: hf[0], Value: hf[1]})
	}
	return b.Bytes()
}

// TestRequestTimeout: a body that keeps trickling (so the stream is never
// idle) but does not end in time gets 408 "request timeout".
func TestRequestTimeout(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body); fmt.Fprint(w, "ok") })
	f := timeoutFixture(t, up, func(h *config.HTTPConnectionManager) {
		h.RequestTimeout = config.Duration(300 * time.Millisecond)
	})
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
	answered := make(chan struct{})
	go func() {
		for {
			select {
			case <-answered:
				return
			case <-time.After(50 * time.Millisecond):
				if _, err := io.WriteString(c, "1\r\na\r\n"); err != nil {
					return
				}
			}
		}
	}()
	br := bufio.NewReader(c)
	code, body := readStatus(t, br)
	close(answered)
	if code != 408 || body != "request timeout" {
		t.Fatalf("got %d %q, want 408 \"request timeout\"", code, body)
	}
	if got := f.counter("http.ingress_http.downstream_rq_timeout"); got != 1 {
		t.Errorf("downstream_rq_timeout = %d", got)
	}
	// A request that completes in time is served.
	resp, err := http.Post("http://"+f.addr+"/", "text/plain", strings.NewReader("quick"))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("quick request: %v %v", resp, err)
	}
	resp.Body.Close()
}

// TestMaxStreamDuration: a stream still waiting when max_stream_duration
// runs out gets 408 "downstream duration timeout".
func TestMaxStreamDuration(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	f := timeoutFixture(t, up, func(h *config.HTTPConnectionManager) {
		h.MaxStreamDuration = config.Duration(300 * time.Millisecond)
	})
	resp, err := http.Get("http://" + f.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 408 || string(b) != "downstream duration timeout" {
		t.Fatalf("got %d %q", resp.StatusCode, b)
	}
	if got := f.counter("http.ingress_http.downstream_rq_max_duration_reached"); got != 1 {
		t.Errorf("downstream_rq_max_duration_reached = %d", got)
	}
}

// TestMaxConnectionDuration: an HTTP/1 connection past
// max_connection_duration answers its request with "connection: close";
// an HTTP/2 one gets a GOAWAY.
func TestMaxConnectionDuration(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	f := timeoutFixture(t, up, func(h *config.HTTPConnectionManager) {
		h.MaxConnectionDuration = config.Duration(300 * time.Millisecond)
	})
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	// Requests until the duration passes: the last one says close.
	deadline := time.Now().Add(20 * time.Second)
	for {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			// The duration ran out while the connection was idle: closed.
			break
		}
		io.Copy(io.Discard, resp.Body)
		if resp.Close {
			expectClosed(t, c, br)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the connection outlived max_connection_duration")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := f.counter("http.ingress_http.downstream_cx_max_duration_reached"); got != 1 {
		t.Errorf("downstream_cx_max_duration_reached = %d", got)
	}

	expectGoAway(t, f.addr)
}

// TestHTTP2ContinuationFlood: a header block that runs on in empty
// CONTINUATION frames ends the connection; a header block split over a
// few CONTINUATION frames is served.
func TestHTTP2ContinuationFlood(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	f := start(t, []*config.Route{prefixRoute("/", "web")}, nil, nil, staticCluster("web", up))

	dial := func() (net.Conn, *http2.Framer) {
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, http2.ClientPreface)
		fr := http2.NewFramer(c, c)
		fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		fr.WriteSettings()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		return c, fr
	}

	c, fr := dial()
	defer c.Close()
	block := requestBlock("GET", "/")
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:1], EndStream: true})
	for i := 0; i < 10000; i++ {
		if err := fr.WriteContinuation(1, false, nil); err != nil {
			break // closed on us: the expected outcome
		}
	}
	for {
		frame, err := fr.ReadFrame()
		if err != nil {
			break // closed
		}
		if mh, ok := frame.(*http2.MetaHeadersFrame); ok {
			t.Fatalf("the flooded stream was answered: %v", mh.Fields)
		}
	}
	if got := f.counter("http.ingress_http.downstream_cx_protocol_error"); got != 1 {
		t.Errorf("downstream_cx_protocol_error = %d, want 1", got)
	}

	c2, fr2 := dial()
	defer c2.Close()
	fr2.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:2], EndStream: true})
	for i := 2; i < len(block); i += 4 {
		end := min(i+4, len(block))
		fr2.WriteContinuation(1, end == len(block), block[i:end])
	}
	for {
		frame, err := fr2.ReadFrame()
		if err != nil {
			t.Fatalf("a split header block was not answered: %v", err)
		}
		if mh, ok := frame.(*http2.MetaHeadersFrame); ok {
			if s := mh.PseudoValue("status"); s != "200" {
				t.Fatalf("status %s", s)
			}
			break
		}
	}
}

// TestRouteTimeoutAfterUpload: the route timeout counts from the end of
// the request, so an upload slower than the timeout is still served.
func TestRouteTimeoutAfterUpload(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "got %d", n)
	})
	route := prefixRoute("/", "web")
	route.Timeout = config.Duration(2 * time.Second)
	f := start(t, []*config.Route{route}, nil, nil, staticCluster("web", up))
	pr, pw := io.Pipe()
	go func() {
		// 4 × 700 ms: the upload takes longer than the route timeout.
		for i := 0; i < 4; i++ {
			pw.Write(bytes.Repeat([]byte("x"), 64<<10))
			time.Sleep(700 * time.Millisecond)
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", "http://"+f.addr+"/", pr)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != fmt.Sprintf("got %d", 4*64<<10) {
		t.Fatalf("slow upload: %d %q, want 200", resp.StatusCode, b)
	}
}

// TestIdleTimeoutLeavesRunningRequest: the read deadline of the wait for
// a request (idle_timeout), left armed after the request's head is read
// (serverConn.readStale), does not cut the request when its body comes
// after that deadline: the body's read clears it first. The deadline
// has passed once a connection that began waiting after the request's
// head was read is closed for idle_timeout.
func TestIdleTimeoutLeavesRunningRequest(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		fmt.Fprintf(w, "got %s", b)
	})
	f := timeoutFixture(t, up, func(h *config.HTTPConnectionManager) {
		h.IdleTimeout = config.Duration(100 * time.Millisecond)
		noDrain := config.Duration(0)
		h.DrainTimeout = &noDrain
	})
	for i, sent := range []string{"", "he"} { // no body byte with the head; a part of the body
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		// A first request: the wait for the second is the one with
		// idle_timeout's deadline (a first request's wait on an h2c
		// listener ends with the preface check's).
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nfirst")
		if code, body := readStatus(t, br); code != 200 || body != "got first" {
			t.Fatalf("first request: status %d, body %q", code, body)
		}
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"+sent)
		// The head was read (its stream began); the proxy waits for the
		// body before it goes upstream.
		f.waitCounter(t, "http.ingress_http.downstream_rq_total", uint64(2*i+2))
		silent, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		expectClosed(t, silent, bufio.NewReader(silent))
		silent.Close()
		io.WriteString(c, "hello"[len(sent):])
		code, body := readStatus(t, br)
		if code != 200 || body != "got hello" {
			t.Fatalf("sent %q with the head: status %d, body %q", sent, code, body)
		}
		c.Close()
	}
}
