package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/wasmproxy/wasmproxy/accesslog"
	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/internal/filterchain"
	"github.com/wasmproxy/wasmproxy/stats"
)

// tcpProxy is one filter chain's envoy.filters.network.tcp_proxy and the
// network filters ahead of it. Each accepted connection becomes a
// tcpSession.
type tcpProxy struct {
	srv       *Server
	listener  *config.Listener
	chainName string
	cfg       *config.TCPProxy
	factories []filter.NetworkFactory
	// bufferLimit is the listener's per_connection_buffer_limit_bytes:
	// over it, reading from the side that fills the buffer stops.
	bufferLimit int
	log         *slog.Logger
	stats       tcpStats
	upStats     upstreamTCPStats
	lstats      *listenerStats
	// local, when set, is the terminal instead of a cluster: the network
	// filters run ahead of the chain's HTTP connection manager, which
	// local connects the session to (hcm_network.go).
	local func(s *tcpSession) (net.Conn, error)
	// accessLogs write one line per finished connection (access_log).
	accessLogs accesslog.Loggers

	mu       sync.Mutex
	sessions map[*tcpSession]struct{}
}

// tcpStats are Envoy's tcp.<stat_prefix>.* counters.
type tcpStats struct {
	cxTotal        *stats.Counter
	noRoute        *stats.Counter
	rxBytes        *stats.Counter
	txBytes        *stats.Counter
	idleTimeout    *stats.Counter
	pausedReading  *stats.Counter
	resumedReading *stats.Counter
}

// upstreamTCPStats are the cluster.<name>.* connection counters a TCP
// proxy updates (the HTTP connection pool keeps its own).
type upstreamTCPStats struct {
	cxActive         *stats.Gauge
	rxBytes          *stats.Counter
	txBytes          *stats.Counter
	destroyLocal     *stats.Counter
	destroyRemote    *stats.Counter
	attemptsExceeded *stats.Counter
	connectTimeout   *stats.Counter
}

// newTCPProxy makes a chain's TCP proxy. Its cluster exists: the model
// passed config's Check. Sessions take the cluster from the set current
// when they start (serve), so a reload that replaces it applies to new
// connections.
func newTCPProxy(s *Server, l *config.Listener, chain *config.FilterChain, factories []filter.NetworkFactory, ls *listenerStats) (*tcpProxy, error) {
	p := buildTCPProxy(s, l, chain.Name, chain.TCPProxy, factories, ls, s.opts.Stats)
	var err error
	if p.accessLogs, err = s.newAccessLoggers(chain.TCPProxy.AccessLogs); err != nil {
		return nil, fmt.Errorf("listener %q: %w", l.Name, err)
	}
	return p, nil
}

// buildTCPProxy makes a TCP proxy whose tcp.* and cluster.* stats live in
// st.
func buildTCPProxy(s *Server, l *config.Listener, chainName string, cfg *config.TCPProxy, factories []filter.NetworkFactory, ls *listenerStats, st *stats.Store) *tcpProxy {
	p := "tcp." + cfg.StatPrefix + "."
	c := "cluster." + cfg.Cluster + "."
	limit := int(l.PerConnectionBufferLimitBytes)
	if limit <= 0 {
		limit = 1 << 20
	}
	return &tcpProxy{
		srv: s, listener: l, chainName: chainName, cfg: cfg, factories: factories, bufferLimit: limit,
		log:    s.opts.Logs.Logger("filter"),
		lstats: ls,
		stats: tcpStats{
			cxTotal:        st.Counter(p + "downstream_cx_total"),
			noRoute:        st.Counter(p + "downstream_cx_no_route"),
			rxBytes:        st.Counter(p + "downstream_cx_rx_bytes_total"),
			txBytes:        st.Counter(p + "downstream_cx_tx_bytes_total"),
			idleTimeout:    st.Counter(p + "idle_timeout"),
			pausedReading:  st.Counter(p + "downstream_flow_control_paused_reading_total"),
			resumedReading: st.Counter(p + "downstream_flow_control_resumed_reading_total"),
		},
		upStats: upstreamTCPStats{
			cxActive:         st.Gauge(c + "upstream_cx_active"),
			rxBytes:          st.Counter(c + "upstream_cx_rx_bytes_total"),
			txBytes:          st.Counter(c + "upstream_cx_tx_bytes_total"),
			destroyLocal:     st.Counter(c + "upstream_cx_destroy_local"),
			destroyRemote:    st.Counter(c + "upstream_cx_destroy_remote"),
			attemptsExceeded: st.Counter(c + "upstream_cx_connect_attempts_exceeded"),
			connectTimeout:   st.Counter(c + "upstream_cx_connect_timeout"),
		},
		sessions: map[*tcpSession]struct{}{},
	}
}

