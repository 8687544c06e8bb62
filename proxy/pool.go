package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/internal/http1"
	"github.com/wasmproxy/wasmproxy/stats"
)

// Envoy's circuit-breaker defaults (cluster.circuit_breakers.thresholds
// with priority DEFAULT): connections, requests waiting for a
// connection, and requests in flight, per cluster.
const (
	defaultMaxConnections     = 1024
	defaultMaxPendingRequests = 1024
	defaultMaxRequests        = 1024
)

// errOverflow is a request refused by a circuit breaker; the router
// answers it as Envoy does (503, upstream_reset_before_response_started{overflow}).
var errOverflow = errors.New("upstream circuit breaker overflow")

// errPoolClosed is a request that waited for a connection of a cluster
// that was closed meanwhile.
var errPoolClosed = errors.New("upstream connection pool closed")

// h1Pool is a cluster's HTTP/1.1 connection pool: one LIFO stack of idle
// keep-alive connections per endpoint address, Envoy's circuit breakers
// over the whole cluster, and the exchange itself written and read by
// our codec (internal/http1). It is an http.RoundTripper so the router,
// callouts and the HTTP/2 transport share one interface; the request is
// written on the caller's goroutine (a goroutine is started only to
// stream a request body of unknown length while the response is read).
type h1Pool struct {
	dial func(ctx context.Context, addr string) (conn, raw net.Conn, err error)
	lim  http1.Limits
	st   poolStats

	maxConnections, maxPending, maxRequests int
	// properCase writes request field names in Proper-Case (the
	// cluster's header_key_format.proper_case_words), not lower case.
	properCase bool
	// preserve is the cluster's preserve_case formatter: the pool
	// remembers each response's field names (headerkey.go).
	preserve *preserveCase
	// Connection limits of the cluster's common_http_protocol_options
	// (zero: none): idleTimeout closes a connection idle that long,
	// maxConnRequests after that many requests, maxConnDuration once
	// that old (drained: closed when its exchange ends).
	idleTimeout     time.Duration
	maxConnRequests int
	maxConnDuration time.Duration
	// connOpts, when set, gives a request's transport socket options
	// (auto_sni, auto_san_validation; autosni.go): connections with
	// different options are not shared, and dialWith makes them.
	connOpts func(req *http.Request, head *upstreamHead) connOpts
	dialWith func(ctx context.Context, addr string, o connOpts) (conn, raw net.Conn, err error)

	mu      sync.Mutex
	idle    map[string][]*h1Conn // per endpoint and connOpts (poolKey); the last pushed is reused first
	conns   int                  // open connections (max_connections)
	pending int                  // requests waiting for a connection
	active  int                  // requests in flight (max_requests)
	waiters []chan struct{}      // pending requests, woken when a connection frees
	closed  bool
	done    chan struct{} // closed with the pool: stops sweep
}

// poolStats are the pool's cluster stats, named as Envoy names them.
type poolStats struct {
	cxDestroy, cxDestroyLocal, cxDestroyRemote  *stats.Counter
	cxOverflow, rqPendingOverflow               *stats.Counter
	cxProtocolError, cxHTTP1Total               *stats.Counter
	cxIdleTimeout, cxMaxRequests, cxMaxDuration *stats.Counter
	rqPendingTotal                              *stats.Counter
	rqActive, rqPendingActive                   *stats.Gauge
}

func newPoolStats(st *stats.Store, p string) poolStats {
	return poolStats{
		cxDestroy:         st.Counter(p + "upstream_cx_destroy"),
		cxDestroyLocal:    st.Counter(p + "upstream_cx_destroy_local"),
		cxDestroyRemote:   st.Counter(p + "upstream_cx_destroy_remote"),
		cxOverflow:        st.Counter(p + "upstream_cx_overflow"),
		rqPendingOverflow: st.Counter(p + "upstream_rq_pending_overflow"),
		cxProtocolError:   st.Counter(p + "upstream_cx_protocol_error"),
		cxHTTP1Total:      st.Counter(p + "upstream_cx_http1_total"),
		cxIdleTimeout:     st.Counter(p + "upstream_cx_idle_timeout"),
		cxMaxRequests:     st.Counter(p + "upstream_cx_max_requests"),
		cxMaxDuration:     st.Counter(p + "upstream_cx_max_duration_reached"),
		rqPendingTotal:    st.Counter(p + "upstream_rq_pending_total"),
		rqActive:          st.Gauge(p + "upstream_rq_active"),
		rqPendingActive:   st.Gauge(p + "upstream_rq_pending_active"),
	}
}

func newH1Pool(dial func(ctx context.Context, addr string) (net.Conn, net.Conn, error), st poolStats) *h1Pool {
	p := &h1Pool{
		done:           make(chan struct{}),
		dial:           dial,
		st:             st,
		idle:           map[string][]*h1Conn{},
		maxConnections: defaultMaxConnections,
		maxPending:     defaultMaxPendingRequests,
		maxRequests:    defaultMaxRequests,
	}
	go p.sweep()
	return p
}

// RoundTrip sends req to req.URL.Host and returns the response once its
// head is read. The response body must be read to its end or closed;
// the connection goes back to the pool only when the request is fully
// written and the response fully read.
func (p *h1Pool) RoundTrip(req *http.Request) (*http.Response, error) {
	return p.roundTripHead(req, nil)
}

