package proxy

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// h2Conns are HTTP/2 client connections kept by the cluster itself
// rather than by an x/net Transport, per pool key (address and
// connOpts): for auto_config (autohttp.go), auto_sni, and the connection
// limits of common_http_protocol_options on an HTTP/2 cluster. A
// connection that carried max_requests_per_connection streams, or is
// max_connection_duration old, is drained as Envoy drains it: it takes
// no new stream and closes once its streams are done (the sweep finds
// it idle).
type h2Conns struct {
	t2          *http2.Transport // makes the client connections (its settings, idle_timeout)
	maxRequests int
	maxDuration time.Duration
	st          poolStats

	mu    sync.Mutex
	byKey map[string][]*h2UpConn
	// dialing holds, per key, a channel closed when the connection being
	// made for it is ready (or failed): requests meanwhile wait for it
	// rather than each making a connection, as Envoy's pool counts a
	// connecting connection's streams.
	dialing map[string]chan struct{}
	closed  bool
	done    chan struct{} // stops the sweep; nil without one
}

type h2UpConn struct {
	cc       *http2.ClientConn
	opened   time.Time
	streams  int
	draining bool
}

func newH2Conns(idle time.Duration, maxRequests int, maxDuration time.Duration, st poolStats) *h2Conns {
	h := &h2Conns{
		t2:          &http2.Transport{AllowHTTP: true, IdleConnTimeout: idle},
		maxRequests: maxRequests, maxDuration: maxDuration, st: st,
		byKey: map[string][]*h2UpConn{}, dialing: map[string]chan struct{}{},
	}
	if maxRequests > 0 || maxDuration > 0 {
		h.done = make(chan struct{})
		go h.sweep()
	}
	return h
}

// take reserves a stream on a connection of key that can take one; nil
// when there is none.
func (h *h2Conns) take(key string) *http2.ClientConn {
	h.mu.Lock()
	var pick *http2.ClientConn
	idle := h.pruneLocked(key, time.Now(), func(c *h2UpConn) bool {
		if pick != nil || c.draining || !c.cc.ReserveNewRequest() {
			return false
		}
		pick = c.cc
		h.countLocked(c)
		return true
	})
	h.mu.Unlock()
	closeAll(idle)
	return pick
}

// add keeps a new connection of key, with one stream reserved for the
// request that made it; false when the pool closed meanwhile.
func (h *h2Conns) add(key string, cc *http2.ClientConn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	c := &h2UpConn{cc: cc, opened: time.Now()}
	h.countLocked(c)
	h.byKey[key] = append(h.byKey[key], c)
	return true
}

// countLocked counts a stream handed out on c, draining c at
// max_requests_per_connection.
func (h *h2Conns) countLocked(c *h2UpConn) {
	c.streams++
	if h.maxRequests > 0 && c.streams >= h.maxRequests && !c.draining {
		c.draining = true
		h.st.cxMaxRequests.Inc()
	}
}

// pruneLocked walks key's connections: closed ones are dropped, ones
// past max_connection_duration start draining, draining ones without
// streams are dropped and returned to be closed; visit sees each live
// connection. h.mu held.
func (h *h2Conns) pruneLocked(key string, now time.Time, visit func(*h2UpConn) bool) (idle []*http2.ClientConn) {
	cs := h.byKey[key]
	kept := cs[:0]
	for _, c := range cs {
		st := c.cc.State()
		if st.Closed {
			continue
		}
		if !c.draining && h.maxDuration > 0 && now.Sub(c.opened) >= h.maxDuration {
			c.draining = true
			h.st.cxMaxDuration.Inc()
		}
		if c.draining && st.StreamsActive == 0 && st.StreamsPending == 0 && st.StreamsReserved == 0 {
			idle = append(idle, c.cc)
			continue
		}
		kept = append(kept, c)
		if visit != nil {
			visit(c)
		}
	}
	clear(cs[len(kept):])
	if len(kept) == 0 {
		delete(h.byKey, key)
	} else {
		h.byKey[key] = kept
	}
	return idle
}

func closeAll(ccs []*http2.ClientConn) {
	for _, cc := range ccs {
		_ = cc.Close()
	}
}

