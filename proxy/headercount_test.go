package proxy

import (
	"fmt"
	"io"
	"net/http"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"

	"github.com/wasmproxy/wasmproxy/config"
)

// TestH2ClusterMaxHeadersCount: an HTTP/2 cluster's response with more
// header fields than max_headers_count (Envoy's default 100 when unset)
// fails as a protocol error (503, the reset reason in the body), as
// Envoy's HTTP/2 codec resets the stream; one within it passes.
func TestH2ClusterMaxHeadersCount(t *testing.T) {
	h2up := upstream(t, h2c.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n int
		fmt.Sscan(r.URL.Query().Get("n"), &n)
		for i := 0; i < n; i++ {
			w.Header().Set(fmt.Sprintf("x-h%d", i), "v")
		}
		io.WriteString(w, "ok")
	}), &http2.Server{}).ServeHTTP)
	limited := staticCluster("limited", h2up)
	limited.HTTP2 = true
	limited.UpstreamHTTP = &config.UpstreamHTTP{MaxHeadersCount: 5}
	dflt := staticCluster("default", h2up)
	dflt.HTTP2 = true
	f := start(t, []*config.Route{prefixRoute("/limited", "limited"), prefixRoute("/", "default")}, nil, nil, limited, dflt)
	const reset = "upstream connect error or disconnect/reset before headers. reset reason: protocol error"
	for _, tc := range []struct {
		path     string
		status   int
		wantBody string
	}{
		// x/net's server adds content-type, content-length and date: 3 fields.
		{"/limited?n=2", 200, "ok"},
		{"/limited?n=3", 503, reset},
		{"/default?n=90", 200, "ok"},
		{"/default?n=98", 503, reset},
	} {
		resp, err := http.Get("http://" + f.addr + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || string(b) != tc.wantBody {
			t.Errorf("%s: %d %q, want %d %q", tc.path, resp.StatusCode, b, tc.status, tc.wantBody)
		}
	}
}