// serve runs one downstream connection to its end on the calling
// goroutine. down has completed its TLS handshake, if any, which tlsInfo
// describes.
func (p *tcpProxy) serve(down net.Conn, tlsInfo *filter.TLSInfo) {
	s := &tcpSession{
		p:      p,
		down:   down,
		events: make(chan tcpEvent, 4),
		done:   make(chan struct{}),
	}
	s.info.StartTime = time.Now()
	s.info.ConnectionID = connIDs.Add(1)
	s.info.ListenerName = p.listener.Name
	s.info.DownstreamAddr = addrPort(down.RemoteAddr())
	s.info.LocalAddr = addrPort(down.LocalAddr())
	s.info.DownstreamTLS = tlsInfo
	if p.local == nil {
		s.info.ClusterName = p.cfg.Cluster
		clusters := p.srv.acquireClusters()
		defer clusters.unref()
		s.cluster = clusters.m[p.cfg.Cluster]
		if s.cluster == nil { // a reload checks every kept TCP proxy's cluster
			_ = down.Close()
			return
		}
		s.info.ClusterMetadata = s.cluster.cfg.Metadata
	}
	s.info.ListenerMetadata = p.listener.Metadata
	s.info.FilterChainName = p.chainName
	s.toUp = newWriteQueue(s, sideUpstream)
	s.toDown = newWriteQueue(s, sideDownstream)
	s.downGate = newReadGate()
	s.upGate = newReadGate()
	p.mu.Lock()
	p.sessions[s] = struct{}{}
	p.mu.Unlock()
	p.stats.cxTotal.Inc()
	p.srv.active.Add(1)
	defer p.srv.active.Add(-1)
	s.run()
	p.mu.Lock()
	delete(p.sessions, s)
	p.mu.Unlock()
}

// closeAll ends every session (shutdown after the drain period).
func (p *tcpProxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for s := range p.sessions {
		s.fc.Post(func() { s.closeNow("drain timeout") })
	}
}

// side names one of the two connections of a session.
type side uint8

const (
	sideDownstream side = iota
	sideUpstream
)

type tcpEventKind uint8

const (
	evRead       tcpEventKind = iota // data (or the end) read from a side
	evConnected                      // the upstream connect attempt finished
	evDrained                        // a write queue fell below the buffer limit
	evWriterDone                     // a writer finished: drained and (half-)closed, or failed
)

type tcpEvent struct {
	kind tcpEventKind
	side side
	data []byte
	err  error
	// evConnected
	conn net.Conn
	tls  *filter.TLSInfo
}

