package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http2"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/internal/http1"
)

// httpServer serves one connection manager's downstream connections:
// HTTP/1.1 with the strict codec of internal/http1, HTTP/2 (prior
// knowledge in plaintext, or negotiated by ALPN) with
// golang.org/x/net/http2. It owns the connection-level timeouts
// (idle_timeout, max_connection_duration, request_headers_timeout) and
// draining; the stream-level ones live in stream.go.
type httpServer struct {
	cm *connManager
	// Which protocols the connection manager's codec_type allows.
	http1, h2c, h2tls bool

	mu        sync.Mutex
	conns     map[*serverConn]struct{}
	listeners map[net.Listener]struct{}
	closed    atomic.Bool
	// serving counts running Serve loops.
	serving sync.WaitGroup
	// draining: keep-alives are off; connections close after their
	// current request (HTTP/2: GOAWAY).
	draining atomic.Bool
}

// newHTTPServer is the server of one HTTP connection manager. Over TLS,
// HTTP/2 is negotiated through ALPN; in plaintext, h2c with prior
// knowledge.
func (s *Server) newHTTPServer(cm *connManager, overTLS bool) *httpServer {
	hs := &httpServer{cm: cm, conns: map[*serverConn]struct{}{}, listeners: map[net.Listener]struct{}{}}
	switch cm.cfg.Codec {
	case config.CodecHTTP1:
		hs.http1 = true
	case config.CodecHTTP2:
		hs.h2c = true
		hs.h2tls = overTLS
	default:
		hs.http1, hs.h2c, hs.h2tls = true, true, overTLS
	}
	return hs
}

