package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"golang.org/x/net/http2/hpack"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/internal/testnet"
)

// requestLineUpstream is an HTTP/1.1 upstream that records the request
// line of every request exactly as it arrived on the wire.
type requestLineUpstream struct {
	addr  string
	mu    sync.Mutex
	lines []string
}

func newRequestLineUpstream(t *testing.T) *requestLineUpstream {
	t.Helper()
	u := &requestLineUpstream{}
	u.addr = testnet.Serve(t, u.serve)
	return u
}

func (u *requestLineUpstream) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		u.mu.Lock()
		u.lines = append(u.lines, strings.TrimRight(line, "\r\n"))
		u.mu.Unlock()
		// Skip the headers (the proxy sends no body on these requests).
		for {
			h, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if h == "\r\n" {
				break
			}
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	}
}

func (u *requestLineUpstream) last() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.lines) == 0 {
		return ""
	}
	return u.lines[len(u.lines)-1]
}

// TestUpstreamPathOriginForm: whatever path the client sends reaches the
// upstream in origin form, byte for byte: a path starting with "//" must
// not turn into an absolute-form request line naming a host the client
// chose (which would let it pick the upstream's virtual host, or reach
// any host through a forward proxy).
func TestUpstreamPathOriginForm(t *testing.T) {
	h1 := newRequestLineUpstream(t)
	var h2mu sync.Mutex
	var h2paths []string
	h2up := upstream(t, h2c.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h2mu.Lock()
		h2paths = append(h2paths, r.Method+" "+r.RequestURI+" "+r.Host)
		h2mu.Unlock()
		fmt.Fprint(w, "ok")
	}), &http2.Server{}).ServeHTTP)
	h2cluster := staticCluster("h2", h2up)
	h2cluster.HTTP2 = true
	routes := []*config.Route{
		{Match: config.RouteMatch{Prefix: "/admin", CaseSensitive: true}, DirectResponse: &config.DirectResponse{Status: 403, Body: []byte("blocked")}},
		{Match: config.RouteMatch{Prefix: "//h2", CaseSensitive: true}, Cluster: "h2", Timeout: config.Duration(10 * time.Second)},
		prefixRoute("/", "h1"),
	}
	f := start(t, routes, nil, nil, staticCluster("h1", h1.addr), h2cluster)
	tests := []struct {
		path string
		want string
	}{
		{"//internal.example/admin", "GET //internal.example/admin HTTP/1.1"},
		{"//good/admin?x=1", "GET //good/admin?x=1 HTTP/1.1"},
		{"//a%2Fb//c?q=%20&r", "GET //a%2Fb//c?q=%20&r HTTP/1.1"},
		{"///triple", "GET ///triple HTTP/1.1"},
		{"//x?", "GET //x? HTTP/1.1"},
		{"/plain/p%41th?a=b", "GET /plain/p%41th?a=b HTTP/1.1"},
	}
	for _, tc := range tests {
		got := rawExchange(t, f.addr, "GET "+tc.path+" HTTP/1.1\r\nHost: front.example\r\n\r\n")
		if got != "HTTP/1.1 200 OK" {
			t.Fatalf("%s: got %q", tc.path, got)
		}
		if line := h1.last(); line != tc.want {
			t.Errorf("upstream saw %q, want %q", line, tc.want)
		}
	}
	for _, path := range []string{"//h2/admin", "//h2x/a%2Fb?q=1"} {
		if got := rawExchange(t, f.addr, "GET "+path+" HTTP/1.1\r\nHost: front.example\r\n\r\n"); got != "HTTP/1.1 200 OK" {
			t.Fatalf("%s over h2: got %q", path, got)
		}
		h2mu.Lock()
		seen := h2paths[len(h2paths)-1]
		h2mu.Unlock()
		if want := "GET " + path + " front.example"; seen != want {
			t.Errorf("h2 upstream saw %q, want %q", seen, want)
		}
	}
}

// TestUndeclaredRequestTrailers: a chunked request whose trailers were
// not announced in a Trailer header is proxied, trailers included.
func TestUndeclaredRequestTrailers(t *testing.T) {
	type seen struct {
		body    string
		trailer string
	}
	got := make(chan seen, 4)
	handler := func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{string(b), r.Trailer.Get("X-Sum")}
		fmt.Fprint(w, "ok")
	}
	h1 := upstream(t, handler)
	// Go's HTTP/2 server keeps only trailers announced in the headers,
	// which HTTP/2 does not require: this upstream reads the frames.
	h2up := rawH2Upstream(t, func(body string, trailers map[string]string) {
		got <- seen{body, trailers["x-sum"]}
	})
	h2cluster := staticCluster("h2", h2up)
	h2cluster.HTTP2 = true
	routes := []*config.Route{prefixRoute("/h2", "h2"), prefixRoute("/", "h1")}
	f := start(t, routes, nil, nil, staticCluster("h1", h1), h2cluster)
	for _, path := range []string{"/h1", "/h2"} {
		req := "POST " + path + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n"
		if status := rawExchange(t, f.addr, req); status != "HTTP/1.1 200 OK" {
			t.Fatalf("%s: got %q, want 200", path, status)
		}
		select {
		case s := <-got:
			if s.body != "hello world" || s.trailer != "42" {
				t.Errorf("%s: upstream got body %q trailer %q, want \"hello world\" and \"42\"", path, s.body, s.trailer)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: upstream never got the request", path)
		}
	}
}

// rawH2Upstream is an h2c (prior knowledge) upstream that reports each
// request's body and the fields of a trailing HEADERS frame, and answers
// 200 "ok".
func rawH2Upstream(t *testing.T, report func(body string, trailers map[string]string)) string {
	t.Helper()
	return testnet.Serve(t, func(c net.Conn) { serveRawH2(c, report) })
}

func serveRawH2(c net.Conn, report func(string, map[string]string)) {
	defer c.Close()
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(c, preface); err != nil {
		return
	}
	fr := http2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fr.WriteSettings(); err != nil {
		return
	}
	bodies := map[uint32]*strings.Builder{}
	headersSeen := map[uint32]bool{}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		id := f.Header().StreamID
		end := false
		trailers := map[string]string{}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			if headersSeen[id] {
				for _, hf := range f.RegularFields() {
					trailers[hf.Name] = hf.Value
				}
			}
			headersSeen[id] = true
			bodies[id] = bodiesFor(bodies, id)
			end = f.StreamEnded()
		case *http2.DataFrame:
			bodiesFor(bodies, id).Write(f.Data())
			if len(f.Data()) > 0 {
				fr.WriteWindowUpdate(0, uint32(len(f.Data())))
				fr.WriteWindowUpdate(id, uint32(len(f.Data())))
			}
			end = f.StreamEnded()
		}
		if end {
			report(bodies[id].String(), trailers)
			hb.Reset()
			enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndHeaders: true})
			fr.WriteData(id, true, []byte("ok"))
		}
	}
}

func bodiesFor(m map[uint32]*strings.Builder, id uint32) *strings.Builder {
	if m[id] == nil {
		m[id] = &strings.Builder{}
	}
	return m[id]
}