// tcpSession is one proxied TCP connection. Its goroutine (run) owns
// every field not marked otherwise and is the only one that calls the
// network filters (through the filter-chain engine fc), like Envoy's
// per-connection dispatcher: readers, writers and the connect attempt
// talk to it through events, filter callbacks through fc.Post. Writes go
// through queues served by one writer goroutine per side, so a slow peer
// never blocks the filters.
type tcpSession struct {
	p    *tcpProxy
	down net.Conn
	up   net.Conn // set when connected
	info filter.StreamInfo

	// fc runs the network filters and holds the data they have not
	// passed on; the session is its host (networkHost).
	fc filterchain.Network

	toUp, toDown     *writeQueue
	downGate, upGate *readGate
	readingPaused    bool

	connecting, connected bool
	upEndedByPeer         bool // the upstream closed or reset first
	downEndedByPeer       bool
	downReaderDone        bool
	upReaderDone          bool
	closing               bool
	closeTimer            *time.Timer
	writersLeft           int

	idle         *time.Timer
	lastActivity time.Time

	events chan tcpEvent
	done   chan struct{}
	wg     sync.WaitGroup

	// cluster is the upstream cluster, from the set current at the start.
	cluster *cluster
}

// send delivers an event to the session goroutine unless it has ended.
func (s *tcpSession) send(ev tcpEvent) bool {
	select {
	case s.events <- ev:
		return true
	case <-s.done:
		return false
	}
}

func (s *tcpSession) run() {
	defer close(s.done)
	p := s.p
	s.fc.Init((*networkHost)(s), nil, &s.info, p.factories)
	s.writersLeft = 1 // the downstream writer; the upstream one starts on connect
	s.wg.Add(2)
	go s.toDown.serve(s.down)
	go s.readLoop(s.down, s.downGate, sideDownstream)

	var idleC <-chan time.Time
	if d := p.cfg.IdleTimeout.D(); d > 0 {
		s.lastActivity = time.Now()
		s.idle = time.NewTimer(d)
		defer s.idle.Stop()
		idleC = s.idle.C
	}
	// Envoy initializes the read filters (OnNewConnection down the chain,
	// up to the TCP proxy's connect) before reading anything.
	s.fc.IterateRead()
	s.fc.Drain()
	s.updateGates()

	for !s.finished() {
		var closeC <-chan time.Time
		if s.closeTimer != nil {
			closeC = s.closeTimer.C
		}
		select {
		case ev := <-s.events:
			s.handle(ev)
		case <-s.fc.Notify():
		case <-idleC:
			if since := time.Since(s.lastActivity); since < p.cfg.IdleTimeout.D() {
				s.idle.Reset(p.cfg.IdleTimeout.D() - since)
				break
			}
			p.stats.idleTimeout.Inc()
			s.closeFlush("idle_timeout")
		case <-closeC:
			s.closeNow("flush timeout")
		}
		s.fc.Drain()
		s.updateGates()
	}
	s.finish()
}

// finished: both writers are done and no reader can deliver more.
func (s *tcpSession) finished() bool {
	return s.writersLeft == 0 && s.downReaderDone && (s.upReaderDone || !s.connected) && !s.connecting
}

func (s *tcpSession) handle(ev tcpEvent) {
	switch ev.kind {
	case evRead:
		s.lastActivity = time.Now()
		if ev.side == sideDownstream {
			s.onDownstreamRead(ev.data, ev.err)
		} else {
			s.onUpstreamRead(ev.data, ev.err)
		}
	case evConnected:
		s.onConnected(ev)
	case evDrained:
		// updateGates runs after every event.
	case evWriterDone:
		s.writersLeft--
		if ev.err != nil && !s.closing {
			s.p.log.Debug("tcp proxy write failed", "listener", s.p.listener.Name, "side", ev.side, "err", ev.err)
			s.closeNow("write failure")
		}
	}
}

func (s *tcpSession) onDownstreamRead(data []byte, err error) {
	if len(data) > 0 {
		s.p.stats.rxBytes.Add(uint64(len(data)))
		s.info.RequestBodyBytes.Add(uint64(len(data))) // %BYTES_RECEIVED%
		if s.closing || !s.fc.AppendRead(data) {
			putBuf(data)
		}
	}
	if err != nil {
		s.downReaderDone = true
		if s.closing {
			return
		}
		s.downEndedByPeer = true
		if !errors.Is(err, io.EOF) {
			// A reset: nothing can be written back either.
			s.closeNow("downstream reset")
			return
		}
		s.fc.EndRead()
	}
	if !s.closing {
		s.fc.IterateRead()
	}
}