// Serve accepts connections from ln until it is closed. It returns
// http.ErrServerClosed after Shutdown or Close.
func (hs *httpServer) Serve(ln net.Listener) error {
	hs.mu.Lock()
	if hs.closed.Load() {
		hs.mu.Unlock()
		return http.ErrServerClosed
	}
	hs.listeners[ln] = struct{}{}
	hs.serving.Add(1)
	hs.mu.Unlock()
	defer func() {
		hs.mu.Lock()
		delete(hs.listeners, ln)
		hs.mu.Unlock()
		hs.serving.Done()
	}()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if hs.closed.Load() {
				return http.ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors and the like: back off, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			hs.cm.log.Warn("accept failed", "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		// Tracked before this loop accepts again, so that Shutdown, which
		// waits for the loop to end, also waits for this connection.
		sc := hs.track(c)
		go sc.serve()
	}
}

// SetKeepAlivesEnabled(false) starts draining: idle HTTP/1 connections
// close, busy ones answer their current request with "connection:
// close", HTTP/2 connections get a GOAWAY.
func (hs *httpServer) SetKeepAlivesEnabled(on bool) {
	if on {
		hs.draining.Store(false)
		return
	}
	hs.draining.Store(true)
	hs.mu.Lock()
	defer hs.mu.Unlock()
	for sc := range hs.conns {
		sc.drain()
	}
}

// Shutdown stops accepting, drains, and waits for every connection to
// end or ctx to be done.
func (hs *httpServer) Shutdown(ctx context.Context) error {
	hs.mu.Lock()
	hs.closed.Store(true)
	for ln := range hs.listeners {
		_ = ln.Close()
	}
	hs.mu.Unlock()
	hs.serving.Wait() // every accepted connection is tracked
	hs.SetKeepAlivesEnabled(false)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		hs.mu.Lock()
		n := len(hs.conns)
		hs.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Close closes every listener and connection at once.
func (hs *httpServer) Close() error {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.closed.Store(true)
	for ln := range hs.listeners {
		_ = ln.Close()
	}
	for sc := range hs.conns {
		_ = sc.rwc.Close()
	}
	return nil
}

// track registers an accepted connection. A connection accepted as the
// server shuts down is still served (its request gets "connection:
// close"): it was accepted, so the client expects an answer.
func (hs *httpServer) track(c net.Conn) *serverConn {
	sc := &serverConn{hs: hs, cm: hs.cm, rwc: c, started: time.Now()}
	hs.mu.Lock()
	hs.conns[sc] = struct{}{}
	hs.mu.Unlock()
	hs.cm.connOpened()
	return sc
}

// serve serves one connection to its end.
func (sc *serverConn) serve() {
	hs, cm, c := sc.hs, sc.cm, sc.rwc
	defer func() {
		_ = c.Close()
		hs.mu.Lock()
		delete(hs.conns, sc)
		hs.mu.Unlock()
		cm.connClosed()
	}()
	sc.ctx = cm.connContext(context.Background(), c)
	if d := cm.cfg.MaxConnectionDuration.D(); d > 0 {
		sc.deadline = sc.started.Add(d)
	}
	if tc, ok := c.(*tls.Conn); ok && tc.ConnectionState().NegotiatedProtocol == "h2" {
		if hs.h2tls {
			sc.serveHTTP2(c)
		}
		return
	}
	sc.serveHTTP1()
}

// serverConn is one downstream connection.
type serverConn struct {
	hs  *httpServer
	cm  *connManager
	rwc net.Conn
	ctx context.Context
	br  *bufio.Reader
	// watch reads ahead while a stream runs (close detection) and its
	// read becomes the wait for the next request.
	watch closeWatch
	bw    *bufio.Writer
	// wmu serializes writes: responses (the stream goroutine) and
	// "100 Continue" (whichever goroutine reads the body first).
	wmu sync.Mutex

	started time.Time
	// deadline is when max_connection_duration runs out (zero: never).
	deadline time.Time
	// drainDeadline is when a connection draining for drain_timeout
	// closes (connDraining).
	drainDeadline time.Time

	// mu guards waiting, first and h2 against drain, and orders every
	// change of the connection's read deadline once a request is read
	// (readStale).
	mu sync.Mutex
	// readArmed: the wait or the head just read set a read deadline
	// (idle_timeout, max_connection_duration, a head timeout).
	// readStale: that deadline no longer applies (a request is running)
	// but is left armed; the next read of the connection through sc.br
	// (h1ConnReader: the body, the close watch, the next head) clears it
	// first, unless the next wait sets its own. Clearing it as soon as
	// the head was read cost a runtime timer change per request, and
	// most requests (a GET, a body already buffered with the head) make
	// no other read before the next wait sets a new deadline anyway. A
	// read deadline acts only on reads, so a deadline left armed cannot
	// cut a running request that does not read: idle_timeout never ends
	// a request (as in Envoy). Changes of readStale (and of the deadline
	// while it may be set) are made under mu (setReadDeadline).
	readArmed bool
	readStale atomic.Bool
	// raw is the plain TCP socket of the connection (nil: TLS or a
	// wrapped connection); held: the last response's final bytes wait in
	// bw for the next wait to send them (awaitRequest, await_unix.go);
	// noHold: this connection no longer holds them (a pipelining client).
	raw        syscall.RawConn
	held       bool
	noHold     bool
	awaitFn    func(fd uintptr) bool
	awaitWrote bool
	awaitErr   error
	// waiting: between requests, blocked on the next one's first byte;
	// first: no request served yet.
	waiting, first bool
	h2             *http.Server // the HTTP/2 connection's base server, for GOAWAY
	// maxDurationReached: max_connection_duration ran out and the
	// connection is closing for it (counted once).
	maxDurationReached atomic.Bool
	// connDraining: idle_timeout or max_connection_duration ran out and
	// the connection drains for drain_timeout (h1close.go): a request
	// in that time is answered with "connection: close".
	connDraining atomic.Bool
	// respFields holds the current response's fields (h1Response),
	// reused from one response to the next.
	respFields []filter.Pair
	// resp is the current HTTP/1 response (serveRequest).
	resp h1Response
	// reqBody and bodyReader are the current request's body, reused
	// from one request to the next like resp: a request whose body was
	// not read to its end closes the connection, so no reader of a
	// previous body is left when the next request starts.
	reqBody    h1Body
	bodyReader http1.BodyReader
	// reqCancel cancels the current request (proxy/reqcancel.go).
	reqCancel requestCancel
	// idleTimer is the stream_idle_timeout timer of the connection's
	// streams, made with the first and reset for each next (owned by
	// the stream goroutine); idleStream, under idleMu, is the stream it
	// is armed for (proxy/stream_timeouts.go).
	idleTimer  *time.Timer
	idleMu     sync.Mutex
	idleStream *stream
	// spare is the stream of the connection's last request, cleared,
	// when recycle found nothing else may hold it: the next request's
	// (recycle.go). Only the connection's goroutine touches it.
	spare *stream
}

// drain closes an idle HTTP/1 connection (waking its wait for the next
// request) or sends an HTTP/2 connection's GOAWAY; a busy HTTP/1
// connection sees draining when it writes its response. A connection
// that has not sent its first request yet is left to send it, unless
// the server is shutting down.
func (sc *serverConn) drain() {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.h2 != nil {
		go sc.h2.Shutdown(context.Background()) //nolint:errcheck // only starts the GOAWAY
		return
	}
	if sc.waiting && (!sc.first || sc.hs.isClosed()) {
		_ = sc.rwc.SetReadDeadline(aLongTimeAgo)
	}
}

func (hs *httpServer) isClosed() bool { return hs.closed.Load() }

var aLongTimeAgo = time.Unix(1, 0)

// shouldClose reports whether the connection must close after the
// current response. Closing for max_connection_duration is counted
// here, before the client can see the connection end.
func (sc *serverConn) shouldClose() bool {
	if sc.hs.draining.Load() || sc.connDraining.Load() {
		return true
	}
	return sc.durationReached()
}

// durationReached reports whether max_connection_duration ran out, and
// counts it the first time.
func (sc *serverConn) durationReached() bool {
	if sc.deadline.IsZero() || time.Now().Before(sc.deadline) {
		return false
	}
	if sc.maxDurationReached.CompareAndSwap(false, true) {
		sc.cm.stats.cxMaxDuration.Inc()
	}
	return true
}

// setReadDeadline sets the connection's read deadline, which no stale
// deadline's clearing can then undo (readStale).
func (sc *serverConn) setReadDeadline(t time.Time) {
	sc.mu.Lock()
	sc.readStale.Store(false)
	_ = sc.rwc.SetReadDeadline(t)
	sc.mu.Unlock()
}

// clearStaleReadDeadline clears a read deadline left armed after its
// head was read (readStale), before the connection is read again.
func (sc *serverConn) clearStaleReadDeadline() {
	sc.mu.Lock()
	if sc.readStale.Load() {
		sc.readStale.Store(false)
		_ = sc.rwc.SetReadDeadline(time.Time{})
	}
	sc.mu.Unlock()
}

// h1ConnReader is what an HTTP/1 connection's reader (sc.br) reads
// from: the connection, its stale read deadline cleared first.
type h1ConnReader struct{ sc *serverConn }

func (r h1ConnReader) Read(p []byte) (int, error) {
	if r.sc.readStale.Load() {
		r.sc.clearStaleReadDeadline()
	}
	return r.sc.rwc.Read(p)
}

// WriteTo keeps the connection's own WriteTo (a TCP connection's
// splice) for bufio.Reader.WriteTo (an upgrade's tunnel).
func (r h1ConnReader) WriteTo(w io.Writer) (int64, error) {
	if r.sc.readStale.Load() {
		r.sc.clearStaleReadDeadline()
	}
	if wt, ok := r.sc.rwc.(io.WriterTo); ok {
		return wt.WriteTo(w)
	}
	return io.Copy(w, struct{ io.Reader }{r.sc.rwc})
}

// http2Preface is what an HTTP/2 client sends first (RFC 9113 §3.4).
const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

func (sc *serverConn) serveHTTP1() {
	cm := sc.cm
	sc.br = bufio.NewReaderSize(h1ConnReader{sc}, 4<<10)
	sc.watch.br = sc.br
	defer sc.watch.stop()
	sc.bw = bufio.NewWriterSize(sc.rwc, 4<<10)
	if tc, ok := sc.rwc.(*net.TCPConn); ok {
		sc.raw, _ = tc.SyscallConn()
		sc.awaitFn = sc.await
	}
	lim := http1.Limits{MaxHeaderBytes: int(cm.cfg.MaxRequestHeadersKB) * 1024, MaxHeaders: cm.maxHeaders()}
	var head http1.Request
	for first := true; ; first = false {
		if !sc.waitForRequest(first) {
			return
		}
		if first && sc.hs.h2c && sc.sawHTTP2Preface() {
			sc.serveHTTP2(&prefixConn{Conn: sc.rwc, r: io.MultiReader(sc.br, sc.rwc)})
			return
		}
		if !sc.hs.http1 {
			return // an HTTP/2-only listener: nothing to say in HTTP/1
		}
		kind := headNoTimeout
		if !headBuffered(sc.br) {
			kind = sc.setHeadDeadline()
		}
		err := http1.ReadRequest(sc.br, lim, &head)
		if err != nil {
			sc.setReadDeadline(time.Time{})
			sc.rejectHead(err, kind)
			return
		}
		if sc.readArmed {
			// Cleared by the next read, if one comes before the next
			// wait (readStale).
			sc.readArmed = false
			sc.readStale.Store(true)
		}
		if !sc.serveRequest(&head, lim) {
			return
		}
	}
}

// waitForRequest waits for the first byte of the next request, for
// idle_timeout or until max_connection_duration or draining end the
// connection. false: close it. When idle_timeout or
// max_connection_duration runs out on a connection that served a
// request, it drains for drain_timeout first (h1close.go).
func (sc *serverConn) waitForRequest(first bool) bool {
	if sc.held {
		// Whatever way the wait ends, the response held goes out first
		// (the await below sends it itself, and clears held).
		defer sc.flushHeld()
	}
	if !first && sc.shouldClose() && !sc.connDraining.Load() {
		// A connection that never served a request serves one even while
		// draining: it was accepted (it may be a request of this proxy's
		// own, in flight, to one of its listeners).
		return false
	}
	if !sc.watch.busy() && sc.br.Buffered() > 0 {
		return true // pipelined: already here
	}
	var deadline time.Time
	now := monoNow()
	if d := sc.cm.cfg.IdleTimeout.D(); d > 0 {
		// A read deadline: the monotonic clock alone (clock.go).
		deadline = now.Add(d)
	}
	if !sc.deadline.IsZero() && (deadline.IsZero() || sc.deadline.Before(deadline)) {
		deadline = sc.deadline
	}
	if sc.connDraining.Load() {
		deadline = sc.drainDeadline
	}
	// The held response is sent by the await (awaitRequest), whose wait
	// ends by awaitLimit at the latest.
	await := sc.held && !sc.watch.busy() && (deadline.IsZero() || deadline.Sub(now) > 2*awaitLimit)
	waitUntil := deadline
	if await {
		waitUntil = now.Add(awaitLimit)
	}
	sc.mu.Lock()
	sc.waiting, sc.first = true, first
	sc.readStale.Store(false)
	_ = sc.rwc.SetReadDeadline(waitUntil)
	sc.mu.Unlock()
	sc.readArmed = !waitUntil.IsZero()
	if sc.hs.draining.Load() && (!first || sc.hs.isClosed()) {
		// Drain began before waiting was set: its wake-up did not reach us.
		return false
	}
	var watched bool
	var err error
	if await {
		err = sc.awaitRequest()
		if err != nil && awaitLimitRanOut(err, deadline) && !sc.hs.draining.Load() {
			// awaitLimit ran out, not the connection's own deadline:
			// the client is idle, or it pipelined a request that came
			// before the response went out and raised no wake-up (see
			// awaitRequest). Bytes already waiting tell the second: this
			// connection reads as usual from then on.
			sc.mu.Lock()
			if !(sc.hs.draining.Load() && (!first || sc.hs.isClosed())) {
				// Not over a drain's wake-up (drain sets it under mu).
				_ = sc.rwc.SetReadDeadline(deadline)
			}
			sc.mu.Unlock()
			sc.readArmed = !deadline.IsZero()
			sc.noHold = bytesWaiting(sc.raw)
			if awaitLimitHook != nil {
				awaitLimitHook(sc.rwc.RemoteAddr().String(), sc.noHold)
			}
			err = nil
		}
		if err == nil {
			_, err = sc.br.Peek(1)
		}
	} else {
		if sc.held {
			sc.flushHeld() // before the watch's read, which waits for the client
		}
		// The watch's read, when one is pending, is this wait: its bytes
		// land in the reader; else read here.
		watched, err = sc.watch.wait()
		if !watched {
			_, err = sc.br.Peek(1)
		}
	}
	sc.mu.Lock()
	sc.waiting = false
	sc.mu.Unlock()
	if err == nil {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && !(sc.hs.draining.Load() && !first) && !sc.connDraining.Load() {
		if !sc.durationReached() {
			sc.cm.stats.cxIdleTimeout.Inc()
		}
		if d := sc.cm.cfg.DrainTime(); !first && d > 0 {
			// Envoy's drain sequence: HTTP/1 has no notice to send, so
			// the connection stays open for drain_timeout and then
			// closes (with delayed_close_timeout).
			sc.drainDeadline = time.Now().Add(d)
			sc.connDraining.Store(true)
			if sc.waitForRequest(first) {
				return true
			}
			if !sc.hs.draining.Load() {
				sc.delayedClose()
			}
			return false
		}
	}
	return false
}

// sawHTTP2Preface reports whether the connection starts with the
// HTTP/2 preface, reading no further than the bytes still matching it
// (an HTTP/1 request line differs within its first bytes).
func (sc *serverConn) sawHTTP2Preface() bool {
	sc.setReadDeadline(time.Now().Add(handshakeTimeout))
	defer sc.setReadDeadline(time.Time{})
	for n := 1; n <= len(http2Preface); n++ {
		b, err := sc.br.Peek(n)
		if err != nil || b[n-1] != http2Preface[n-1] {
			return false
		}
	}
	return true
}

// headBuffered reports whether a whole request head is in br's buffer
// (its blank line is): reading it cannot block, so it needs no deadline
// (one runtime-timer change and a clock read fewer per request; a
// keep-alive client's head nearly always arrives in one segment). The
// first CRLFCRLF ends a head; a head the codec would refuse is refused
// all the same.
func headBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	return bytes.Contains(b, crlfcrlf)
}

var crlfcrlf = []byte("\r\n\r\n")

// Which timeout bounds the reading of a request head.
const (
	headNoTimeout = iota
	headHeadersTimeout
	headStreamIdle
	headRequestTimeout
)

// setHeadDeadline bounds the reading of a request's head, from its first
// byte, by the shortest of request_headers_timeout, stream_idle_timeout
// and request_timeout (Envoy's stream, and its timers, begin with the
// request's first byte). It returns which one that is.
func (sc *serverConn) setHeadDeadline() int {
	cfg := sc.cm.cfg
	kind, shortest := headNoTimeout, time.Duration(0)
	for _, t := range []struct {
		kind int
		d    time.Duration
	}{
		{headHeadersTimeout, cfg.RequestHeadersTimeout.D()},
		{headStreamIdle, cfg.StreamIdleTimeout.D()},
		{headRequestTimeout, cfg.RequestTimeout.D()},
	} {
		if t.d > 0 && (shortest == 0 || t.d < shortest) {
			kind, shortest = t.kind, t.d
		}
	}
	if shortest > 0 {
		sc.setReadDeadline(time.Now().Add(shortest))
		sc.readArmed = true
	}
	return kind
}

// rejectHead answers a request head that could not be read: a codec
// refusal gets its status, a head cut short by a timeout gets 408, and
// the connection closes either way.
func (sc *serverConn) rejectHead(err error, kind int) {
	cm := sc.cm
	var ce *http1.Error
	var ne net.Error
	switch {
	case errors.As(err, &ce):
		cm.stats.cxProtocolError.Inc()
		sc.cm.log.Debug("request refused", "status", ce.Status, "details", ce.Details, "reason", ce.Reason)
		sc.writeSimpleResponse(ce.Status, http.StatusText(ce.Status), ce.Details, nil)
		sc.delayedClose() // h1close.go
	case errors.As(err, &ne) && ne.Timeout() && !errors.Is(err, http1.ErrNoRequest):
		switch kind {
		case headHeadersTimeout:
			cm.stats.headersTimeout.Inc()
			sc.writeSimpleResponse(http.StatusRequestTimeout, "request timeout", "request_header_timeout", nil)
		case headStreamIdle:
			cm.stats.rqIdleTimeout.Inc()
			sc.writeSimpleResponse(http.StatusRequestTimeout, "stream timeout", "stream_idle_timeout", nil)
		case headRequestTimeout:
			cm.stats.rqTimeout.Inc()
			sc.writeSimpleResponse(http.StatusRequestTimeout, "request timeout", "request_overall_timeout", nil)
		}
	}
}

// writeSimpleResponse answers outside any stream (the request could not
// be read, or is refused before a stream begins), closing the
// connection, and counts the reply. local_reply_config applies, with the
// request's headers when they could be read (req; nil otherwise).
func (sc *serverConn) writeSimpleResponse(status int, body, details string, req *filter.HeaderMap) {
	var headers []filter.Pair
	if lr := sc.cm.localReplies; lr != nil {
		info := filter.StreamInfo{StartTime: time.Now(), ResponseCodeDetails: details, Protocol: "HTTP/1.1"}
		var b []byte
		status, b, headers = lr.rewrite(&info, req, status, []byte(body), nil)
		body = string(b)
	}
	sc.cm.countLocalReply(status)
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	_ = sc.rwc.SetWriteDeadline(time.Now().Add(time.Second))
	b := sc.bw.AvailableBuffer()
	b = append(b, "HTTP/1.1 "...)
	b = appendStatus(b, status)
	b = append(b, "\r\ncontent-length: "...)
	b = appendInt(b, int64(len(body)))
	b = append(b, "\r\n"...)
	if headers == nil && body != "" {
		b = append(b, "content-type: text/plain\r\n"...)
	}
	server := sc.cm.codecReplyServer(headers)
	for _, p := range headers {
		if !isHopByHop(p.Key) && (p.Key != "server" || server == "") {
			b = appendField(b, p.Key, p.Value)
		}
	}
	// What Envoy's connection manager puts on every response it encodes.
	b = appendField(b, "date", httpDate())
	if server != "" {
		b = appendField(b, "server", server)
	}
	if via := sc.cm.cfg.Via; via != "" {
		b = appendField(b, "via", via)
	}
	b = append(b, "connection: close\r\n\r\n"...)
	b = append(b, body...)
	_, _ = sc.bw.Write(b)
	_ = sc.bw.Flush()
}

// serveRequest runs one HTTP/1 request through the connection manager.
// false: close the connection.
func (sc *serverConn) serveRequest(head *http1.Request, lim http1.Limits) bool {
	cm := sc.cm
	if head.Minor == 0 && !cm.cfg.AcceptHTTP10 {
		// Envoy's default: HTTP/1.0 is refused unless configured.
		cm.stats.cxProtocolError.Inc()
		sc.writeSimpleResponse(http.StatusUpgradeRequired, http.StatusText(http.StatusUpgradeRequired), http1.DetailsVersionNotSupported, h1RequestHeaderMap(head, sc.cm.tlsInfo != nil))
		sc.delayedClose()
		return false
	}
	if head.Minor == 0 && head.Authority == "" {
		head.Authority = cm.cfg.DefaultHostForHTTP10
	}
	if head.Authority == "" {
		// Envoy requires a host for every request (HTTP/1.1 was checked
		// by the codec).
		cm.log.Debug("request refused", "status", http.StatusBadRequest, "details", http1.DetailsMissingHost)
		sc.writeSimpleResponse(http.StatusBadRequest, http.StatusText(http.StatusBadRequest), http1.DetailsMissingHost, h1RequestHeaderMap(head, sc.cm.tlsInfo != nil))
		sc.delayedClose()
		return false
	}
	// The stream is made here (or is the connection's previous one,
	// recycled: recycle.go), built by the connection manager
	// (newStream): the request's context and header map live in it.
	s := sc.takeStream()
	rc := &s.reqCtx
	rc.init(sc.ctx)
	rc.headerKeys = cm.requestKeys(head) // headerkey.go
	var ctx context.Context = rc
	cancel := sc.reqCancel.reset(rc)
	defer cancel()
	r := h1DownstreamRequest(head)
	// The connection's one response writer, reset for each request: a
	// request runs to its end (or the connection closes) before the
	// next is read, so none outlives its successor's start.
	sc.resp = h1Response{sc: sc, method: head.Method, head: head, trailerKeys: sc.resp.trailerKeys[:0]}
	w := &sc.resp
	var body *h1Body
	if head.ContentLength != 0 {
		sc.bodyReader.ResetForRequest(sc.br, head, lim)
		sc.reqBody = h1Body{sc: sc, w: w, r: &sc.bodyReader, trailer: r.Trailer, cancel: cancel, expectContinue: head.ExpectContinue}
		body = &sc.reqBody
		r.Body = body
	} else {
		sc.startBackgroundRead(cancel)
	}
	w.body = body
	// A protocol switch (an Upgrade or a CONNECT) rides in the context;
	// the stream refuses it with 403 unless upgrade_configs enable it
	// for the request's route (upgrade.go).
	up := newUpgrade(head.Method, head.Upgrade)
	if up != nil {
		w.upgrade = head.Upgrade
		rc.upgrade = up
		defer up.end() // after the splice
	}
	sc.runHandler(w, r, ctx, cancel, s, s.h1RequestHeaders(head, ctxOverTLS(ctx)))
	aborted := w.aborted
	sc.watch.detach()
	if up != nil && up.tunnelled() {
		// The upstream switched protocols: relay its 101 (unless the
		// stream was reset or a filter answered otherwise) and splice;
		// the connection ends with it.
		if !aborted && up.switched(w.status) {
			w.finish()
			sc.splice(up)
		} else if !aborted {
			// A filter answered otherwise: that answer goes out, and
			// the connection ends with it.
			w.closeAfter = true
			w.finish()
		}
		up.release()
		return false
	}
	if up != nil && up.switched(w.status) {
		// A 101 (or a CONNECT's 2xx) from a transport that cannot hand
		// its connection over: nothing can follow it on this connection.
		w.finish()
		return false
	}
	if up != nil && up.connect {
		// A CONNECT answered without a tunnel: what the client sent
		// after its head is not a request (Envoy's codec takes it as
		// the CONNECT's payload), so the connection ends here.
		w.closeAfter = true
	}
	if aborted {
		// The stream was reset: the client sees the connection end
		// (a chunked response stays unterminated).
		return false
	}
	sc.held = w.end(sc.raw != nil && !sc.noHold && (body == nil || body.done.Load()))
	if w.closeAfter || body != nil && !body.done.Load() {
		if body != nil && !body.done.Load() {
			sc.setReadDeadline(time.Time{}) // lingerClose sets its own
			lingerClose(sc.rwc)
		} else {
			sc.delayedClose() // h1close.go
		}
		return false
	}
	if !aborted {
		sc.recycle(s)
	}
	return true
}

// ctxOverTLS reports whether the connection of a request context came
// over TLS (its connInfo knows, also behind network filters).
func ctxOverTLS(ctx context.Context) bool {
	ci, _ := ctx.Value(connInfoKey{}).(*connInfo)
	return ci != nil && ci.tls != nil
}

func isH2CUpgrade(v string) bool {
	// The codec drops an h2c upgrade (Envoy does not support it) and
	// serves the request as HTTP/1.1.
	return len(v) == 3 && (v[0]|0x20) == 'h' && v[1] == '2' && (v[2]|0x20) == 'c'
}

// runHandler runs the connection manager, catching the panic with which
// a stream reset aborts the exchange.
func (sc *serverConn) runHandler(w *h1Response, r downstreamRequest, ctx context.Context, cancel context.CancelFunc, s *stream, h *filter.HeaderMap) {
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				sc.cm.log.Error("HTTP handler panicked", "panic", p)
			}
			w.aborted = true
		}
	}()
	sc.cm.serveStream(s, w, r, ctx, cancel, h)
}

