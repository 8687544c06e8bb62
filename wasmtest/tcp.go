package wasmtest

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/wasmproxy/wasmproxy/filter"
)

// TCPStream is one TCP connection through the plugin as a network filter
// (envoy.filters.network.wasm) in front of a TCP proxy. The test plays
// both peers: Connect, then SendDownstream (client to upstream) and
// SendUpstream (upstream to client), then Close. It follows the proxy's
// rules (proxy/tcp_proxy.go): downstream data the plugin stops stays in
// the read buffer and the next read is appended to it; the upstream is
// connected when the data first passes the plugin.
type TCPStream struct {
	p    *Plugin
	t    TB
	id   int
	f    filter.NetworkFilter
	info filter.StreamInfo

	started, readEOS, writeEOS bool
	readBuf, writeBuf          filter.Buffer
	readEnd, writeEnd          bool
	pausedBy                   string

	connected       bool // the TCP proxy reached the upstream
	upstream        []byte
	upstreamEnded   bool
	client          []byte
	clientEnded     bool
	closing         bool
	closeDetails    string
	upEndedByPeer   bool
	downEndedByPeer bool
	ended           bool

	mu       sync.Mutex
	pending  []func()
	draining bool

	trace    []string
	logStart int
}

// NewTCPStream opens a connection to the plugin's listener. Nothing is
// called until Connect.
func (p *Plugin) NewTCPStream(opts ...StreamOption) *TCPStream {
	s := &TCPStream{p: p, t: p.t, logStart: p.logs.len()}
	s.info = filter.StreamInfo{
		StartTime:      time.Now(),
		ConnectionID:   p.nextConnectionID(),
		DownstreamAddr: netip.MustParseAddrPort("127.0.0.1:50000"),
		LocalAddr:      netip.MustParseAddrPort("127.0.0.1:10000"),
		ListenerName:   "wasmtest",
		ClusterName:    "upstream",
	}
	for _, o := range opts {
		o(&s.info)
	}
	p.mu.Lock()
	p.conns = append(p.conns, s)
	s.id = len(p.conns)
	p.mu.Unlock()
	s.f = p.plugin.NewNetworkFilter(&connCallbacks{s: s})
	return s
}

// Connect delivers the new connection (proxy_on_new_connection). On
// Continue the proxy connects to the upstream; on Pause it waits until
// the plugin continues reading.
func (s *TCPStream) Connect() Result {
	s.t.Helper()
	s.begin()
	if s.started {
		s.t.Fatalf("wasmtest: connection %d: Connect called twice", s.id)
	}
	r := s.iterateRead(true)
	s.drain()
	return r
}

// SendDownstream delivers bytes from the client (proxy_on_downstream_data);
// end means the client half-closed after them.
func (s *TCPStream) SendDownstream(data []byte, end bool) Result {
	s.t.Helper()
	s.begin()
	if !s.started {
		s.failf("SendDownstream before Connect")
	}
	if s.readEnd {
		s.failf("SendDownstream after the client half-closed")
	}
	s.readBuf.Bytes = append(s.readBuf.Bytes, data...)
	s.readEnd = end
	var r Result
	if s.closing {
		r = Result{s: s, Callback: "proxy_on_downstream_data", Action: Pause, Status: "dropped: the connection is closing (" + s.closeDetails + ")"}
		s.readBuf.Bytes = nil
	} else {
		r = s.iterateRead(false)
	}
	s.drain()
	return r
}

// SendUpstream delivers bytes from the upstream (proxy_on_upstream_data);
// end means the upstream half-closed after them. It fails the test when
// the proxy never connected to the upstream.
func (s *TCPStream) SendUpstream(data []byte, end bool) Result {
	s.t.Helper()
	s.begin()
	if !s.connected {
		s.failf("SendUpstream: the proxy has not connected to the upstream: %s", s.heldWhy())
	}
	s.writeBuf.Bytes = append(s.writeBuf.Bytes, data...)
	s.writeEnd = end
	var r Result
	if s.closing {
		r = Result{s: s, Callback: "proxy_on_upstream_data", Action: Pause, Status: "dropped: the connection is closing (" + s.closeDetails + ")"}
		s.writeBuf.Bytes = nil
	} else {
		r = s.iterateWrite()
	}
	s.drain()
	return r
}

// Close ends the connection as the client closing it would, then
// delivers the close callbacks and ends the context (proxy_on_done,
// proxy_on_log, proxy_on_delete). It fails the test when the plugin
// still holds client data it never let through.
func (s *TCPStream) Close() {
	s.t.Helper()
	s.begin()
	s.downEndedByPeer = true
	s.finish(false)
}

