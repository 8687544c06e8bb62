package wasmtest

import (
	"bytes"
	"fmt"
	"net/netip"
	"time"

	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/internal/filterchain"
)

// TCPStream is one TCP connection through the plugin as a network filter
// (envoy.filters.network.wasm) in front of a TCP proxy. The test plays
// both peers: Connect, then SendDownstream (client to upstream) and
// SendUpstream (upstream to client), then Close. The proxy's engine
// (internal/filterchain) runs it, so the proxy's rules hold: downstream
// data the plugin stops stays in the read buffer and the next read is
// appended to it; the upstream is connected when the data first passes
// the plugin.
type TCPStream struct {
	p  *Plugin
	t  TB
	id int
	// fc runs the plugin as a chain of one network filter; the stream is
	// its host and observer (connHost), and the plugin's filter is called
	// through pluginNetworkFilter.
	fc   filterchain.Network
	info filter.StreamInfo

	// pausedBy names the callback that paused reading, for messages;
	// last is what the plugin's last call did, for the Result.
	pausedBy string
	last     Result

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
	h := (*connHost)(s)
	s.fc.Init(h, h, &s.info, []filter.NetworkFactory{pluginNetworkFactory{s}})
	return s
}

// Connect delivers the new connection (proxy_on_new_connection). On
// Continue the proxy connects to the upstream; on Pause it waits until
// the plugin continues reading.
func (s *TCPStream) Connect() Result {
	s.t.Helper()
	s.begin()
	if s.fc.Started() {
		s.t.Fatalf("wasmtest: connection %d: Connect called twice", s.id)
	}
	s.last = Result{}
	s.fc.IterateRead()
	r := s.result()
	s.drain()
	return r
}

