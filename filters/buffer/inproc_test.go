package buffer_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/filters/internal/inproc"
)

// onlyReader hides a reader's length, so the client sends the body
// chunked, without content-length.
type onlyReader struct{ io.Reader }

// TestInProcess runs the filter in the library proxy with real clients:
// a chunked body over the listener's default 1 MiB buffer limit is held
// whole (max_request_bytes raises the limit) and goes upstream with the
// content-length Envoy adds; a route's smaller override answers 413 past
// it; a route that disables the filter streams the body as it came.
func TestInProcess(t *testing.T) {
	up := inproc.Upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "len=%d cl=%q te=%v", len(b), r.Header.Get("Content-Length"), r.TransferEncoding)
	}))
	p := inproc.Start(t, inproc.Config(`
              routes:
              - match: {prefix: /small}
                route: {cluster: upstream}
                typed_per_filter_config:
                  envoy.filters.http.buffer:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute
                    buffer: {max_request_bytes: 10}
              - match: {prefix: /off}
                route: {cluster: upstream}
                typed_per_filter_config:
                  envoy.filters.http.buffer:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute
                    disabled: true
              - match: {prefix: /}
                route: {cluster: upstream}`, `
          - name: envoy.filters.http.buffer
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer
              max_request_bytes: 2097152`, inproc.Cluster("upstream", up)))
	base := "http://" + p.Addr("main")
	client := &http.Client{Timeout: 60 * time.Second}
	big := strings.Repeat("x", 1536*1024)
	for _, c := range []struct {
		path   string
		body   io.Reader
		status int
		want   string
	}{
		{"/", onlyReader{strings.NewReader(big)}, 200, `len=1572864 cl="1572864" te=[]`},
		{"/small", strings.NewReader("0123456789"), 200, `len=10 cl="10" te=[]`},
		{"/small", onlyReader{strings.NewReader("0123456789A")}, 413, "Payload Too Large"},
		{"/off", onlyReader{strings.NewReader(big)}, 200, `len=1572864 cl="" te=[chunked]`},
	} {
		resp, err := client.Post(base+c.path, "text/plain", c.body)
		if err != nil {
			t.Fatalf("%s: %v", c.path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status || string(b) != c.want {
			t.Errorf("POST %s: %d %q, want %d %q", c.path, resp.StatusCode, b, c.status, c.want)
		}
	}
}