func (s *tcpSession) onUpstreamRead(data []byte, err error) {
	if len(data) > 0 {
		s.p.upStats.rxBytes.Add(uint64(len(data)))
		if s.closing || !s.fc.AppendWrite(data) {
			putBuf(data)
		}
	}
	if err != nil {
		s.upReaderDone = true
		if s.closing {
			return
		}
		s.upEndedByPeer = true
		s.p.upStats.destroyRemote.Inc()
		if !errors.Is(err, io.EOF) {
			// An upstream reset mid-stream: what reached the proxy is
			// flushed to the client, then its connection closes (Envoy
			// closes the downstream with FlushWrite).
			s.p.log.Debug("upstream connection reset", "listener", s.p.listener.Name, "cluster", s.p.cfg.Cluster, "err", err)
			s.fc.IterateWrite()
			s.closeFlush("upstream reset")
			return
		}
		s.fc.EndWrite()
	}
	if !s.closing {
		s.fc.IterateWrite()
	}
}

// networkHost is the session as the filter-chain engine's host.
type networkHost tcpSession

// DeliverRead is the TCP proxy at the end of the read filters: connect on
// first reach, then take the data.
func (h *networkHost) DeliverRead(b []byte, end bool) {
	s := (*tcpSession)(h)
	if !s.connecting && !s.connected {
		s.connect()
	}
	if len(b) > 0 {
		s.toUp.push(b)
	}
	if end {
		s.toUp.finish(false)
	}
}

// DeliverWrite queues what passed the write filters for the client.
func (h *networkHost) DeliverWrite(b []byte, end bool) {
	if len(b) > 0 {
		h.toDown.push(b)
	}
	if end {
		h.toDown.finish(false)
	}
}

func (h *networkHost) Close(details string) { (*tcpSession)(h).closeFlush(details) }
func (h *networkHost) Closing() bool        { return h.closing }

// connect starts the upstream connection attempts (up to
// max_connect_attempts, each to an endpoint the load balancer picks).
// Reading from the client pauses meanwhile, as in Envoy.
func (s *tcpSession) connect() {
	s.connecting = true
	p := s.p
	if p.local != nil {
		go func() {
			conn, err := p.local(s)
			s.send(tcpEvent{kind: evConnected, conn: conn, err: err})
		}()
		return
	}
	go func() {
		var lastErr error
		for attempt := uint32(0); attempt < max(p.cfg.MaxConnectAttempts, 1); attempt++ {
			ep := s.cluster.pick()
			if ep == nil {
				s.cluster.stats.noHealthy.Inc()
				lastErr = errNoHealthy
				break
			}
			conn, info, err := s.cluster.dialTCP(context.Background(), ep)
			s.cluster.reportConnect(ep, err)
			if err == nil {
				s.send(tcpEvent{kind: evConnected, conn: conn, tls: info})
				return
			}
			lastErr = err
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				p.upStats.connectTimeout.Inc()
			}
			p.log.Debug("upstream connect failed", "cluster", p.cfg.Cluster, "endpoint", ep.address, "attempt", attempt+1, "err", err)
		}
		if p.cfg.MaxConnectAttempts > 1 {
			p.upStats.attemptsExceeded.Inc()
		}
		s.send(tcpEvent{kind: evConnected, err: lastErr})
	}()
}