// SendDownstream delivers bytes from the client (proxy_on_downstream_data);
// end means the client half-closed after them.
func (s *TCPStream) SendDownstream(data []byte, end bool) Result {
	s.t.Helper()
	s.begin()
	if !s.fc.Started() {
		s.failf("SendDownstream before Connect")
	}
	if s.fc.ReadEnded() {
		s.failf("SendDownstream after the client half-closed")
	}
	if end {
		s.fc.EndRead()
	}
	var r Result
	if s.closing {
		r = Result{s: s, Callback: "proxy_on_downstream_data", Action: Pause, Status: "dropped: the connection is closing (" + s.closeDetails + ")"}
	} else {
		// The plugin may edit the engine's buffer in place: the test's
		// slice stays the test's.
		s.fc.AppendRead(bytes.Clone(data))
		s.last = Result{Callback: "proxy_on_downstream_data", Action: Pause, Status: "no data to deliver"}
		s.fc.IterateRead()
		r = s.result()
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
	if end {
		s.fc.EndWrite()
	}
	var r Result
	if s.closing {
		r = Result{s: s, Callback: "proxy_on_upstream_data", Action: Pause, Status: "dropped: the connection is closing (" + s.closeDetails + ")"}
	} else {
		s.fc.AppendWrite(bytes.Clone(data))
		s.last = Result{Callback: "proxy_on_upstream_data", Action: Pause, Status: "no data to deliver"}
		s.fc.IterateWrite()
		r = s.result()
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
	if held, _ := s.fc.Buffered(); !s.closing && (len(held) > 0 || (s.fc.Started() && !s.connected)) {
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
	s.fc.Finish(s.connected, peerType(s.upEndedByPeer), peerType(s.downEndedByPeer))
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

// result is the Result of the call that just ran the engine.
func (s *TCPStream) result() Result {
	r := s.last
	r.s = s
	return r
}

// answered records the plugin's answer to callback; a stop of the read
// side names the callback that paused reading.
func (s *TCPStream) answered(callback string, st filter.NetworkStatus) {
	s.last = s.callResult(callback, st)
	if st == filter.NetworkStopIteration && callback != "proxy_on_upstream_data" {
		s.pausedBy = callback
	}
}

func (s *TCPStream) callResult(callback string, st filter.NetworkStatus) Result {
	r := Result{s: s, Callback: callback, Called: true, Status: "Continue"}
	if st == filter.NetworkStopIteration {
		r.Action, r.Status = Pause, "StopIteration"
	}
	return r
}

func (s *TCPStream) heldWhy() string {
	switch {
	case !s.fc.Started():
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

func (s *TCPStream) drain() {
	if s.draining {
		return
	}
	s.draining = true
	defer func() { s.draining = false }()
	s.fc.Drain()
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

// pluginNetworkFactory makes the connection's pluginNetworkFilter.
type pluginNetworkFactory struct{ s *TCPStream }

func (f pluginNetworkFactory) NewNetworkFilter(cb filter.NetworkCallbacks) filter.NetworkFilter {
	return &pluginNetworkFilter{s: f.s, f: f.s.p.plugin.NewNetworkFilter(cb)}
}

// pluginNetworkFilter is the plugin's network filter as the engine calls
// it: each call runs under the plugin's timeout, and its answer is traced
// and kept for the Result.
type pluginNetworkFilter struct {
	s *TCPStream
	f filter.NetworkFilter
}

func (pf *pluginNetworkFilter) OnNewConnection() filter.NetworkStatus {
	s := pf.s
	var st filter.NetworkStatus
	s.call("proxy_on_new_connection", func() { st = pf.f.OnNewConnection() })
	s.answered("proxy_on_new_connection", st)
	return st
}

func (pf *pluginNetworkFilter) OnDownstreamData(data *filter.Buffer, end bool) filter.NetworkStatus {
	s := pf.s
	desc := fmt.Sprintf("proxy_on_downstream_data(%d bytes, end_of_stream=%v)", data.Len(), end)
	var st filter.NetworkStatus
	s.call(desc, func() { st = pf.f.OnDownstreamData(data, end) })
	s.answered("proxy_on_downstream_data", st)
	s.note("%s → %s", desc, s.last.Status)
	return st
}

func (pf *pluginNetworkFilter) OnUpstreamData(data *filter.Buffer, end bool) filter.NetworkStatus {
	s := pf.s
	desc := fmt.Sprintf("proxy_on_upstream_data(%d bytes, end_of_stream=%v)", data.Len(), end)
	var st filter.NetworkStatus
	s.call(desc, func() { st = pf.f.OnUpstreamData(data, end) })
	s.answered("proxy_on_upstream_data", st)
	s.note("%s → %s", desc, s.last.Status)
	return st
}

func (pf *pluginNetworkFilter) OnUpstreamClose(peer filter.PeerType) {
	pf.s.call("proxy_on_upstream_connection_close", func() { pf.f.OnUpstreamClose(peer) })
}

func (pf *pluginNetworkFilter) OnDownstreamClose(peer filter.PeerType) {
	pf.s.call("proxy_on_downstream_connection_close, proxy_on_done, proxy_on_log, proxy_on_delete", func() {
		pf.f.OnDownstreamClose(peer)
	})
}

func (pf *pluginNetworkFilter) OnDestroy() { pf.s.call("proxy_on_delete", pf.f.OnDestroy) }

// connHost is the connection as the engine's host and observer: the TCP
// proxy behind the plugin, and the two peers the test plays.
type connHost TCPStream

// DeliverRead is the TCP proxy at the end of the read chain: connect on
// first reach, then forward the data.
func (h *connHost) DeliverRead(b []byte, end bool) {
	s := (*TCPStream)(h)
	s.pausedBy = ""
	if !s.connected {
		s.connected = true
		s.note("the proxy connected to the upstream")
	}
	if len(b) > 0 {
		s.upstream = append(s.upstream, b...)
		s.note("upstream ← %s", quoteBody(b))
	}
	if end {
		s.upstreamEnded = true
		s.note("upstream ← end of stream")
	}
}

func (h *connHost) DeliverWrite(b []byte, end bool) {
	s := (*TCPStream)(h)
	if len(b) > 0 {
		s.client = append(s.client, b...)
		s.note("client ← %s", quoteBody(b))
	}
	if end {
		s.clientEnded = true
		s.upEndedByPeer = true
		s.note("client ← end of stream")
	}
}

func (h *connHost) Close(details string) {
	s := (*TCPStream)(h)
	if !s.closing {
		s.closing, s.closeDetails = true, details
		s.note("plugin closed the connection (%s)", details)
	}
}

func (h *connHost) Closing() bool { return h.closing }

func (h *connHost) ContinuedReading(int) { (*TCPStream)(h).note("plugin continued reading") }
