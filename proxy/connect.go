package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
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

// connectProxyHeader is the PROXY protocol header a terminated CONNECT
// (or allow_post POST) routed to route writes first on its connection,
// nil for none: with connect_config.proxy_protocol_config, the
// downstream connection's addresses (info's) in the configured version,
// as Envoy's TCP upstream writes it when it sends the request's headers.
func connectProxyHeader(u *upgrade, route *config.Route, info *filter.StreamInfo) []byte {
	if !u.terminate || route.ConnectConfig.ProxyProtocolVersion == 0 {
		return nil
	}
	return proxyHeader(route.ConnectConfig.ProxyProtocolVersion, info.DownstreamAddr, info.LocalAddr) // proxyproto.go
}

// tunnel is a terminated CONNECT's exchange on a new connection to
// the endpoint: nothing is written but the PROXY protocol header, if
// the route asks for one, and the answer is Envoy's synthesized "200"
// with no other field, the connection handed over to the splice as on
// a 101. A header that cannot be written leaves a broken connection,
// which ends the tunnel as soon as it is spliced, as Envoy's does.
func (c *h1Conn) tunnel(req *http.Request, u *upgrade) *http.Response {
	if len(u.proxyHeader) > 0 {
		_, _ = c.conn.Write(u.proxyHeader)
	}
	if u.post {
		return c.postTunnel(req)
	}
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

// postTunnel is the upstream upgrade of a POST on a route whose
// connect_config has allow_post, nil for another method: Envoy's router
// takes its TCP pool for it, as for a terminated CONNECT (its
// createConnPool), so the POST is terminated.
func postTunnel(h *filter.HeaderMap) *upgrade {
	if m, _ := h.Get(":method"); m != http.MethodPost {
		return nil
	}
	return &upgrade{typ: config.UpgradeConnect, connect: true, post: true}
}

// postTunnel reports whether the stream's request went upstream as a
// terminated POST (allow_post). Its body, even a small one of known
// length, is then read as it comes, not on the stream goroutine: a
// tunnelling client may send the rest only once it has the 200, which
// the stream goroutine must be free to write.
func (s *stream) postTunnel() bool {
	if s.up == nil {
		return false
	}
	u := upstreamUpgradeOf(s.up.ctx)
	return u != nil && u.post
}

// postTunnel is a terminated POST's exchange on a new connection to the
// endpoint: the answer is the synthesized 200 with the connection's
// bytes as its body (ended when the endpoint closes), and the request's
// body is copied to the connection as it comes, its end a half-close
// (Envoy's TCP upstream writes the end of stream so), its failure a
// close. The connection
// stays out of the pool; it is destroyed when the response body is
// closed.
func (c *h1Conn) postTunnel(req *http.Request) *http.Response {
	c.stop = noStop
	c.gotBytes = true
	_ = c.conn.SetDeadline(time.Time{})
	body := &postTunnelBody{c: c}
	if req.Body != nil && req.Body != http.NoBody {
		body.reqBody = req.Body
		body.copied = make(chan struct{})
		go func() {
			defer close(body.copied)
			if _, err := io.Copy(c.conn, req.Body); err == nil {
				halfClose(c.conn)
			} else {
				// The request ended without its end (the client went
				// away, the stream was reset): the connection goes with
				// it, as Envoy resets its TCP upstream, which also ends
				// a read of the response waiting on a silent endpoint.
				_ = c.conn.Close()
			}
		}()
	} else {
		halfClose(c.conn)
	}
	return &http.Response{
		Status:        "200",
		StatusCode:    http.StatusOK,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{},
		ContentLength: -1,
		Body:          body,
		Request:       req,
	}
}

// postTunnelBody is a terminated POST's response body: the bytes of its
// connection (those its reader buffered first).
type postTunnelBody struct {
	c       *h1Conn
	reqBody io.Closer     // the request body being copied, if any
	copied  chan struct{} // closed when the request body's copy ended
	once    sync.Once
}

func (b *postTunnelBody) Read(p []byte) (int, error) { return b.c.br.Read(p) }

// postTunnelFlush bounds how long a terminated POST's connection, as it
// is closed, waits for the kernel to take the body bytes the client sent
// before it: an endpoint that stops reading cannot hold the close up.
const postTunnelFlush = time.Second

func (b *postTunnelBody) Close() error {
	b.once.Do(func() {
		if b.copied != nil {
			// The request body's close ends the copy once the bytes
			// already received are written (drainOnClose); the write
			// deadline ends it on an endpoint that does not read. The
			// copy closes the connection as it ends.
			_ = b.c.conn.SetWriteDeadline(time.Now().Add(postTunnelFlush))
			_ = b.reqBody.Close()
			<-b.copied
		}
		b.c.destroy(nil)
		b.c.pool.endRequest()
	})
	return nil
}

// halfClose half-closes a pool's connection (closeWrite, under the
// stats wrapper); one that cannot stays open until the endpoint closes.
func halfClose(c net.Conn) {
	if cc, ok := c.(*countedConn); ok {
		c = cc.Conn
	}
	if _, ok := c.(interface{ CloseWrite() error }); ok {
		_ = closeWrite(c)
	}
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
	dr := netHTTPRequest(r)
	h := requestHeaderMap(r)
	h.Set(":path", "") // net/http's RequestURI is the authority; as HTTP/1's CONNECT
	cm.serveTunnelH2(w, r, u, dr, h)
}

// serveTunnelH2 runs an HTTP/2 stream that asks for a tunnel (a
// CONNECT, or an extended CONNECT seen as its HTTP/1.1 upgrade) with
// no request body, since the stream's DATA is the tunnel's, and
// splices it to the tunnel the upstream handed over, if it switched.
func (cm *connManager) serveTunnelH2(w http.ResponseWriter, r *http.Request, u *upgrade, dr downstreamRequest, h *filter.HeaderMap) {
	defer u.end() // after the splice
	ctx := context.WithValue(r.Context(), upgradeKey{}, u)
	dr.Body, dr.ContentLength = nil, 0
	sw := &statusWriter{ResponseWriter: w}
	cm.serve(sw, dr, ctx, nil, h)
	if !u.tunnelled() {
		return
	}
	defer u.release()
	if !u.switched(sw.status) {
		return
	}
	rc := http.NewResponseController(w)
	if rc.Flush() != nil {
		return
	}
	expired := pipe(u.tunnel(), u.limits, func(b []byte) error {
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}, func(dst io.Writer) {
		_, _ = io.Copy(dst, r.Body)
	}, func() { _ = r.Body.Close() })
	if expired {
		// A timeout resets the stream, as Envoy's; the deferred
		// release and end run as the handler unwinds.
		panic(http.ErrAbortHandler)
	}
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
	if status == http.StatusSwitchingProtocols {
		// An extended CONNECT's upgrade accepted (xconnect.go): HTTP/2
		// has no 101, its switch is a 200 without the HTTP/1.1
		// switch's fields, and without a length (a 101 has no body;
		// the tunnel follows), as Envoy's codec turns it
		// (transformUpgradeResponseFromH1toH2).
		hdr := w.ResponseWriter.Header()
		delete(hdr, "Upgrade")
		delete(hdr, "Connection")
		delete(hdr, "Content-Length")
		status = http.StatusOK
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
	// maxHeaders is the cluster's max_headers_count (0: none), which
	// the HTTP/2 transport does not enforce (limitResponseHeaders).
	maxHeaders int

	mu     sync.Mutex
	pool   *h1Pool
	closed bool
}

func (t *h2Tunnels) RoundTrip(req *http.Request) (*http.Response, error) {
	u := upstreamUpgradeOf(req.Context())
	if u != nil && !u.terminate {
		return t.roundTripTunnel(req, u)
	}
	if u != nil {
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
	resp, err := t.RoundTripper.RoundTrip(req)
	return limitResponseHeaders(resp, err, t.maxHeaders)
}

// roundTripTunnel sends an upgrade upstream on an HTTP/2 stream, as
// Envoy's HTTP/2 codec does (transformUpgradeRequestFromH1toH2): a
// CONNECT as a CONNECT stream (:authority, no :path), another upgrade
// (websocket) as an RFC 8441 extended CONNECT whose :protocol is the
// Upgrade value, the endpoint having to offer
// SETTINGS_ENABLE_CONNECT_PROTOCOL (else the transport fails the
// request and the stream answers 503). The request's body is a pipe,
// the tunnel's way up, and on the switch (a 2xx to a CONNECT; exactly
// 200 to an extended CONNECT, which the stream then sees as the 101
// its client expects, Envoy's transformUpgradeResponseFromH2toH1) the
// response body is its way down: both are handed over in u.h2 and
// the stream gets the answer without a body. The stream lives on a
// context of its own, cut from the attempt's deadline once switched
// (the route's timeout does not bound a tunnel, as on HTTP/1.1).
func (t *h2Tunnels) roundTripTunnel(req *http.Request, u *upgrade) (*http.Response, error) {
	closeBody(req) // a request whose stream's DATA is the tunnel's has no body
	ctx, cancel := context.WithCancel(context.WithoutCancel(req.Context()))
	stop := context.AfterFunc(req.Context(), cancel)
	pr, pw := io.Pipe()
	r := req.WithContext(ctx)
	r.Body, r.ContentLength, r.GetBody = pr, -1, nil
	if !u.connect {
		r.Method = http.MethodConnect
		r.Header = r.Header.Clone()
		r.Header[":protocol"] = []string{u.value}
	}
	tn := &h2Tunnel{pw: pw, cancel: func() { stop(); cancel() }}
	resp, err := t.RoundTripper.RoundTrip(r)
	if err != nil {
		tn.close()
		return nil, err
	}
	tn.body = resp.Body
	ok := resp.StatusCode == http.StatusOK || u.connect && resp.StatusCode >= 200 && resp.StatusCode < 300
	if !ok {
		// An ordinary answer, its body read as any: no tunnel, the
		// request's end sent now.
		_ = pw.Close()
		resp.Body = tn
		return resp, nil
	}
	if !stop() {
		// The request ended (reset, timeout) as the answer came.
		tn.close()
		return nil, req.Context().Err()
	}
	u.h2 = tn
	sw := *resp
	sw.Body, sw.ContentLength = http.NoBody, -1
	if !u.connect {
		sw.StatusCode, sw.Status = http.StatusSwitchingProtocols, "101 Switching Protocols"
	}
	return &sw, nil
}

// h2Tunnel is a tunnel on an upstream HTTP/2 stream: the request's body
// pipe carries the client's bytes as DATA, the response body the
// upstream's. As a response body (an answer that is no switch) it
// closes the same way.
type h2Tunnel struct {
	body   io.ReadCloser
	pw     *io.PipeWriter
	cancel func()
	once   sync.Once
}

func (t *h2Tunnel) Read(b []byte) (int, error)  { return t.body.Read(b) }
func (t *h2Tunnel) Write(b []byte) (int, error) { return t.pw.Write(b) }
func (t *h2Tunnel) Close() error                { t.close(); return nil }

// close ends the stream: END_STREAM for the request if not yet sent,
// and a reset unless the upstream had ended its side.
func (t *h2Tunnel) close() {
	t.once.Do(func() {
		_ = t.pw.Close()
		if t.body != nil {
			_ = t.body.Close()
		}
		t.cancel()
	})
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