// roundTripHead is RoundTrip for a request whose header fields are
// head's when req.Header is nil (the router's synchronous exchange):
// they are written from the pairs, with no http.Header in between.
func (p *h1Pool) roundTripHead(req *http.Request, head *upstreamHead) (*http.Response, error) {
	p.mu.Lock()
	if p.active >= p.maxRequests {
		p.mu.Unlock()
		p.st.rqPendingOverflow.Inc()
		closeBody(req)
		return nil, errOverflow
	}
	p.active++
	p.mu.Unlock()
	p.st.rqActive.Add(1)
	body, replayable := requestBody(req)
	addr := req.URL.Host
	key, opts := addr, connOpts{}
	if p.connOpts != nil {
		opts = p.connOpts(req, head)
		key = opts.poolKey(addr)
	}
	var deadline time.Time
	if head != nil {
		deadline = head.deadline
	}
	for attempt := 0; ; attempt++ {
		c, reused, err := p.get(req.Context(), deadline, key, addr, opts)
		if err != nil {
			p.endRequest()
			closeBody(req)
			return nil, err
		}
		c.requests++
		if trace := httptrace.ContextClientTrace(req.Context()); trace != nil && trace.GotConn != nil {
			trace.GotConn(httptrace.GotConnInfo{Conn: c.conn, Reused: reused})
		}
		if u := upstreamUpgradeOf(req.Context()); u != nil && u.terminate {
			if reused {
				// A tunnel gets a connection of its own, as from
				// Envoy's TCP pool, not one an HTTP exchange left idle.
				c.destroy(nil)
				continue
			}
			return c.tunnel(req, u), nil // connect.go
		}
		resp, err := c.roundTrip(req, head, deadline, body)
		if err == nil {
			return resp, nil
		}
		// A reused connection the upstream closed while it sat idle
		// (its close not yet seen) fails before any byte of a response:
		// Envoy retries such a request once on a new connection.
		// Only a request the upstream cannot have acted on is sent
		// again: its write failed, or it is idempotent.
		stale := reused && attempt == 0 && !c.gotBytes && (replayable || !c.writerStarted) && isConnGone(err) &&
			(c.writeFailed || idempotent(req.Method))
		c.destroy(err)
		if !stale {
			p.endRequest()
			closeBody(req)
			return nil, err
		}
	}
}

// CloseIdleConnections closes every idle connection (cluster close and
// reload); connections in use close when their exchange ends if the
// pool is closed.
func (p *h1Pool) CloseIdleConnections() {
	p.mu.Lock()
	var all []*h1Conn
	for addr, cs := range p.idle {
		all = append(all, cs...)
		delete(p.idle, addr)
	}
	p.mu.Unlock()
	for _, c := range all {
		c.destroy(nil)
	}
}

// closeIdleTo closes the idle connections to one endpoint address (its
// host failed a health check), whatever their connOpts.
func (p *h1Pool) closeIdleTo(addr string) {
	p.mu.Lock()
	var cs []*h1Conn
	for key, idle := range p.idle {
		if len(idle) > 0 && idle[0].addr == addr {
			cs = append(cs, idle...)
			delete(p.idle, key)
		}
	}
	p.mu.Unlock()
	for _, c := range cs {
		c.destroy(nil)
	}
}

// close stops the pool for good: idle connections close now, busy ones
// when their exchange ends, and waiting requests fail.
func (p *h1Pool) close() {
	p.mu.Lock()
	if !p.closed {
		close(p.done)
	}
	p.closed = true
	for _, w := range p.waiters {
		close(w)
	}
	p.waiters = nil
	p.mu.Unlock()
	p.CloseIdleConnections()
}

func (p *h1Pool) endRequest() {
	p.mu.Lock()
	p.active--
	p.mu.Unlock()
	p.st.rqActive.Add(-1)
}

// get returns an idle connection to addr that is still open, or a new
// one; it waits (a pending request) while max_connections are open.
// The wait and the connect end at ctx's end or deadline (zero: none).
func (p *h1Pool) get(ctx context.Context, deadline time.Time, key, addr string, opts connOpts) (c *h1Conn, reused bool, err error) {
	waiting := false
	leave := func() { // p.mu held
		if waiting {
			p.pending--
			p.st.rqPendingActive.Add(-1)
			waiting = false
		}
	}
	p.mu.Lock()
	for {
		if p.closed {
			leave()
			p.mu.Unlock()
			return nil, false, errPoolClosed
		}
		for idle := p.idle[key]; len(idle) > 0; idle = p.idle[key] {
			c = idle[len(idle)-1]
			idle[len(idle)-1] = nil
			p.idle[key] = idle[:len(idle)-1]
			p.mu.Unlock()
			now := monoNow() // ages: no wall clock needed (clock.go)
			if p.expired(c, now) {
				p.mu.Lock()
				continue
			}
			// A connection idle for a while is also peeked at: bytes an
			// upstream sent unasked without closing raise no hang-up.
			peek := !c.watched || now.Sub(c.idleSince) >= idlePeekAfter
			if !c.peerClosed(deadline, peek) {
				p.mu.Lock()
				leave()
				p.mu.Unlock()
				return c, true, nil
			}
			// Closed while idle: found without failing a request.
			c.destroy(io.EOF)
			p.mu.Lock()
		}
		if p.conns < p.maxConnections {
			p.conns++
			leave()
			p.mu.Unlock()
			if !deadline.IsZero() {
				// A new connection only: the dial ends at the deadline.
				dctx, cancel := context.WithDeadline(ctx, deadline)
				defer cancel()
				ctx = dctx
			}
			return p.connect(ctx, key, addr, opts)
		}
		if !waiting {
			if p.pending >= p.maxPending {
				p.mu.Unlock()
				p.st.rqPendingOverflow.Inc()
				return nil, false, errOverflow
			}
			p.st.cxOverflow.Inc()
			p.st.rqPendingTotal.Inc()
			p.st.rqPendingActive.Add(1)
			p.pending++
			waiting = true
		}
		wait := make(chan struct{})
		p.waiters = append(p.waiters, wait)
		p.mu.Unlock()
		var expire <-chan time.Time
		var timer *time.Timer
		if !deadline.IsZero() {
			timer = time.NewTimer(time.Until(deadline))
			expire = timer.C
		}
		var werr error
		select {
		case <-wait:
		case <-ctx.Done():
			werr = ctx.Err()
		case <-expire:
			werr = context.DeadlineExceeded
		}
		if timer != nil {
			timer.Stop()
		}
		p.mu.Lock()
		if werr != nil {
			p.removeWaiter(wait)
			leave()
			p.mu.Unlock()
			return nil, false, werr
		}
	}
}

