package proxy

import (
	"net/http"

	"github.com/wasmproxy/wasmproxy/internal/http1"
)

// limitResponseHeaders fails an HTTP/2 upstream response carrying more
// header fields than max (a cluster's max_headers_count; 0: none) as a
// protocol error, as Envoy's HTTP/2 codec resets such a stream: x/net's
// client bounds a header block by its size only. The HTTP/1.1 pool's
// codec enforces the same limit itself (h1Pool.lim.MaxHeaders).
func limitResponseHeaders(resp *http.Response, err error, max int) (*http.Response, error) {
	if err != nil || max <= 0 {
		return resp, err
	}
	n := 0
	for _, vs := range resp.Header {
		n += len(vs)
	}
	if n <= max {
		return resp, nil
	}
	_ = resp.Body.Close()
	return nil, &http1.Error{Status: http.StatusBadGateway, Details: "http2.too_many_headers", Reason: "too many response header fields"}
}