func (s *tcpSession) onConnected(ev tcpEvent) {
	s.connecting = false
	if ev.err != nil {
		s.p.stats.noRoute.Inc()
		// For the access log's %RESPONSE_FLAGS% (UH, UF), as Envoy's
		// TCP proxy flags the connection.
		s.info.ResponseCodeDetails = "upstream_connect_failure"
		if errors.Is(ev.err, errNoHealthy) {
			s.info.ResponseCodeDetails = "no_healthy_upstream"
		}
		s.closeFlush("upstream connect failure")
		return
	}
	if s.closing {
		_ = ev.conn.Close()
		return
	}
	s.up = ev.conn
	s.connected = true
	s.p.upStats.cxActive.Add(1)
	if s.p.local == nil { // the connection manager ahead of which filters run is no upstream
		s.info.UpstreamAddr = ev.conn.RemoteAddr().String()
		if a, ok := ev.conn.LocalAddr().(*net.TCPAddr); ok {
			s.info.UpstreamLocalAddr = a.AddrPort()
		}
		s.info.UpstreamTLS = ev.tls
	}
	s.writersLeft++
	s.wg.Add(2)
	go s.toUp.serve(s.up)
	go s.readLoop(s.up, s.upGate, sideUpstream)
}

// updateGates applies flow control: a side is read only while what it
// produced and the proxy holds (buffered at a filter or queued for the
// other side) is under the buffer limit, and the client is not read
// while the upstream connection is being set up.
func (s *tcpSession) updateGates() {
	if s.closing {
		return // closeFlush/closeNow decide: the client is drained, the upstream no longer read
	}
	limit := s.p.bufferLimit
	held, heldUp := s.fc.Buffered()
	readEnd := s.fc.ReadEnded()
	downOpen := !s.closing && !readEnd && !s.connecting && len(held) < limit && s.toUp.size() < limit
	upOpen := !s.closing && !s.fc.WriteEnded() && len(heldUp) < limit && s.toDown.size() < limit
	if !downOpen && !s.closing && !readEnd && !s.connecting && !s.readingPaused {
		s.readingPaused = true
		s.p.stats.pausedReading.Inc()
	} else if downOpen && s.readingPaused {
		s.readingPaused = false
		s.p.stats.resumedReading.Inc()
	}
	s.downGate.set(downOpen)
	s.upGate.set(upOpen)
}

// closeFlush ends the session after the data already queued for each
// side has been written (Envoy's FlushWrite), bounded by a timeout.
func (s *tcpSession) closeFlush(details string) {
	if s.closing {
		return
	}
	s.closing = true
	s.p.log.Debug("tcp proxy closing", "listener", s.p.listener.Name, "details", details)
	// The client may still be sending: keep reading (and discarding)
	// until it closes after our FIN, so closing is not a reset.
	s.downGate.set(true)
	s.upGate.stop()
	s.toDown.finish(true)
	s.toUp.finish(true)
	if s.up != nil && s.toUp.writerExited() {
		// Already half-closed: nothing is left to flush, and closing is
		// what ends the upstream reader.
		_ = s.up.Close()
	}
	s.closeTimer = time.NewTimer(flushTimeout)
}

// closeNow ends the session at once, dropping queued data.
func (s *tcpSession) closeNow(details string) {
	if !s.closing {
		s.p.log.Debug("tcp proxy closing", "listener", s.p.listener.Name, "details", details)
	}
	s.closing = true
	s.downGate.stop()
	s.upGate.stop()
	s.toDown.abort()
	s.toUp.abort()
	_ = s.down.Close()
	if s.up != nil {
		_ = s.up.Close()
	}
}

// flushTimeout bounds how long a closing session waits for a peer that
// does not read what is left to write, or does not close its side.
const flushTimeout = 5 * time.Second