// startBackgroundRead watches the connection for the client going away
// while its request is served (the request is read in full): once the
// request has run watchDelay, the connection's watch reads ahead, and
// on EOF or error cancels the request's context. What it reads (a
// pipelined or the next request) is kept in the connection's reader.
func (sc *serverConn) startBackgroundRead(cancel context.CancelFunc) {
	sc.watch.start(cancel)
}

// closeWatch is the connection's reader goroutine: one per connection
// (started with the first request that runs watchDelay), which reads
// ahead into the connection's bufio.Reader while a stream runs, so that
// the client closing the connection cancels the stream. The read it
// starts is not aborted when the response is done: it stays pending as
// the wait for the next request, whose first bytes it delivers into the
// reader.
//
// The bufio.Reader is the watch's alone between arm and the result's
// take (wait): the stream never reads from it once its request is read
// in full, and the connection's goroutine takes the result before it
// reads again, so the channel orders every access. Whether arm may
// still begin a read is decided under mu: busy and wait end the wish
// (want) before the connection's goroutine reads.
type closeWatch struct {
	br   *bufio.Reader
	wake chan struct{} // one read per token; closed when the connection ends
	done chan error    // the read's result (nil: bytes are buffered)

	mu sync.Mutex
	// pending: a read was started and its result is not taken yet.
	pending bool
	// started: the goroutine runs.
	started bool
	// cancel is the watched request's, until the response is done.
	cancel context.CancelFunc
	// gone: the watched read failed while a request was watched (the
	// client went away); reset by start.
	gone bool
	// want: start asked for a read that arm has not begun yet; timer
	// runs arm (made with the first start, reset by each next).
	want  bool
	timer *time.Timer
	// stopped: the connection is closing; no read starts.
	stopped bool
}

