package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"

	"github.com/wasmproxy/wasmproxy/config"
)

// CONNECT (upgrade_configs' CONNECT type). Proxied, the request goes
// upstream as a CONNECT in authority form and a 2xx hands the
// connection over as a 101 does to an upgrade; terminated (the route's
// connect_config), the pool connects to the endpoint and answers 200
// itself. Either way the server splices the two connections
// (serverConn.splice, upgrade.go).

// connectTarget makes a proxied CONNECT's request line name the
// authority (host:port), not a path.
func connectTarget(req *http.Request) {
	req.URL.Opaque = req.Host
}

// tunnel is a terminated CONNECT's exchange on a new connection to
// the endpoint: nothing is written, and the answer is
// Envoy's synthesized "200" with no other field, the connection handed
// over to the splice as on a 101.
func (c *h1Conn) tunnel(req *http.Request, u *upgrade) *http.Response {
	x := &h1Exchange{}
	resp := &x.resp
	*resp = http.Response{
		Status:        "200",
		StatusCode:    http.StatusOK,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		ContentLength: -1,
		Request:       req,
	}
	x.headers.Add(":status", "200")
	x.body = respBody{c: c, resp: resp, headers: &x.headers, done: true}
	resp.Body = &x.body
	c.stop = noStop
	c.gotBytes = true
	u.conn = c
	return resp
}

// serveConnectH2 serves an HTTP/2 CONNECT (RFC 9113 §8.5: :method
// CONNECT and :authority, no :path or :scheme) as the HTTP/1 server
// serves its CONNECT: the stream (with the route's and the connection
// manager's upgrade_configs deciding, and no request body: the
// stream's DATA is the tunnel's) and, when the upstream handed its
// connection over with a 2xx, the splice, the response's HEADERS sent
// without END_STREAM and the tunnel's bytes as DATA both ways.
func (cm *connManager) serveConnectH2(w http.ResponseWriter, r *http.Request) {
	u := &upgrade{typ: config.UpgradeConnect, connect: true}
	defer u.end() // after the splice
	ctx := context.WithValue(r.Context(), upgradeKey{}, u)
	dr := netHTTPRequest(r)
	dr.Body, dr.ContentLength = nil, 0
	h := requestHeaderMap(r)
	h.Set(":path", "") // net/http's RequestURI is the authority; as HTTP/1's CONNECT
	sw := &statusWriter{ResponseWriter: w}
	cm.serve(sw, dr, ctx, nil, h)
	c := u.conn
	if c == nil {
		return
	}
	defer func() {
		c.pool.endRequest()
		c.destroy(nil)
	}()
	if !u.switched(sw.status) {
		return
	}
	rc := http.NewResponseController(w)
	if rc.Flush() != nil {
		return
	}
	pipe(c, func(b []byte) error {
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}, func(dst io.Writer) {
		_, _ = io.Copy(dst, r.Body)
	}, func() { _ = r.Body.Close() })
}

// statusWriter is an HTTP/2 response writer that remembers the status
// the stream wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// h2Tunnels is an HTTP/2 cluster's transport: its requests go to the
// HTTP/2 transport, except a terminated CONNECT's, whose connection
// comes from an HTTP/1.1 pool of its own (made on first use, closed
// with the cluster): as Envoy opens a terminated CONNECT's connection
// from its TCP pool, whatever HTTP protocol the cluster speaks.
type h2Tunnels struct {
	http.RoundTripper // the HTTP/2 transport
	dial              func(ctx context.Context, addr string) (net.Conn, net.Conn, error)
	st                poolStats

	mu     sync.Mutex
	pool   *h1Pool
	closed bool
}

func (t *h2Tunnels) RoundTrip(req *http.Request) (*http.Response, error) {
	if u := upstreamUpgradeOf(req.Context()); u != nil && u.terminate {
		t.mu.Lock()
		if t.pool == nil && !t.closed {
			t.pool = newH1Pool(t.dial, t.st)
		}
		p := t.pool
		t.mu.Unlock()
		if p == nil {
			closeBody(req)
			return nil, errPoolClosed
		}
		return p.RoundTrip(req)
	}
	return t.RoundTripper.RoundTrip(req)
}

func (t *h2Tunnels) CloseIdleConnections() {
	if c, ok := t.RoundTripper.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// close ends the tunnel pool with the cluster (tunnels already handed
// over run on).
func (t *h2Tunnels) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	if t.pool != nil {
		t.pool.close()
	}
}