// finish closes both connections, delivers the close events to the
// filters and releases them.
func (s *tcpSession) finish() {
	if s.closeTimer != nil {
		s.closeTimer.Stop()
	}
	s.downGate.stop()
	s.upGate.stop()
	_ = s.down.Close()
	if s.up != nil {
		_ = s.up.Close()
		s.p.upStats.cxActive.Add(-1)
		if !s.upEndedByPeer {
			s.p.upStats.destroyLocal.Inc()
		}
	}
	s.wg.Wait()
	held, heldUp := s.fc.Buffered()
	putBuf(held)
	putBuf(heldUp)
	s.fc.Finish(s.connected, peerOf(s.upEndedByPeer), peerOf(s.downEndedByPeer))
	s.info.EndTime = time.Now()
	logAccess(s.p.accessLogs, &s.info, nil, nil, nil)
	s.p.lstats.cxActive.Add(-1)
	s.p.lstats.cxDestroy.Inc()
}

func peerOf(byPeer bool) filter.PeerType {
	if byPeer {
		return filter.PeerRemote
	}
	return filter.PeerLocal
}

// readLoop reads one side while its gate is open and hands each chunk
// to the session goroutine; it ends at the first error (io.EOF: the
// peer half-closed).
func (s *tcpSession) readLoop(c net.Conn, g *readGate, from side) {
	defer s.wg.Done()
	for g.wait() {
		buf := getBuf()
		n, err := c.Read(buf)
		if n == 0 {
			putBuf(buf)
			buf = nil
		} else {
			buf = buf[:n]
		}
		if !s.send(tcpEvent{kind: evRead, side: from, data: buf, err: err}) {
			putBuf(buf)
			return
		}
		if err != nil {
			return
		}
	}
	// Stopped while closing: report the end so the session can finish.
	s.send(tcpEvent{kind: evRead, side: from, err: io.EOF})
}

// --- buffers, queues, gates -------------------------------------------------

// tcpChunkSize is the size of one read. Chunks come from a pool and go
// back to it once written; each has tcpChunkSpare bytes of capacity
// beyond, so a filter that prepends a few bytes (as the seed's does to
// every chunk) edits it in place.
const (
	tcpChunkSize  = 32 << 10
	tcpChunkSpare = 4 << 10
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, tcpChunkSize, tcpChunkSize+tcpChunkSpare); return &b }}

func getBuf() []byte { return (*bufPool.Get().(*[]byte))[:tcpChunkSize] }

// putBuf returns a pool chunk; other slices (a filter's replacement,
// a grown buffer) are left to the garbage collector.
func putBuf(b []byte) {
	if cap(b) != tcpChunkSize+tcpChunkSpare {
		return
	}
	b = b[:cap(b)]
	bufPool.Put(&b)
}

// writeQueue holds data for one side and is drained by that side's
// writer goroutine.
type writeQueue struct {
	s    *tcpSession
	side side

	mu       sync.Mutex
	cond     sync.Cond
	chunks   [][]byte
	bytes    int
	full     bool // bytes reached the limit: report when it drains
	finished bool // no more data: half-close (or close) once drained
	closeAll bool // finish with a full close rather than a half-close
	aborted  bool
	exited   bool // the writer goroutine has ended
}

func newWriteQueue(s *tcpSession, sd side) *writeQueue {
	q := &writeQueue{s: s, side: sd}
	q.cond.L = &q.mu
	return q
}

func (q *writeQueue) push(b []byte) {
	q.mu.Lock()
	if q.finished || q.aborted {
		q.mu.Unlock()
		putBuf(b)
		return
	}
	q.chunks = append(q.chunks, b)
	q.bytes += len(b)
	if q.bytes >= q.s.p.bufferLimit {
		q.full = true
	}
	q.mu.Unlock()
	q.cond.Signal()
}

func (q *writeQueue) size() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.bytes
}

// finish marks the end of the data: once drained, the writer half-closes
// its side (closeAll: closes the connection).
func (q *writeQueue) finish(closeAll bool) {
	q.mu.Lock()
	q.finished = true
	q.closeAll = q.closeAll || closeAll
	q.mu.Unlock()
	q.cond.Signal()
}