// start asks for a watched read unless one is pending or bytes are
// already buffered (a pipelined request: the client is alive). Any
// goroutine may call it (the body's reader at its end). The read starts
// only once the request has run for watchDelay (arm): most requests
// end before, and the connection's goroutine then reads the next one
// itself, with no hand-off between two goroutines and no wake-up of
// the watch's (two goroutine switches per request). A client that goes
// away sooner is seen when its response is written, or when the next
// read finds the connection closed.
func (w *closeWatch) start(cancel context.CancelFunc) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pending || w.stopped || w.br.Buffered() > 0 {
		return
	}
	w.cancel = cancel
	w.gone = false
	w.want = true
	if w.timer == nil {
		w.timer = time.AfterFunc(watchDelay, w.arm)
		return
	}
	w.timer.Reset(watchDelay)
}

// watchDelay is how long a request runs before the close watch reads.
const watchDelay = 20 * time.Millisecond

// arm starts the watched read start asked for, if it is still wanted
// (the request has not ended).
func (w *closeWatch) arm() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.want || w.pending || w.stopped {
		return
	}
	w.want = false
	w.pending = true
	if !w.started {
		w.started = true
		w.wake = make(chan struct{}, 1)
		w.done = make(chan error, 1)
		go w.run(w.br, w.wake, w.done)
	}
	w.wake <- struct{}{}
}