func (s *TCPStream) finish(atCleanup bool) {
	s.t.Helper()
	if s.ended {
		return
	}
	s.ended = true
	s.drain()
	if s.p.stuck.Load() != nil {
		return
	}
	if !s.closing && (len(s.readBuf.Bytes) > 0 || (s.started && !s.connected)) {
		when := "when it closed"
		if atCleanup {
			when = "when the test ended"
		}
		s.errorf("the connection was still paused %s: %s", when, s.heldWhy())
	}
	s.info.EndTime = time.Now()
	if s.p.stuck.Load() != nil {
		return
	}
	if s.connected {
		s.call("proxy_on_upstream_connection_close", func() { s.f.OnUpstreamClose(peerType(s.upEndedByPeer)) })
	}
	s.call("proxy_on_downstream_connection_close, proxy_on_done, proxy_on_log, proxy_on_delete", func() {
		s.f.OnDownstreamClose(peerType(s.downEndedByPeer))
	})
	s.call("proxy_on_delete", func() { s.f.OnDestroy() })
}

func peerType(byPeer bool) filter.PeerType {
	if byPeer {
		return filter.PeerRemote
	}
	return filter.PeerLocal
}

// Upstream is every byte the upstream received so far; ended reports
// that the proxy half-closed the upstream connection after them.
func (s *TCPStream) Upstream() (data []byte, ended bool) {
	s.drain()
	return s.upstream, s.upstreamEnded
}

// Client is every byte the client received so far.
func (s *TCPStream) Client() (data []byte, ended bool) {
	s.drain()
	return s.client, s.clientEnded
}

// Closed reports whether the plugin closed the connection, and why.
func (s *TCPStream) Closed() (closed bool, details string) {
	s.drain()
	return s.closing, s.closeDetails
}

// Trace is what happened on the connection so far.
func (s *TCPStream) Trace() []string { s.drain(); return append([]string(nil), s.trace...) }

// ExpectUpstream fails the test unless the upstream received exactly want.
func (s *TCPStream) ExpectUpstream(want string) {
	s.t.Helper()
	if got, _ := s.Upstream(); string(got) != want {
		s.errorf("expected the upstream to receive %s, got %s", quoteBody([]byte(want)), quoteBody(got))
	}
}

// ExpectClient fails the test unless the client received exactly want.
func (s *TCPStream) ExpectClient(want string) {
	s.t.Helper()
	if got, _ := s.Client(); string(got) != want {
		s.errorf("expected the client to receive %s, got %s", quoteBody([]byte(want)), quoteBody(got))
	}
}

// iterateRead is the proxy's iterateRead for one filter: the new
// connection first, then the read buffer, then the TCP proxy.
func (s *TCPStream) iterateRead(connecting bool) Result {
	var r Result
	if !s.started {
		s.started = true
		var st filter.NetworkStatus
		s.call("proxy_on_new_connection", func() { st = s.f.OnNewConnection() })
		r = s.result("proxy_on_new_connection", st)
		if st == filter.NetworkStopIteration {
			s.pausedBy = "proxy_on_new_connection"
			return r
		}
		if s.closing {
			return r
		}
		s.drain()
		if s.closing {
			return r
		}
	}
	if len(s.readBuf.Bytes) > 0 || (s.readEnd && !s.readEOS) {
		if s.readEnd {
			s.readEOS = true
		}
		var st filter.NetworkStatus
		n := len(s.readBuf.Bytes)
		desc := fmt.Sprintf("proxy_on_downstream_data(%d bytes, end_of_stream=%v)", n, s.readEnd)
		s.call(desc, func() { st = s.f.OnDownstreamData(&s.readBuf, s.readEnd) })
		r = s.result("proxy_on_downstream_data", st)
		s.note("%s → %s", desc, r.Status)
		if st == filter.NetworkStopIteration {
			s.pausedBy = "proxy_on_downstream_data"
			return r
		}
		if s.closing {
			return r
		}
	} else if !connecting {
		r = Result{s: s, Callback: "proxy_on_downstream_data", Action: Pause, Status: "no data to deliver"}
	}
	s.pausedBy = ""
	s.toProxy()
	return r
}

// toProxy is the TCP proxy at the end of the read chain: connect on first
// reach, then forward the read buffer.
func (s *TCPStream) toProxy() {
	if !s.connected {
		s.connected = true
		s.note("the proxy connected to the upstream")
	}
	if len(s.readBuf.Bytes) > 0 {
		s.upstream = append(s.upstream, s.readBuf.Bytes...)
		s.note("upstream ← %s", quoteBody(s.readBuf.Bytes))
		s.readBuf.Bytes = nil
	}
	if s.readEnd && !s.upstreamEnded {
		s.upstreamEnded = true
		s.note("upstream ← end of stream")
	}
}

