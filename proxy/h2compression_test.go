package proxy

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"sync"
	"testing"

	"golang.org/x/net/http2"

	"github.com/wasmproxy/wasmproxy/config"
	"golang.org/x/net/http2/h2c"
)

// TestH2UpstreamLeavesEncodingAlone: a request to an HTTP/2 cluster
// carries the accept-encoding the client sent and no other, and a
// gzip-encoded answer reaches the client as the upstream sent it, as
// Envoy's codec passes both through. (x/net's Transport, left to its
// default, adds "accept-encoding: gzip" to requests without one and
// decodes the answer itself, dropping its content-encoding.)
func TestH2UpstreamLeavesEncodingAlone(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	io.WriteString(zw, "hello, compressed")
	zw.Close()
	var mu sync.Mutex
	var seen []string
	h2up := upstream(t, h2c.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Accept-Encoding"))
		mu.Unlock()
		w.Header().Set("Content-Encoding", "gzip")
		w.Write(gz.Bytes())
	}), &http2.Server{}).ServeHTTP)
	c := staticCluster("h2", h2up)
	c.HTTP2 = true
	f := start(t, []*config.Route{prefixRoute("/", "h2")}, nil, nil, c)
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	for _, tc := range []struct{ name, acceptEncoding string }{
		{"no accept-encoding", ""},
		{"client asks for gzip", "gzip"},
		{"client asks for br", "br"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", "http://"+f.addr+"/x", nil)
			if tc.acceptEncoding != "" {
				req.Header.Set("Accept-Encoding", tc.acceptEncoding)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			mu.Lock()
			got := seen[len(seen)-1]
			mu.Unlock()
			if got != tc.acceptEncoding {
				t.Errorf("upstream saw accept-encoding %q, want %q", got, tc.acceptEncoding)
			}
			if ce := resp.Header.Get("Content-Encoding"); ce != "gzip" {
				t.Errorf("client got content-encoding %q, want gzip", ce)
			}
			if !bytes.Equal(body, gz.Bytes()) {
				t.Errorf("client got %q, want the upstream's gzip bytes", body)
			}
		})
	}
}