func (w *closeWatch) run(br *bufio.Reader, wake <-chan struct{}, done chan<- error) {
	for range wake {
		_, err := br.Peek(1)
		w.mu.Lock()
		if err != nil && w.cancel != nil {
			// The client closed (or broke) the connection mid-request.
			w.gone = true
			w.cancel()
		}
		w.cancel = nil
		w.mu.Unlock()
		done <- err
	}
}

// clientGone reports whether the client went away while the current
// request was watched.
func (w *closeWatch) clientGone() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gone
}

// detach ends the watch's hold on the request (its response is done): a
// later error no longer cancels it. The read stays pending.
func (w *closeWatch) detach() {
	w.mu.Lock()
	w.cancel = nil
	w.want = false
	w.mu.Unlock()
}

// wait takes the pending read's result, waiting for it (the connection's
// goroutine, before it reads again). watched: there was a pending read;
// err is its error, nil when bytes are buffered.
func (w *closeWatch) wait() (watched bool, err error) {
	w.mu.Lock()
	p := w.pending
	w.want = false // a read not begun is the caller's to make
	w.mu.Unlock()
	if !p {
		return false, nil
	}
	err = <-w.done
	w.mu.Lock()
	w.pending = false
	w.cancel = nil
	w.mu.Unlock()
	return true, err
}

