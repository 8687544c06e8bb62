package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"time"
)

// autoHTTP is the transport of a cluster with HttpProtocolOptions
// auto_config: as Envoy's mixed connection pool, each new connection to
// a host offers h2 and http/1.1 through ALPN and speaks what the
// upstream picks (HTTP/1.1 when it picks none). The choice is remembered
// per host (and connOpts): later requests go to that protocol's
// connections, HTTP/1.1 ones in the cluster's pool (pool.go), HTTP/2
// ones multiplexed here. A host whose HTTP/2 connections are all gone
// (or full) is asked again with a new connection.
type autoHTTP struct {
	pool *h1Pool
	h2   *h2Conns // the HTTP/2 connections (h2conns.go)
	// dial connects to addr with o, offering alpn.
	dial    func(ctx context.Context, addr string, o connOpts, alpn []string) (conn, raw net.Conn, err error)
	opts    func(*http.Request, *upstreamHead) connOpts // nil: no auto_sni
	timeout time.Duration                               // connect_timeout
	// maxHeaders is the cluster's max_headers_count for responses on
	// HTTP/2 connections (limitResponseHeaders; the pool has its own).
	maxHeaders int

	mu    sync.Mutex
	proto map[string]string // poolKey → "h2" or "http/1.1"
}

func newAutoHTTP(pool *h1Pool, h2 *h2Conns, connectTimeout time.Duration,
	dial func(context.Context, string, connOpts, []string) (net.Conn, net.Conn, error),
	opts func(*http.Request, *upstreamHead) connOpts) *autoHTTP {
	return &autoHTTP{pool: pool, h2: h2, dial: dial, opts: opts, timeout: connectTimeout, proto: map[string]string{}}
}

var autoALPN = []string{"h2", "http/1.1"}

func (a *autoHTTP) RoundTrip(req *http.Request) (*http.Response, error) {
	if upstreamUpgradeOf(req.Context()) != nil {
		// Upgrades and CONNECT go over HTTP/1.1 connections.
		return a.pool.RoundTrip(req)
	}
	addr := req.URL.Host
	var o connOpts
	if a.opts != nil {
		o = a.opts(req, nil)
	}
	key := o.poolKey(addr)
	a.mu.Lock()
	proto := a.proto[key]
	a.mu.Unlock()
	if proto == "http/1.1" {
		return a.pool.RoundTrip(req)
	}
	cc, done, err := a.h2.takeOrDial(req, key)
	if err != nil {
		return nil, err
	}
	if cc != nil {
		resp, err := cc.RoundTrip(req)
		return limitResponseHeaders(resp, err, a.maxHeaders)
	}
	// The connection is made (or not) before the request goes on it:
	// requests waiting for it are released then, not after the answer.
	var once sync.Once
	release := func() { once.Do(done) }
	defer release()
	a.mu.Lock()
	proto = a.proto[key] // another request's connection may have told
	a.mu.Unlock()
	if proto == "http/1.1" {
		release()
		return a.pool.RoundTrip(req)
	}
	// Not known yet, or no HTTP/2 connection can take the request: a
	// new connection, on which ALPN decides.
	ctx := req.Context()
	if a.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, a.timeout)
		defer cancel()
	}
	conn, raw, err := a.dial(ctx, addr, o, autoALPN)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	if negotiated(conn) != "h2" {
		a.setProto(key, "http/1.1")
		a.pool.adopt(key, addr, conn, raw)
		release()
		return a.pool.RoundTrip(req)
	}
	a.setProto(key, "h2")
	cc, err = a.h2.adopt(req, key, conn)
	release()
	if err != nil {
		return nil, err
	}
	resp, err := cc.RoundTrip(req)
	return limitResponseHeaders(resp, err, a.maxHeaders)
}

func (a *autoHTTP) setProto(key, proto string) {
	a.mu.Lock()
	a.proto[key] = proto
	a.mu.Unlock()
}

// negotiated is the ALPN protocol of a connection from the cluster's
// dial (a countedConn around a TLS connection).
func negotiated(c net.Conn) string {
	if cc, ok := c.(*countedConn); ok {
		c = cc.Conn
	}
	if tc, ok := c.(*tls.Conn); ok {
		return tc.ConnectionState().NegotiatedProtocol
	}
	return ""
}

// CloseIdleConnections closes the HTTP/2 connections without streams
// and the pool's idle ones.
func (a *autoHTTP) CloseIdleConnections() {
	a.h2.closeIdle()
	a.pool.CloseIdleConnections()
}

// close ends the transport with its cluster: HTTP/2 connections close
// once their streams end (GOAWAY now).
func (a *autoHTTP) close() { a.h2.close() }