func (p *h1Pool) removeWaiter(w chan struct{}) {
	for i, x := range p.waiters {
		if x == w {
			p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
			return
		}
	}
}

// wakeOne tells one pending request that a connection freed; p.mu held.
func (p *h1Pool) wakeOne() {
	if len(p.waiters) > 0 {
		close(p.waiters[0])
		p.waiters = p.waiters[1:]
	}
}

func (p *h1Pool) connect(ctx context.Context, key, addr string, opts connOpts) (*h1Conn, bool, error) {
	var conn, raw net.Conn
	var err error
	if opts != (connOpts{}) && p.dialWith != nil {
		conn, raw, err = p.dialWith(ctx, addr, opts)
	} else {
		conn, raw, err = p.dial(ctx, addr)
	}
	if err != nil {
		p.mu.Lock()
		p.conns--
		p.wakeOne()
		p.mu.Unlock()
		return nil, false, err
	}
	return p.newConn(key, addr, conn, raw), false, nil
}

// adopt takes a connection dialed outside the pool (auto_config's first
// connection to a host, which ALPN made HTTP/1.1: autohttp.go) into the
// idle stack of key, within max_connections (else it is closed).
func (p *h1Pool) adopt(key, addr string, conn, raw net.Conn) {
	p.mu.Lock()
	if p.closed || p.conns >= p.maxConnections {
		p.mu.Unlock()
		_ = conn.Close()
		return
	}
	p.conns++
	p.mu.Unlock()
	p.put(p.newConn(key, addr, conn, raw), time.Time{})
}

// newConn makes the pool's connection of conn (counted in p.conns).
func (p *h1Pool) newConn(key, addr string, conn, raw net.Conn) *h1Conn {
	p.st.cxHTTP1Total.Inc()
	c := &h1Conn{pool: p, addr: addr, key: key, conn: conn, vw: conn, writerDone: make(chan struct{}, 1)}
	c.resp.KeepReason = p.preserve != nil && p.preserve.ForwardReasonPhrase // headerkey.go
	if p.maxConnDuration > 0 || p.idleTimeout > 0 {
		c.opened = monoNow() // an age's origin (clock.go)
	}
	if cc, ok := conn.(*countedConn); ok {
		if tc, ok := cc.Conn.(*net.TCPConn); ok {
			// net.Buffers makes one writev only on the TCP connection
			// itself; through the wrapper it would write each buffer.
			c.vw = tc
		}
	}
	// No TLS: the request's bytes go to the socket as they are (await_unix.go).
	_, c.plain = c.vw.(*net.TCPConn)
	c.br = bufio.NewReaderSize(countingReader{c}, 16<<10)
	if sc, ok := raw.(syscall.Conn); ok {
		c.raw, _ = sc.SyscallConn()
	}
	c.peekFn = c.peek
	c.awaitFn = c.await
	c.watched = c.watch() // hupwatch_linux.go
	c.closeFn = func() { _ = c.conn.Close() }
	c.unwatchFn = func() bool {
		if c.rc != nil {
			c.rc.unwatch()
			c.rc = nil
		}
		return true
	}
	return c
}

// expiry is the stat of the limit that ends an idle connection at now
// (max_connection_duration, idle_timeout), or nil when none does.
func (p *h1Pool) expiry(c *h1Conn, now time.Time) *stats.Counter {
	if p.maxConnDuration > 0 && now.Sub(c.opened) >= p.maxConnDuration {
		return p.st.cxMaxDuration
	}
	if p.idleTimeout > 0 && !c.idleSince.IsZero() && now.Sub(c.idleSince) >= p.idleTimeout {
		return p.st.cxIdleTimeout
	}
	return nil
}

// expired closes an idle connection taken from the pool that a limit
// ended, counting it, and reports whether it did.
func (p *h1Pool) expired(c *h1Conn, now time.Time) bool {
	why := p.expiry(c, now)
	if why == nil {
		return false
	}
	why.Inc()
	c.destroy(nil)
	return true
}