// busy reports whether a read is pending (the reader is not the
// connection goroutine's to look at).
func (w *closeWatch) busy() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.want = false // the connection's goroutine is about to read
	return w.pending
}

// stop ends the goroutine once its read, if any, returns (the
// connection is closing).
func (w *closeWatch) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped, w.want = true, false
	if w.timer != nil {
		w.timer.Stop()
	}
	if w.started {
		close(w.wake)
		w.started = false
	}
}

// prefixConn is a connection whose first bytes were already read into a
// buffer: reads drain r first.
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// serveHTTP2 serves an HTTP/2 connection with x/net/http2. Each
// connection gets its own http2.Server configured on its own
// http.Server, so that draining or max_connection_duration can send
// this connection alone its GOAWAY.
func (sc *serverConn) serveHTTP2(c net.Conn) {
	cm := sc.cm
	base := &http.Server{
		MaxHeaderBytes: int(cm.cfg.MaxRequestHeadersKB) * 1024,
		ErrorLog:       slog.NewLogLogger(cm.log.Handler(), slog.LevelDebug),
	}
	h2 := &http2.Server{IdleTimeout: cm.cfg.IdleTimeout.D()}
	setHTTP2Options(h2, &cm.cfg.HTTP2)
	if err := http2.ConfigureServer(base, h2); err != nil {
		cm.log.Error("HTTP/2 server configuration", "err", err)
		return
	}
	sc.mu.Lock()
	sc.h2 = base
	sc.mu.Unlock()
	if sc.hs.draining.Load() {
		go base.Shutdown(context.Background()) //nolint:errcheck
	}
	if !sc.deadline.IsZero() {
		t := time.AfterFunc(time.Until(sc.deadline), func() {
			sc.durationReached()
			_ = base.Shutdown(context.Background())
		})
		defer t.Stop()
	}
	hc := &h2Conn{raw: c}
	if pc, ok := c.(*prefixConn); ok {
		hc.raw = pc.Conn // its prefix is read-side only
	}
	if extendedConnect && !cm.cfg.HTTP2.AllowConnect {
		hc.xc = &withoutConnectProtocol{Conn: c} // xconnect.go
		c = hc.xc
	}
	hc.Conn = &continuationGuard{Conn: c, max: maxContinuations(base.MaxHeaderBytes), onViolation: cm.stats.cxProtocolError.Inc, prefaceLeft: len(http2Preface)}
	h2.ServeConn(hc, &http2.ServeConnOpts{Context: sc.ctx, BaseConfig: base, Handler: cm})
}