func (s *TCPStream) iterateWrite() Result {
	r := Result{s: s, Callback: "proxy_on_upstream_data", Action: Pause, Status: "no data to deliver"}
	if len(s.writeBuf.Bytes) > 0 || (s.writeEnd && !s.writeEOS) {
		if s.writeEnd {
			s.writeEOS = true
		}
		var st filter.NetworkStatus
		desc := fmt.Sprintf("proxy_on_upstream_data(%d bytes, end_of_stream=%v)", len(s.writeBuf.Bytes), s.writeEnd)
		s.call(desc, func() { st = s.f.OnUpstreamData(&s.writeBuf, s.writeEnd) })
		r = s.result("proxy_on_upstream_data", st)
		s.note("%s → %s", desc, r.Status)
		if st == filter.NetworkStopIteration {
			return r
		}
	}
	if len(s.writeBuf.Bytes) > 0 {
		s.client = append(s.client, s.writeBuf.Bytes...)
		s.note("client ← %s", quoteBody(s.writeBuf.Bytes))
		s.writeBuf.Bytes = nil
	}
	if s.writeEnd && !s.clientEnded {
		s.clientEnded = true
		s.upEndedByPeer = true
		s.note("client ← end of stream")
	}
	return r
}

func (s *TCPStream) result(callback string, st filter.NetworkStatus) Result {
	r := Result{s: s, Callback: callback, Called: true, Status: "Continue"}
	if st == filter.NetworkStopIteration {
		r.Action, r.Status = Pause, "StopIteration"
	}
	return r
}

func (s *TCPStream) heldWhy() string {
	switch {
	case !s.started:
		return "Connect was never called"
	case s.pausedBy != "":
		return s.pausedBy + " returned Pause and the plugin never continued reading (no proxywasm.ContinueTcpStream, no close)"
	}
	return "the data is held at the plugin"
}

func (s *TCPStream) call(desc string, fn func()) {
	s.t.Helper()
	if !s.p.guard(desc, fn) {
		s.p.failStuck(s.t, fmt.Sprintf("connection %d", s.id))
	}
	s.p.settle(s.t, fmt.Sprintf("connection %d", s.id))
}

func (s *TCPStream) begin() {
	s.t.Helper()
	if s.ended {
		s.t.Fatalf("wasmtest: connection %d: used after Close", s.id)
	}
	s.drain()
}

func (s *TCPStream) post(fn func()) {
	s.mu.Lock()
	s.pending = append(s.pending, fn)
	s.mu.Unlock()
}

func (s *TCPStream) drain() {
	if s.draining {
		return
	}
	s.draining = true
	defer func() { s.draining = false }()
	for {
		s.mu.Lock()
		fns := s.pending
		s.pending = nil
		s.mu.Unlock()
		if len(fns) == 0 {
			return
		}
		for _, fn := range fns {
			fn()
		}
	}
}

func (s *TCPStream) note(format string, args ...any) {
	if s.p.set.noTrace {
		return
	}
	s.trace = append(s.trace, fmt.Sprintf(format, args...))
}

func (s *TCPStream) tb() TB { return s.t }

func (s *TCPStream) failf(format string, args ...any) {
	s.t.Helper()
	s.t.Fatalf("%s", s.report(fmt.Sprintf(format, args...)))
}

func (s *TCPStream) errorf(format string, args ...any) {
	s.t.Helper()
	s.t.Errorf("%s", s.report(fmt.Sprintf(format, args...)))
}

func (s *TCPStream) report(msg string) string {
	return s.p.report(fmt.Sprintf("connection %d", s.id), "connection", msg, s.trace, s.logStart)
}

// connCallbacks is the proxy side of the plugin's network filter.
type connCallbacks struct{ s *TCPStream }

func (cb *connCallbacks) ContinueReading() {
	s := cb.s
	s.post(func() {
		if s.closing {
			return
		}
		s.note("plugin continued reading")
		s.pausedBy = ""
		s.toProxy()
	})
}

func (cb *connCallbacks) Close(details string) {
	s := cb.s
	s.post(func() {
		if !s.closing {
			s.closing, s.closeDetails = true, details
			s.note("plugin closed the connection (%s)", details)
		}
	})
}

func (cb *connCallbacks) Info() *filter.StreamInfo { return &cb.s.info }
