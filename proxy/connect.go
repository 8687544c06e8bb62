package proxy

import (
	"net/http"
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

// tunnel is a terminated CONNECT's exchange on a connection to the
// endpoint (new, or idle in the pool: either is a plain byte stream to
// the endpoint at this point): nothing is written, and the answer is
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
