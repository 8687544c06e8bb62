package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/internal/testnet"
)

// TestProperCaseFields: Envoy's proper-case formatter, field by field;
// the first line and the values are left alone.
func TestProperCaseFields(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"},
		{"HTTP/1.1 200 OK\r\nx-envoy-upstream-service-time: 3\r\n\r\n", "HTTP/1.1 200 OK\r\nX-Envoy-Upstream-Service-Time: 3\r\n\r\n"},
		// A digit does not start a word; other characters do.
		{"HTTP/1.1 200 OK\r\nx-2b_c.d+e: a-b:c\r\n\r\n", "HTTP/1.1 200 OK\r\nX-2b_C.D+E: a-b:c\r\n\r\n"},
		{"HTTP/1.1 200 OK\r\nALREADY-Up: v\r\n\r\n", "HTTP/1.1 200 OK\r\nALREADY-Up: v\r\n\r\n"},
		// A chunked body's end: the size line, then trailers.
		{"0\r\ngrpc-status: 0\r\n\r\n", "0\r\nGrpc-Status: 0\r\n\r\n"},
		{"HTTP/1.1 204 No Content\r\n\r\n", "HTTP/1.1 204 No Content\r\n\r\n"},
	} {
		b := []byte(tc.in)
		properCaseFields(b)
		if string(b) != tc.want {
			t.Errorf("%q: got %q, want %q", tc.in, b, tc.want)
		}
	}
}

// TestHeaderKeyFormatProperCase: with header_key_format
// proper_case_words, the HTTP/1.1 response's field names on the wire are
// Proper-Case, the upstream's and the proxy's own, trailers included;
// without it they stay lower case.
func TestHeaderKeyFormatProperCase(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Custom-Thing", "v")
		w.Header().Set("Trailer", "x-checksum")
		w.WriteHeader(200)
		_, _ = io.WriteString(w, "body")
		http.NewResponseController(w).Flush()
		w.Header().Set("X-Checksum", "42")
	})
	for _, proper := range []bool{true, false} {
		f := startWith(t, []*config.Route{prefixRoute("/", "up")}, nil, loader{}, func(l *config.Listener) {
			l.FilterChains[0].HTTP.ProperCaseHeaderKeys = proper
		}, staticCluster("up", up))
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		raw, err := io.ReadAll(bufio.NewReader(c))
		_ = c.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"X-Custom-Thing", "Transfer-Encoding", "Date", "Server", "Connection", "X-Checksum"} {
			want := name
			if !proper {
				want = strings.ToLower(name)
			}
			if !strings.Contains(string(raw), "\r\n"+want+": ") {
				t.Errorf("proper_case_words %v: no %q field in\n%s", proper, want, raw)
			}
		}
	}
}

// TestUpstreamHeaderKeyCase: the request head the pool writes to an
// HTTP/1.1 upstream has its field names in lower case, host and
// framing included, as Envoy's codec writes them; with the cluster's
// header_key_format proper_case_words they are Proper-Case.
func TestUpstreamHeaderKeyCase(t *testing.T) {
	heads := make(chan string, 4)
	up := testnet.Serve(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		var head strings.Builder
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			head.WriteString(line)
			if line == "\r\n" {
				break
			}
		}
		body := make([]byte, 2)
		if _, err := io.ReadFull(br, body); err != nil {
			return
		}
		heads <- head.String()
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
	})
	names := []string{"Host", "X-Custom-Thing", "User-Agent", "Content-Length", "X-Forwarded-Proto", "X-Request-Id"}
	for _, proper := range []bool{false, true} {
		cl := staticCluster("up", up)
		cl.ProperCaseHeaderKeys = proper
		f := startWith(t, []*config.Route{prefixRoute("/", "up")}, nil, loader{}, nil, cl)
		status, _, _ := rawRequest(t, f.addr, "POST / HTTP/1.1\r\nHost: x\r\nX-CUSTOM-thing: v\r\nUser-Agent: t\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
		if status != 200 {
			t.Fatalf("proper_case_words %v: status %d", proper, status)
		}
		var head string
		select {
		case head = <-heads:
		case <-time.After(30 * time.Second):
			t.Fatal("the upstream got no request")
		}
		for _, name := range names {
			want := name
			if !proper {
				want = strings.ToLower(name)
			}
			if !strings.Contains(head, "\r\n"+want+": ") {
				t.Errorf("proper_case_words %v: no %q field in\n%s", proper, want, head)
			}
		}
		if !proper && strings.ContainsAny(strings.SplitN(head, "\r\n", 2)[1], "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
			t.Errorf("an upper-case letter in the lower-case head:\n%s", head)
		}
	}
}