// put returns a connection whose exchange is over to the idle stack.
// now is the monotonic reading of the exchange's end when its caller
// took one (respBody.finish), else zero: put reads the clock.
func (p *h1Pool) put(c *h1Conn, now time.Time) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.destroy(nil)
		return
	}
	if p.maxConnRequests > 0 && c.requests >= p.maxConnRequests {
		// Envoy drains a connection that carried max_requests_per_connection.
		p.mu.Unlock()
		p.st.cxMaxRequests.Inc()
		c.destroy(nil)
		return
	}
	// One reading of the monotonic clock for the age and the idle
	// start (compared with monotonic readings only: clock.go).
	if now.IsZero() {
		now = monoNow()
	}
	if p.maxConnDuration > 0 && now.Sub(c.opened) >= p.maxConnDuration {
		// Drained at max_connection_duration while busy: closed now.
		p.mu.Unlock()
		p.st.cxMaxDuration.Inc()
		c.destroy(nil)
		return
	}
	c.idleSince = now
	p.idle[c.key] = append(p.idle[c.key], c)
	p.wakeOne()
	p.mu.Unlock()
}

// h1Conn is one upstream HTTP/1.1 connection and the state of the
// exchange it carries.
type h1Conn struct {
	pool *h1Pool
	addr string
	// key is the pool's idle stack it goes back to: addr, and its
	// connOpts when it has any (autosni.go).
	key string
	// opened (when the pool has a max_connection_duration or an
	// idle_timeout), idleSince (the time it went back to the pool) and
	// requests (the exchanges it carried) serve the pool's connection
	// limits; idleSince also decides the checkout's peek.
	opened, idleSince time.Time
	requests          int
	conn              net.Conn
	// vw is conn for vectored writes (net.Buffers): the plain TCP
	// connection under the stats wrapper when there is one.
	vw  io.Writer
	raw syscall.RawConn // the TCP socket under any TLS, for peerClosed
	br  *bufio.Reader

	head   []byte
	bufs   [2][]byte
	resp   http1.Response
	body   http1.BodyReader
	stop   func() bool // ends the exchange's context watch
	peekFn func(fd uintptr) bool
	// plain: conn is the TCP socket raw reaches, under the stats wrapper
	// at most (no TLS); awaitFn, aw: writeAwait's (await_unix.go).
	plain   bool
	awaitFn func(fd uintptr) bool
	aw      awaitState
	closeFn func() // closes the connection when a request's context ends
	peekB   [1]byte
	gone    bool
	// hup: the upstream's end of stream, reset or error was seen on the
	// socket (hupwatch_linux.go) while watched (then watchID is its key
	// there); a watched connection is peeked at its checkout only once
	// it sat idle for idlePeekAfter.
	hup     atomic.Bool
	watched bool
	watchID uint64
	// deadline is the one set on conn (zero: none): an exchange's, kept
	// while the connection is idle until its next exchange's replaces it
	// (peerClosed).
	deadline time.Time
	// rc is the exchange's request cancel while it watches it (stop is
	// then unwatchFn, made once).
	rc        *requestCancel
	unwatchFn func() bool

	// Per exchange.
	gotBytes      bool  // a byte of a response arrived
	readBytes     int64 // bytes read from the connection, ever
	writerStarted bool  // a goroutine streams the request body
	writeFailed   bool  // the request head (and whole body) could not be written

	mu        sync.Mutex
	writeDone bool
	readDone  bool
	broken    bool
	destroyed bool
	// lastWrite: the body writer is writing the request's last bytes;
	// readerWaits: the response's end waits on writerDone for it.
	lastWrite   bool
	readerWaits bool
	writerDone  chan struct{}
}

// countingReader counts what the connection's reader takes from it, so
// that a failed exchange knows whether any byte of a response came.
type countingReader struct{ c *h1Conn }

func (r countingReader) Read(p []byte) (int, error) {
	n, err := r.c.conn.Read(p)
	r.c.readBytes += int64(n)
	return n, err
}

// peerClosed reports whether an idle connection was closed by the
// upstream (or sent something unasked): the hang-up watch's flag
// (hupwatch_linux.go), bytes left in the reader, and when peek, a
// non-blocking peek at the socket (the idle sweep's, and the checkout's
// of a connection the watch does not cover or that sat idle for
// idlePeekAfter). A quick reuse of a watched connection costs no
// system call; bytes an upstream sent unasked without closing in the
// moments before it are then read as the next response.
// deadline is the one the connection gets next: the next exchange's
// (zero: none, or the idle sweep). Setting it here rather than clearing
// the last exchange's saves one deadline change (a runtime timer's) per
// reuse: the exchange then finds it set. A deadline already past fails
// the peek with a timeout; the connection is not known closed then, and
// its exchange ends at that deadline as it would have anyway.
func (c *h1Conn) peerClosed(deadline time.Time, peek bool) bool {
	c.setDeadline(deadline)
	if c.br.Buffered() > 0 || c.hup.Load() {
		return true
	}
	if c.raw == nil || !peek {
		return false
	}
	c.gone = false
	if err := c.raw.Read(c.peekFn); err != nil {
		return !errors.Is(err, os.ErrDeadlineExceeded)
	}
	return c.gone
}

// setDeadline sets the connection's deadline for an exchange (zero:
// none) when it differs from the one set.
func (c *h1Conn) setDeadline(t time.Time) {
	if !t.Equal(c.deadline) {
		_ = c.conn.SetDeadline(t)
		c.deadline = t
	}
}

