package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
)

// rawExchange writes raw bytes on a fresh connection and returns the
// status line of the answer ("" if the connection closed without one).
func rawExchange(t *testing.T, addr, request string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line)
}

// TestHTTPAbuse: malformed or hostile requests get the standard answer
// and never reach a filter half-parsed; the proxy keeps serving.
func TestHTTPAbuse(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, "ok")
	})
	h := &hooks{}
	f := start(t, []*config.Route{prefixRoute("/", "web")}, []string{"f"}, loader{"f": h}, staticCluster("web", up))
	var manyHeaders strings.Builder
	for i := 0; i < 101; i++ {
		fmt.Fprintf(&manyHeaders, "X-H%d: v\r\n", i)
	}
	tests := []struct {
		name    string
		request string
		want    string
	}{
		// (net/http with h2c enabled waits for 14 bytes before it tells
		// HTTP/1 from the HTTP/2 preface; real request lines are longer.)
		{"malformed request line", "GARBAGE REQUEST LINE WITHOUT VERSION\r\n\r\n", "HTTP/1.1 400 Bad Request"},
		{"oversized headers", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 70<<10) + "\r\n\r\n", "HTTP/1.1 431 Request Header Fields Too Large"},
		{"too many headers", "GET / HTTP/1.1\r\nHost: x\r\n" + manyHeaders.String() + "\r\n", "HTTP/1.1 431 Request Header Fields Too Large"},
		{"invalid chunked encoding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\nhello\r\n0\r\n\r\n", "HTTP/1.1 400 Bad Request"},
		{"still serving", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200 OK"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := rawExchange(t, f.addr, tc.request); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	for _, e := range h.events() {
		if e == "decodeData(3,false)" || strings.HasPrefix(e, "decodeData") {
			t.Errorf("a filter saw the body of a malformed request: %v", h.events())
			break
		}
	}
}

// TestRequestHeadersTimeout: a client that starts its headers and stalls
// gets 408, as with Envoy's request_headers_timeout.
func TestRequestHeadersTimeout(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	f := startWith(t, []*config.Route{prefixRoute("/", "web")}, nil, nil, func(l *config.Listener) {
		l.FilterChains[0].HTTP.RequestHeadersTimeout = config.Duration(200 * time.Millisecond)
	}, staticCluster("web", up))
	if got := rawExchange(t, f.addr, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "); got != "HTTP/1.1 408 Request Timeout" {
		t.Fatalf("slow headers: got %q, want 408", got)
	}
	// Requests that complete their headers in time are served, also on a
	// kept-alive connection after an idle pause longer than the timeout.
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i := 0; i < 2; i++ {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("request %d: %v %v", i, resp, err)
		}
		io.Copy(io.Discard, resp.Body)
		time.Sleep(300 * time.Millisecond)
	}
	if got := f.st.Counter("http.ingress_http.downstream_rq_header_timeout").Value(); got != 1 {
		t.Errorf("downstream_rq_header_timeout = %d, want 1", got)
	}
}

// TestPseudoHeadersBrokenByFilter: a filter that removes or corrupts
// pseudo-headers makes the proxy answer, never crash or forward garbage.
func TestPseudoHeadersBrokenByFilter(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	tests := []struct {
		name       string
		decode     func(h *filter.HeaderMap)
		encode     func(h *filter.HeaderMap)
		wantStatus int
	}{
		{"remove :path", func(h *filter.HeaderMap) { h.Del(":path") }, nil, 503},
		{"remove :method", func(h *filter.HeaderMap) { h.Del(":method") }, nil, 503},
		{"bad :method", func(h *filter.HeaderMap) { h.Set(":method", "GE T") }, nil, 503},
		{"path without slash", func(h *filter.HeaderMap) { h.Set(":path", "evil") }, nil, 503},
		{"header injection", func(h *filter.HeaderMap) { h.Set("x-a", "1\r\nx-b: 2") }, nil, 503},
		{"remove :authority", func(h *filter.HeaderMap) { h.Del(":authority") }, nil, 503},
		{"remove :status", nil, func(h *filter.HeaderMap) { h.Del(":status") }, 502},
		{"garbage :status", nil, func(h *filter.HeaderMap) { h.Set(":status", "abc") }, 502},
		{"fine", func(h *filter.HeaderMap) { h.Set("x-ok", "1") }, nil, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &hooks{
				decodeHeaders: func(cb filter.Callbacks, h *filter.HeaderMap, end bool) filter.HeadersStatus {
					if tc.decode != nil {
						tc.decode(h)
					}
					return filter.HeadersContinue
				},
				encodeHeaders: func(cb filter.Callbacks, h *filter.HeaderMap, end bool) filter.HeadersStatus {
					if tc.encode != nil {
						tc.encode(h)
					}
					return filter.HeadersContinue
				},
			}
			f := start(t, []*config.Route{prefixRoute("/", "web")}, []string{"f"}, loader{"f": h}, staticCluster("web", up))
			resp, _ := do(t, mustReq("GET", "http://"+f.addr+"/", nil))
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("got %d, want %d", resp.StatusCode, tc.wantStatus)
			}
		})
	}
}

// TestHTTP2RapidReset: a client opening and resetting streams as fast as
// it can (CVE-2023-44487) does not take the proxy down, a normal client
// is served afterwards, and goroutines return to their baseline.
func TestHTTP2RapidReset(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(50 * time.Millisecond):
		}
		fmt.Fprint(w, "ok")
	})
	f := start(t, []*config.Route{prefixRoute("/", "web")}, nil, nil, staticCluster("web", up))
	baseline := runtime.NumGoroutine()

	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	var hb strings.Builder
	enc := hpack.NewEncoder(&hb)
	for _, hf := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/"}} {
		enc.WriteField(hpack.HeaderField{Name: hf[0], Value: hf[1]})
	}
	block := []byte(hb.String())
	for id := uint32(1); id < 2*5000; id += 2 {
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true}); err != nil {
			break // the server may GOAWAY us: that is a fine answer
		}
		if err := fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
			break
		}
	}
	c.Close()

	client := &http.Client{Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
	resp, err := client.Get("http://" + f.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("after rapid reset: %d", resp.StatusCode)
	}
	client.CloseIdleConnections()
	// The streams that got through before their reset left pooled
	// upstream connections (at most the HTTP/2 concurrent-stream limit);
	// once those are closed, nothing else may be left behind.
	waitGoroutines(t, baseline+5, func() {
		for _, c := range f.srv.currentClusters() {
			c.closeIdle()
		}
	})
}

// waitGoroutines waits (bounded) for the goroutine count to fall to max.
// each runs before every check.
func waitGoroutines(t *testing.T, max int, each func()) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for each(); runtime.NumGoroutine() > max; each() {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("goroutines: %d, want <= %d\n%s", runtime.NumGoroutine(), max, buf[:n])
		}
		time.Sleep(50 * time.Millisecond)
	}
}
