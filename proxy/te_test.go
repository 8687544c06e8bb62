package proxy

import (
	"net/http"
	"sync"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"

	"github.com/wasmproxy/wasmproxy/config"
)

// TestTEForwarded: the te field reaches the upstream as Envoy's
// sanitizeTEHeader leaves it — "trailers" when the client listed that
// value, else not at all — over HTTP/1.1 and to an HTTP/2 cluster.
func TestTEForwarded(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	record := func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		v := r.Header.Values("Te")
		if len(v) == 0 {
			seen = append(seen, "<none>")
		} else {
			seen = append(seen, v[0])
		}
		mu.Unlock()
	}
	h1 := upstream(t, record)
	h2up := upstream(t, h2c.NewHandler(http.HandlerFunc(record), &http2.Server{}).ServeHTTP)
	c2 := staticCluster("h2", h2up)
	c2.HTTP2 = true
	f := start(t, []*config.Route{prefixRoute("/h2", "h2"), prefixRoute("/", "h1")}, nil, nil, staticCluster("h1", h1), c2)
	for _, path := range []string{"/h1", "/h2"} {
		for _, tc := range []struct{ te, want string }{
			{"trailers", "trailers"},
			{"trailers, deflate;q=0.5", "trailers"},
			{"gzip,  trailers ", "trailers"},
			{"deflate", "<none>"},
			{"Trailers", "<none>"}, // Envoy compares the value as it is
			{"", "<none>"},
		} {
			req := "GET " + path + " HTTP/1.1\r\nHost: x\r\n"
			if tc.te != "" {
				req += "TE: " + tc.te + "\r\n"
			}
			if got := rawExchange(t, f.addr, req+"\r\n"); got != "HTTP/1.1 200 OK" {
				t.Fatalf("%s te %q: %s", path, tc.te, got)
			}
			mu.Lock()
			got := seen[len(seen)-1]
			mu.Unlock()
			if got != tc.want {
				t.Errorf("%s: client te %q: upstream saw %q, want %q", path, tc.te, got, tc.want)
			}
		}
	}
}