// destroy closes the connection once and frees its place.
func (c *h1Conn) destroy(cause error) {
	c.mu.Lock()
	if c.destroyed {
		c.mu.Unlock()
		return
	}
	c.destroyed = true
	c.mu.Unlock()
	c.unwatch()
	_ = c.conn.Close()
	p := c.pool
	p.st.cxDestroy.Inc()
	if cause != nil && isConnGone(cause) {
		p.st.cxDestroyRemote.Inc()
	} else {
		p.st.cxDestroyLocal.Inc()
	}
	var pe *http1.Error
	if errors.As(cause, &pe) {
		p.st.cxProtocolError.Inc()
	}
	p.mu.Lock()
	p.conns--
	p.wakeOne()
	p.mu.Unlock()
}

// isConnGone: the peer closed or reset the connection.
func isConnGone(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// requestBody returns the bytes of a body known in full (nil for no
// body) and whether the request can be sent again; a streamed body is
// returned as nil with replayable false.
func requestBody(req *http.Request) (whole []byte, replayable bool) {
	switch b := req.Body.(type) {
	case nil:
		return nil, true
	case *sliceReader:
		return b.b, true
	}
	if req.Body == http.NoBody {
		return nil, true
	}
	return nil, false
}

// idempotent methods may be sent again when a connection failed before
// any byte of their response (RFC 9110 §9.2.2).
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// roundTrip writes req on c and reads the response head; the exchange,
// its body read included, ends at deadline (zero: none).
func (c *h1Conn) roundTrip(req *http.Request, uh *upstreamHead, deadline time.Time, whole []byte) (*http.Response, error) {
	c.gotBytes, c.writerStarted, c.writeFailed = false, false, false
	c.writeDone, c.readDone, c.broken = false, false, false
	c.lastWrite, c.readerWaits = false, false
	streamed := req.Body != nil && req.Body != http.NoBody && whole == nil
	if _, ok := req.Body.(*sliceReader); ok {
		streamed = false
	}
	chunked := streamed && req.ContentLength < 0
	head, err := appendRequestHead(c.head[:0], req, uh, len(whole), chunked)
	c.head = head
	if err != nil {
		return nil, err
	}
	if c.pool.properCase || preserveCaseUsed.Load() {
		formatRequestHead(head, req, c.pool.properCase) // headerkey.go
	}
	c.stop = noStop
	if uh != nil && uh.cancel != nil {
		// The downstream request's cancel closes the connection, as the
		// AfterFunc below would, without a context registration.
		c.rc = uh.cancel
		if !c.rc.watch(c.closeFn) {
			c.closeFn() // cancelled already
		}
		c.stop = c.unwatchFn
	} else if req.Context().Done() != nil {
		c.stop = context.AfterFunc(req.Context(), c.closeFn)
	}
	stop := c.stop
	c.setDeadline(deadline)
	// Head and a body known in full leave in one write: a small body is
	// copied behind the head (one segment, one syscall, one TLS record),
	// a larger one goes with the head in one writev.
	var werr error
	if len(whole) <= coalesceBodyLimit {
		c.head = append(c.head, whole...)
		if c.plain && c.raw != nil && !streamed {
			werr = c.writeAwait(c.head) // await_unix.go
		} else {
			_, werr = c.conn.Write(c.head)
		}
	} else {
		c.bufs[0], c.bufs[1] = head, whole
		bufs := net.Buffers(c.bufs[:])
		_, werr = bufs.WriteTo(c.vw)
		c.bufs[1] = nil
	}
	if werr != nil {
		c.writeFailed = true
		stop()
		return nil, ctxErr(req.Context(), werr)
	}
	if streamed {
		c.writerStarted = true
		go c.writeBody(req, chunked)
	} else {
		c.writeDone = true
	}
	isHead := req.Method == http.MethodHead
	before := c.readBytes
	if err := http1.ReadResponse(c.br, c.pool.lim, isHead, &c.resp); err != nil {
		stop()
		c.gotBytes = c.readBytes != before
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, ctxErr(req.Context(), err)
	}
	c.gotBytes = true
	// One allocation holds the response, its body reader, its header
	// map and the map's first pairs (none when the router offers
	// storage in its request: upstreamHead.exch). The fields go from the codec
	// straight into the header map the stream hands its filters
	// (responseHeaderMap): no http.Header in between, so resp.Header
	// stays nil.
	var x *h1Exchange
	if uh != nil && uh.exch != nil {
		x, uh.exch = uh.exch, nil
	} else {
		x = &h1Exchange{}
	}
	resp := &x.resp
	status := itoa(c.resp.Status)
	*resp = http.Response{
		Status:        status,
		StatusCode:    c.resp.Status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    c.resp.Minor,
		ContentLength: c.resp.ContentLength,
		Close:         !c.resp.KeepAlive,
		Request:       req,
	}
	h := &x.headers
	h.SetStorage(x.pairs[:])
	h.Grow(len(c.resp.Fields) + 4) // :status, content-length, and the router's additions (beyond the storage: an array of its own)
	h.AddLower(":status", status)
	hasCL := false
	for _, f := range c.resp.Fields {
		k := lowerKey(f.Name)
		if isHopByHop(k) {
			continue
		}
		hasCL = hasCL || k == "content-length"
		h.AddLower(k, f.Value) // lowerKey: lower case
	}
	if c.resp.ContentLength >= 0 && !hasCL {
		h.AddLower("content-length", strconv.FormatInt(c.resp.ContentLength, 10))
	}
	if !c.resp.CloseDelimited {
		c.body.ResetForResponse(c.br, &c.resp, c.pool.lim)
	}
	rb := &x.body
	*rb = respBody{c: c, resp: resp, headers: h}
	if pc := c.pool.preserve; pc != nil {
		rb.keys = newHeaderKeys(c.resp.Fields, c.resp.Reason, pc) // headerkey.go
	}
	resp.Body = rb
	if u := upstreamUpgradeOf(req.Context()); u != nil && u.switched(c.resp.Status) {
		// The connection now carries the upgraded protocol: it leaves
		// the exchange (and the pool) for the splice, which destroys it.
		stop()
		c.stop = noStop
		c.setDeadline(time.Time{}) // the splice has no route timeout
		rb.done = true
		u.conn = c
		return resp, nil
	}
	if c.resp.ContentLength == 0 {
		rb.finish()
	}
	return resp, nil
}

// ctxErr prefers the context's error when it ended the exchange (the
// AfterFunc closed the connection to unblock it); an I/O that hit the
// exchange's deadline (setDeadline) ends as a context deadline would.
func ctxErr(ctx context.Context, err error) error {
	if ce := ctx.Err(); ce != nil {
		return ce
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return context.DeadlineExceeded
	}
	return err
}

// writeBody streams a request body of unknown length (the request
// head is already written), chunked with its trailers when chunked.
func (c *h1Conn) writeBody(req *http.Request, chunked bool) {
	bp := readBuffers.Get().(*[]byte)
	defer readBuffers.Put(bp)
	buf := *bp
	var err error
	var sent int64
	for {
		var n int
		n, err = req.Body.Read(buf[:len(buf)-16])
		if n > 0 {
			if chunked {
				hdr := strconv.AppendInt(make([]byte, 0, 20), int64(n), 16)
				hdr = append(hdr, '\r', '\n')
				bufs := net.Buffers{hdr, buf[:n], crlf}
				_, err2 := bufs.WriteTo(c.vw)
				if err2 != nil {
					err = err2
					break
				}
			} else {
				if req.ContentLength >= 0 && sent+int64(n) > req.ContentLength {
					err = errors.New("request body longer than its content-length")
					break
				}
				if sent+int64(n) == req.ContentLength {
					c.markLastWrite()
				}
				if _, err2 := c.conn.Write(buf[:n]); err2 != nil {
					err = err2
					break
				}
			}
			sent += int64(n)
		}
		if err != nil {
			break
		}
	}
	if err == io.EOF {
		err = nil
		if chunked {
			end := append([]byte(nil), "0\r\n"...)
			for k, vs := range req.Trailer {
				for _, v := range vs {
					if !validFieldName(k) || !validFieldValue(v) {
						continue
					}
					end = append(end, k...)
					end = append(end, ": "...)
					end = append(end, v...)
					end = append(end, "\r\n"...)
				}
			}
			end = append(end, "\r\n"...)
			c.markLastWrite()
			_, err = c.conn.Write(end)
		} else if req.ContentLength >= 0 && sent != req.ContentLength {
			err = errors.New("request body shorter than its content-length")
		}
	}
	_ = req.Body.Close()
	c.mu.Lock()
	c.writeDone = true
	if err != nil {
		c.broken = true
	}
	release := c.readDone
	waits := c.readerWaits
	c.mu.Unlock()
	if err != nil {
		// The reader sees the connection close and reports the reset.
		_ = c.conn.Close()
	}
	if waits {
		c.writerDone <- struct{}{} // the waiting response end releases
		return
	}
	if release {
		c.release(time.Time{})
	}
}

// markLastWrite notes that the body writer is about to write the
// request's last bytes (see respBody.finish).
func (c *h1Conn) markLastWrite() {
	c.mu.Lock()
	c.lastWrite = true
	c.mu.Unlock()
}

// lastWriteWait bounds how long a whole response waits for the body
// writer's last write before the connection is given up instead.
const lastWriteWait = time.Second

var crlf = []byte("\r\n")

// coalesceBodyLimit is the largest request body known in full that is
// copied behind the request head into a single write.
const coalesceBodyLimit = 16 << 10

// idlePeekAfter is how long a watched connection sits idle before its
// checkout also peeks at its socket (peerClosed): under load a
// connection is reused sooner and costs no system call; one idle longer
// costs one recvfrom, as before the hang-up watch.
const idlePeekAfter = 10 * time.Millisecond

// idleSweepEvery is how often idle connections are checked for an
// upstream close, so that upstream_cx_active follows the upstream
// without a request (a checkout checks the connection it takes anyway).
const idleSweepEvery = 500 * time.Millisecond

// sweep closes idle connections the upstream has closed, until the pool
// closes.
func (p *h1Pool) sweep() {
	t := time.NewTicker(idleSweepEvery)
	defer t.Stop()
	var dead, ended []*h1Conn // closed by the upstream; past a limit
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
		}
		p.mu.Lock()
		for addr, cs := range p.idle {
			kept := cs[:0]
			now := monoNow()
			for _, c := range cs {
				if why := p.expiry(c, now); why != nil {
					why.Inc()
					ended = append(ended, c)
				} else if c.peerClosed(time.Time{}, true) {
					dead = append(dead, c)
				} else {
					kept = append(kept, c)
				}
			}
			clear(cs[len(kept):])
			p.idle[addr] = kept
		}
		p.mu.Unlock()
		for i, c := range dead {
			c.destroy(io.EOF)
			dead[i] = nil
		}
		dead = dead[:0]
		for i, c := range ended {
			c.destroy(nil)
			ended[i] = nil
		}
		ended = ended[:0]
	}
}