func (q *writeQueue) abort() {
	q.mu.Lock()
	q.aborted = true
	for _, b := range q.chunks {
		putBuf(b)
	}
	q.chunks, q.bytes = nil, 0
	q.mu.Unlock()
	q.cond.Signal()
}

func (q *writeQueue) isAborted() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.aborted
}

// serve writes queued data to c until the queue is finished and empty
// (then half-closes or closes c) or aborted, and reports the end.
func (q *writeQueue) serve(c net.Conn) {
	defer q.s.wg.Done()
	var err error
	bytesOut := q.s.p.stats.txBytes
	if q.side == sideUpstream {
		bytesOut = q.s.p.upStats.txBytes
	}
	for {
		q.mu.Lock()
		for len(q.chunks) == 0 && !q.finished && !q.aborted {
			q.cond.Wait()
		}
		if q.aborted || (len(q.chunks) == 0 && q.finished) {
			aborted, closeAll := q.aborted, q.closeAll
			q.exited = true // decided: a later finish(true) changes nothing
			q.mu.Unlock()
			if !aborted {
				if closeAll && q.side == sideUpstream {
					err = c.Close()
				} else {
					// The client's connection is closed by the session once
					// the client has closed its side (or the flush timeout).
					err = closeWrite(c)
				}
			}
			break
		}
		batch := q.chunks
		q.chunks = nil
		q.mu.Unlock()

		n := 0
		for _, b := range batch {
			n += len(b)
		}
		// WriteTo consumes the slice it is given (it nils the entries it
		// wrote), so it gets a copy and batch keeps the chunks for the pool.
		bufs := append(net.Buffers(nil), batch...)
		if _, err = bufs.WriteTo(c); err != nil {
			q.abort()
			break
		}
		bytesOut.Add(uint64(n))
		if q.side == sideDownstream {
			q.s.info.ResponseBodyBytes.Add(uint64(n)) // %BYTES_SENT%
		}
		for _, b := range batch {
			putBuf(b)
		}
		q.mu.Lock()
		q.bytes -= n
		drained := q.full && q.bytes < q.s.p.bufferLimit
		if drained {
			q.full = false
		}
		q.mu.Unlock()
		if drained {
			q.s.send(tcpEvent{kind: evDrained, side: q.side})
		}
	}
	q.mu.Lock()
	q.exited = true
	q.mu.Unlock()
	q.s.send(tcpEvent{kind: evWriterDone, side: q.side, err: err})
}

// writerExited reports whether the writer has made its last decision
// (then finish no longer closes anything).
func (q *writeQueue) writerExited() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.exited
}

// closeWrite half-closes c: FIN for TCP, close_notify for TLS.
func closeWrite(c net.Conn) error {
	if hc, ok := c.(interface{ CloseWrite() error }); ok { // *net.TCPConn, *tls.Conn, *peekConn
		return hc.CloseWrite()
	}
	return c.Close()
}

// readGate lets a reader goroutine read only while its side is enabled
// (Envoy's readDisable).
type readGate struct {
	mu   sync.Mutex
	cond sync.Cond
	open bool
	done bool
}

// newReadGate returns a closed gate: nothing is read until the session
// has run the filters' OnNewConnection (which may start connecting, and
// reading waits for the upstream) and opened it with updateGates.
func newReadGate() *readGate {
	g := &readGate{}
	g.cond.L = &g.mu
	return g
}

// wait blocks while the gate is closed; false once stopped.
func (g *readGate) wait() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for !g.open && !g.done {
		g.cond.Wait()
	}
	return !g.done
}

func (g *readGate) set(open bool) {
	g.mu.Lock()
	changed := g.open != open
	g.open = open
	g.mu.Unlock()
	if changed && open {
		g.cond.Broadcast()
	}
}

func (g *readGate) stop() {
	g.mu.Lock()
	g.done = true
	g.mu.Unlock()
	g.cond.Broadcast()
}