// h2Conn is the connection x/net/http2 serves: reads (and everything
// but writes) go through the read-side wrappers (continuationGuard, a
// prefixConn's buffered preface), writes straight to the connection
// once withoutConnectProtocol, if any, has rewritten the preface's
// SETTINGS. x/net writes each response's HEADERS and each flush on a
// goroutine of its own, which starts with a small stack: every wrapper
// frame on its way to the socket made it more likely to grow (a stack
// copy, a few µs) on every response.
type h2Conn struct {
	net.Conn
	raw net.Conn
	xc  *withoutConnectProtocol // nil when the SETTINGS are not rewritten
}

func (c *h2Conn) Write(p []byte) (int, error) {
	if c.xc != nil && !c.xc.done {
		return c.Conn.Write(p)
	}
	return c.raw.Write(p)
}

// setHTTP2Options applies the connection manager's
// http2_protocol_options; a zero field keeps x/net/http2's default.
func setHTTP2Options(h2 *http2.Server, o *config.HTTP2Options) {
	h2.MaxConcurrentStreams = o.MaxConcurrentStreams
	h2.MaxUploadBufferPerStream = int32(o.InitialStreamWindowSize)
	h2.MaxUploadBufferPerConnection = int32(o.InitialConnectionWindowSize)
	h2.MaxDecoderHeaderTableSize = o.HpackTableSize
	h2.MaxEncoderHeaderTableSize = o.HpackTableSize
	h2.ReadIdleTimeout = o.KeepaliveInterval.D()
	h2.PingTimeout = o.KeepaliveTimeout.D()
}