// release ends an exchange whose request is written and whose response
// is read: the connection is reused when both sides allow it. now is
// put's (zero: put reads the clock).
func (c *h1Conn) release(now time.Time) {
	c.stop()
	c.pool.endRequest()
	c.mu.Lock()
	reuse := !c.broken && c.resp.KeepAlive && !c.destroyed
	c.mu.Unlock()
	if !reuse {
		c.destroy(nil)
		return
	}
	c.pool.put(c, now)
}

// h1Exchange is what one response hands its caller. pairs is the
// storage of headers' first pairs (filter.HeaderMap.SetStorage): the
// response's header map costs no allocation of its own. An h1Exchange
// is filled once, by one response, and lives as long as its caller
// keeps it.
type h1Exchange struct {
	resp    http.Response
	body    respBody
	headers filter.HeaderMap
	pairs   [inlineResponsePairs]filter.Pair
}

// inlineResponsePairs is how many response header pairs an h1Exchange
// holds in its own allocation: :status, the fields, content-length and
// the router's additions.
const inlineResponsePairs = 10

// pooledResponseHeaders is the header map the pool's codec filled for a
// response it returned (":status" first, then the fields in the order
// received, hop-by-hop fields left out, content-length when the framing
// knows it), or nil for a response from another transport.
func pooledResponseHeaders(resp *http.Response) *filter.HeaderMap {
	if b, ok := resp.Body.(*respBody); ok && b.headers != nil {
		return b.headers
	}
	return nil
}