// sweep closes drained connections once their streams are done.
func (h *h2Conns) sweep() {
	t := time.NewTicker(idleSweepEvery)
	defer t.Stop()
	for {
		select {
		case <-h.done:
			return
		case <-t.C:
		}
		var idle []*http2.ClientConn
		h.mu.Lock()
		now := time.Now()
		for key := range h.byKey {
			idle = append(idle, h.pruneLocked(key, now, nil)...)
		}
		h.mu.Unlock()
		closeAll(idle)
	}
}

// closeIdle closes the connections without streams.
func (h *h2Conns) closeIdle() {
	var idle []*http2.ClientConn
	h.mu.Lock()
	for _, cs := range h.byKey {
		for _, c := range cs {
			if st := c.cc.State(); !st.Closed && st.StreamsActive == 0 && st.StreamsPending == 0 && st.StreamsReserved == 0 {
				idle = append(idle, c.cc)
			}
		}
	}
	h.mu.Unlock()
	closeAll(idle)
}

// close ends the connections with their cluster: each closes once its
// streams end.
func (h *h2Conns) close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	if h.done != nil {
		close(h.done)
	}
	all := h.byKey
	h.byKey = map[string][]*h2UpConn{}
	h.mu.Unlock()
	for _, cs := range all {
		for _, c := range cs {
			go func() { _ = c.cc.Shutdown(context.Background()) }()
		}
	}
}

// h2Direct is an HTTP/2 cluster's transport when it has auto_sni or
// auto_san_validation (connections kept per SNI) or connection limits:
// its connections are h2Conns', dialed with ALPN h2.
type h2Direct struct {
	conns *h2Conns
	dial  func(ctx context.Context, addr string, o connOpts, alpn []string) (conn, raw net.Conn, err error)
	opts  func(*http.Request, *upstreamHead) connOpts // nil: none
	// timeout is the cluster's connect_timeout.
	timeout time.Duration
}

func (t *h2Direct) RoundTrip(req *http.Request) (*http.Response, error) {
	var o connOpts
	if t.opts != nil {
		o = t.opts(req, nil)
	}
	addr := req.URL.Host
	key := o.poolKey(addr)
	cc, done, err := t.conns.takeOrDial(req, key)
	if err != nil || cc != nil {
		if err != nil {
			return nil, err
		}
		return cc.RoundTrip(req)
	}
	cc, err = t.conns.connect(req, key, addr, o, []string{"h2"}, t.dial, t.timeout)
	done()
	if err != nil {
		return nil, err
	}
	return cc.RoundTrip(req)
}

// takeOrDial is take, waiting while a connection for key is being made:
// it returns a connection with a stream reserved, or (cc nil) done, to
// call once the caller made its new connection or failed to.
func (h *h2Conns) takeOrDial(req *http.Request, key string) (cc *http2.ClientConn, done func(), err error) {
	for {
		if cc := h.take(key); cc != nil {
			return cc, nil, nil
		}
		h.mu.Lock()
		wait, busy := h.dialing[key]
		if !busy {
			ch := make(chan struct{})
			h.dialing[key] = ch
			h.mu.Unlock()
			return nil, func() {
				h.mu.Lock()
				delete(h.dialing, key)
				h.mu.Unlock()
				close(ch)
			}, nil
		}
		h.mu.Unlock()
		select {
		case <-wait:
		case <-req.Context().Done():
			closeBody(req)
			return nil, nil, req.Context().Err()
		}
	}
}

// connect makes a new HTTP/2 connection of key (the dial's connection
// must have negotiated h2 or be meant as HTTP/2) and keeps it.
func (h *h2Conns) connect(req *http.Request, key, addr string, o connOpts, alpn []string,
	dial func(context.Context, string, connOpts, []string) (net.Conn, net.Conn, error), timeout time.Duration) (*http2.ClientConn, error) {
	ctx := req.Context()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	conn, _, err := dial(ctx, addr, o, alpn)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	return h.adopt(req, key, conn)
}

// adopt makes an HTTP/2 client connection of conn and keeps it under
// key, one stream reserved for req.
func (h *h2Conns) adopt(req *http.Request, key string, conn net.Conn) (*http2.ClientConn, error) {
	cc, err := h.t2.NewClientConn(conn)
	if err != nil {
		_ = conn.Close()
		closeBody(req)
		return nil, err
	}
	if !h.add(key, cc) {
		_ = cc.Close()
		closeBody(req)
		return nil, errPoolClosed
	}
	return cc, nil
}

func (t *h2Direct) CloseIdleConnections() { t.conns.closeIdle() }