// maxContinuations bounds the CONTINUATION frames of one header block:
// at least nghttp2's default of 8, and enough for a header block of the
// largest allowed size in frames of the smallest maximum size (16 KiB).
func maxContinuations(maxHeaderBytes int) int {
	return max(8, maxHeaderBytes/(16<<10)+2)
}

// continuationGuard watches the frames an HTTP/2 client sends and ends
// the connection when a header block runs on for more CONTINUATION
// frames than allowed: x/net/http2 bounds a header block's bytes, but
// empty CONTINUATION frames add none and would be read forever.
type continuationGuard struct {
	net.Conn
	max         int
	onViolation func()

	prefaceLeft int // preface bytes still to pass
	hdr         [9]byte
	hdrLen      int   // bytes of the current frame header seen
	payloadLeft int64 // bytes of the current frame's payload still to pass
	inBlock     bool  // a header block is open (no END_HEADERS yet)
	count       int   // CONTINUATION frames in the open block
}

var errTooManyContinuations = errors.New("http2: too many CONTINUATION frames in a header block")

func (g *continuationGuard) Read(p []byte) (int, error) {
	n, err := g.Conn.Read(p)
	if n > 0 && !g.scan(p[:n]) {
		if g.onViolation != nil {
			g.onViolation()
		}
		return 0, errTooManyContinuations
	}
	return n, err
}

// scan follows the frame boundaries through b; false on a violation.
func (g *continuationGuard) scan(b []byte) bool {
	for len(b) > 0 {
		switch {
		case g.prefaceLeft > 0:
			k := min(g.prefaceLeft, len(b))
			g.prefaceLeft -= k
			b = b[k:]
		case g.payloadLeft > 0:
			k := min(g.payloadLeft, int64(len(b)))
			g.payloadLeft -= k
			b = b[k:]
		default:
			k := copy(g.hdr[g.hdrLen:], b)
			g.hdrLen += k
			b = b[k:]
			if g.hdrLen < len(g.hdr) {
				continue
			}
			g.hdrLen = 0
			length := int64(g.hdr[0])<<16 | int64(g.hdr[1])<<8 | int64(g.hdr[2])
			typ, flags := http2.FrameType(g.hdr[3]), http2.Flags(g.hdr[4])
			g.payloadLeft = length
			switch typ {
			case http2.FrameHeaders, http2.FramePushPromise:
				g.inBlock = !flags.Has(http2.FlagHeadersEndHeaders)
				g.count = 0
			case http2.FrameContinuation:
				g.count++
				if g.count > g.max {
					return false
				}
				if flags.Has(http2.FlagContinuationEndHeaders) {
					g.inBlock = false
				}
			}
		}
	}
	return true
}