func noStop() bool { return false }

// respBody is the response body handed to the caller; it belongs to the
// connection and is reused by its next exchange.
type respBody struct {
	c       *h1Conn
	resp    *http.Response
	headers *filter.HeaderMap // the response's, as the codec read them
	done    bool              // the body is read to its end or closed
	keys    *headerKeys       // the cluster's preserve_case formatter's (headerkey.go)
}

func (b *respBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	c := b.c
	var n int
	var err error
	if c.resp.CloseDelimited {
		n, err = c.br.Read(p)
	} else {
		n, err = c.body.Read(p)
	}
	if err == io.EOF {
		if c.resp.Chunked {
			for _, f := range c.body.Trailers() {
				if b.resp.Trailer == nil {
					b.resp.Trailer = http.Header{}
				}
				k := canonicalKey(f.Name)
				b.resp.Trailer[k] = append(b.resp.Trailer[k], f.Value)
			}
		}
		if c.resp.CloseDelimited {
			c.mu.Lock()
			c.broken = true // nothing more can be read from it
			c.mu.Unlock()
		}
		b.finish()
		return n, io.EOF
	}
	if err != nil {
		err = ctxErr(b.resp.Request.Context(), err)
		c.mu.Lock()
		c.broken = true
		c.mu.Unlock()
		b.finish()
	}
	return n, err
}

// finish ends the response side of the exchange.
func (b *respBody) finish() {
	if b.done {
		return
	}
	b.done = true
	c := b.c
	c.mu.Lock()
	c.readDone = true
	release := c.writeDone
	// The upstream may answer as soon as it has read the request's last
	// bytes, before the writer goroutine has noted its write done. Then
	// the response's end waits for that note, so that the connection is
	// back in the pool before the client sees the response end and
	// sends its next request on a keep-alive connection (which would
	// otherwise open a second upstream connection, as Envoy's event
	// loop never does). A last write that does not end soon (the
	// upstream stopped reading) costs the connection instead.
	wait := !release && c.lastWrite
	c.readerWaits = wait
	c.mu.Unlock()
	if wait {
		select {
		case <-c.writerDone:
		case <-time.After(lastWriteWait):
			c.mu.Lock()
			c.broken = true
			c.mu.Unlock()
			_ = c.conn.Close() // fails the write
			<-c.writerDone
		}
		release = true
	}
	if release {
		c.release(monoNow()) // the connection's idle start (clock.go)
	}
}

// Close discards an unread body by closing the connection (reading an
// unbounded remainder to save a connection is not worth it).
func (b *respBody) Close() error {
	if !b.done && !b.c.resp.CloseDelimited && b.c.body.Done() {
		b.finish() // read to its end, the EOF not yet asked for
		return nil
	}
	if !b.done {
		b.c.mu.Lock()
		b.c.broken = true
		b.c.mu.Unlock()
		_ = b.c.conn.Close()
		b.finish()
	}
	return nil
}

