package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http2"
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
	// dial connects to addr with o, offering alpn.
	dial    func(ctx context.Context, addr string, o connOpts, alpn []string) (conn, raw net.Conn, err error)
	opts    func(*http.Request, *upstreamHead) connOpts // nil: no auto_sni
	t2      *http2.Transport                            // makes the HTTP/2 client connections
	timeout time.Duration                               // connect_timeout

	mu     sync.Mutex
	proto  map[string]string // poolKey → "h2" or "http/1.1"
	h2     map[string][]*http2.ClientConn
	closed bool
}

func newAutoHTTP(pool *h1Pool, idle, connectTimeout time.Duration,
	dial func(context.Context, string, connOpts, []string) (net.Conn, net.Conn, error),
	opts func(*http.Request, *upstreamHead) connOpts) *autoHTTP {
	return &autoHTTP{
		pool: pool, dial: dial, opts: opts, timeout: connectTimeout,
		t2:    &http2.Transport{IdleConnTimeout: idle},
		proto: map[string]string{}, h2: map[string][]*http2.ClientConn{},
	}
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
	cc := a.h2ConnLocked(key)
	a.mu.Unlock()
	switch {
	case proto == "http/1.1":
		return a.pool.RoundTrip(req)
	case cc != nil:
		return cc.RoundTrip(req)
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
		return a.pool.RoundTrip(req)
	}
	cc, err = a.t2.NewClientConn(conn)
	if err != nil {
		_ = conn.Close()
		closeBody(req)
		return nil, err
	}
	a.mu.Lock()
	a.proto[key] = "h2"
	if a.closed {
		a.mu.Unlock()
		_ = cc.Close()
		closeBody(req)
		return nil, errPoolClosed
	}
	a.h2[key] = append(a.h2[key], cc)
	a.mu.Unlock()
	return cc.RoundTrip(req)
}

func (a *autoHTTP) setProto(key, proto string) {
	a.mu.Lock()
	a.proto[key] = proto
	a.mu.Unlock()
}

// h2ConnLocked is an HTTP/2 connection of key that takes a new stream,
// dropping the closed ones; nil when there is none.
func (a *autoHTTP) h2ConnLocked(key string) *http2.ClientConn {
	ccs := a.h2[key]
	kept := ccs[:0]
	var pick *http2.ClientConn
	for _, cc := range ccs {
		if cc.State().Closed {
			continue
		}
		kept = append(kept, cc)
		if pick == nil && cc.CanTakeNewRequest() {
			pick = cc
		}
	}
	clear(ccs[len(kept):])
	if len(kept) == 0 {
		delete(a.h2, key)
	} else {
		a.h2[key] = kept
	}
	return pick
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
	a.mu.Lock()
	var idle []*http2.ClientConn
	for _, ccs := range a.h2 {
		for _, cc := range ccs {
			if st := cc.State(); !st.Closed && st.StreamsActive == 0 && st.StreamsPending == 0 {
				idle = append(idle, cc)
			}
		}
	}
	a.mu.Unlock()
	for _, cc := range idle {
		_ = cc.Close()
	}
	a.pool.CloseIdleConnections()
}

// close ends the transport with its cluster: HTTP/2 connections close
// once their streams end (GOAWAY now).
func (a *autoHTTP) close() {
	a.mu.Lock()
	a.closed = true
	all := a.h2
	a.h2 = map[string][]*http2.ClientConn{}
	a.mu.Unlock()
	for _, ccs := range all {
		for _, cc := range ccs {
			go func() { _ = cc.Shutdown(context.Background()) }()
		}
	}
}