// appendRequestHead appends the request line (origin form, the path
// bytes as the router was given them), host, the header fields and the
// framing of the body. Field names go out in lower case, as Envoy's
// HTTP/1 codec writes the names of its header map (the pool's
// properCase turns them into Proper-Case afterwards).
func appendRequestHead(b []byte, req *http.Request, uh *upstreamHead, wholeLen int, chunked bool) ([]byte, error) {
	target := requestTarget(req)
	b = append(b, req.Method...)
	b = append(b, ' ')
	b = append(b, target...)
	b = append(b, " HTTP/1.1\r\nhost: "...)
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	b = append(b, host...)
	b = append(b, "\r\n"...)
	if req.Header == nil && uh != nil {
		var err error
		if b, err = appendUpstreamFields(b, uh); err != nil {
			return b, err
		}
	}
	for k, vs := range req.Header {
		start := len(b)
		b = appendLowerKey(b, k)
		lk := b[start:]
		if skipRequestField(lk) {
			b = b[:start]
			continue
		}
		if !validFieldName(string(lk)) {
			return b[:start], errors.New("invalid upstream request header name " + strconv.Quote(string(lk)))
		}
		name := string(lk)
		b = b[:start]
		for _, v := range vs {
			if v == "" && name == "user-agent" {
				continue
			}
			if !validFieldValue(v) {
				return b, errors.New("invalid value of upstream request header " + name)
			}
			b = append(b, name...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	if u := upstreamUpgradeOf(req.Context()); u != nil && !u.connect {
		// The hop-by-hop fields of an upgrade upgrade_configs enables
		// go on, as Envoy's router sends them.
		b = append(b, "connection: Upgrade\r\nupgrade: "...)
		b = append(b, u.value...)
		b = append(b, "\r\n"...)
	}
	switch {
	case chunked:
		b = append(b, "transfer-encoding: chunked\r\n"...)
	case wholeLen > 0 || req.ContentLength > 0:
		n := int64(wholeLen)
		if req.ContentLength > 0 {
			n = req.ContentLength
		}
		b = append(b, "content-length: "...)
		b = strconv.AppendInt(b, n, 10)
		b = append(b, "\r\n"...)
	case req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch:
		b = append(b, "content-length: 0\r\n"...)
	}
	return append(b, "\r\n"...), nil
}

// appendUpstreamFields appends the header fields of uh as the
// router's http.Header held them (upstreamHead.httpHeader), with no
// http.Header in between: names in lower case, pseudo-headers,
// hop-by-hop fields, host and framing left out, an empty user-agent
// left out, x-forwarded-proto from :scheme when the pairs have none,
// and x-envoy-expected-rq-timeout-ms replacing the pairs' when the
// route has a timeout. Fields go in the pairs' order (an http.Header
// wrote names in map order; values of one name keep their order in
// both).
func appendUpstreamFields(b []byte, uh *upstreamHead) ([]byte, error) {
	const timeoutName = "x-envoy-expected-rq-timeout-ms"
	hasProto := false
	for _, p := range uh.pairs {
		if p.Key == "" || p.Key[0] == ':' {
			continue
		}
		start := len(b)
		b = appendLowerKey(b, p.Key)
		k := b[start:]
		if skipRequestField(k) || (uh.timeout > 0 && string(k) == timeoutName) ||
			(p.Value == "" && string(k) == "user-agent") {
			b = b[:start]
			continue
		}
		if !validFieldName(string(k)) {
			return b[:start], errors.New("invalid upstream request header name " + strconv.Quote(string(k)))
		}
		if !validFieldValue(p.Value) {
			return b[:start], errors.New("invalid value of upstream request header " + string(k))
		}
		hasProto = hasProto || string(k) == "x-forwarded-proto"
		b = append(b, ": "...)
		b = append(b, p.Value...)
		b = append(b, "\r\n"...)
	}
	if !hasProto {
		b = append(b, "x-forwarded-proto: "...)
		b = append(b, uh.scheme...)
		b = append(b, "\r\n"...)
	}
	if uh.timeout > 0 {
		b = append(b, timeoutName+": "...)
		b = strconv.AppendInt(b, uh.timeout.Milliseconds(), 10)
		b = append(b, "\r\n"...)
	}
	return b, nil
}

// appendLowerKey appends k with its ASCII letters in lower case: Envoy
// keeps header names lower-cased (LowerCaseString) and its HTTP/1
// codec writes them so.
// The map's keys are lower case already (filter.HeaderMap lowers them),
// so the name is copied whole and only a letter found upper case is
// changed in the copy.
func appendLowerKey(b []byte, k string) []byte {
	start := len(b)
	b = append(b, k...)
	for i := start; i < len(b); i++ {
		if c := b[i]; 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return b
}

// skipRequestField reports a lower-case field name the pool writes
// itself (host, framing) or that is hop-by-hop, te aside: what is left
// of it (mutateRequestHeaders: "trailers" or nothing) goes upstream, as
// from Envoy.
func skipRequestField(k []byte) bool {
	switch string(k) {
	case "host", "content-length", "transfer-encoding", "connection", "keep-alive",
		"proxy-connection", "upgrade", "trailer", "proxy-authenticate":
		return true
	}
	return false
}

// requestTarget is the request line's target: the router puts the
// client's :path in URL.Opaque, or (for a path starting with "//") in
// RawPath/Path and RawQuery (originFormURL).
func requestTarget(req *http.Request) string {
	u := req.URL
	if u.Opaque != "" {
		return u.Opaque
	}
	p := u.RawPath
	if p == "" {
		p = u.EscapedPath()
	}
	if p == "" {
		p = "/"
	}
	if u.RawQuery != "" || u.ForceQuery {
		return p + "?" + u.RawQuery
	}
	return p
}

func validFieldName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || c == ':' || c == '(' || c == ')' || c == ',' || c == '/' || c == ';' || c == '<' || c == '=' || c == '>' || c == '?' || c == '@' || c == '[' || c == '\\' || c == ']' || c == '{' || c == '}' || c == '"' {
			return false
		}
	}
	return true
}

func validFieldValue(v string) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
