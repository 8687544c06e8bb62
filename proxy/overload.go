package proxy

import (
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/stats"
)

// overload is Envoy's overload manager (bootstrap overload_manager):
// every refresh_interval the resource monitors are read and each
// action's state (0 to 1, the largest of its triggers' values) stored,
// for the data path to consult without locks:
//
//   - stop_accepting_requests: a new request is answered 503 "envoy
//     overloaded" (details "overload") before any filter sees it, with the
//     action's state as probability (Envoy's bernoulli draw);
//   - disable_http_keepalive: an HTTP/1 response gets "connection: close"
//     with that probability;
//   - stop_accepting_connections: while the state is 1, the listeners
//     accept nothing (connections wait in the kernel's backlog, as Envoy
//     disables its listeners);
//   - shrink_heap: while the state is 1, free heap is returned to the
//     system every 10s (Envoy's tcmalloc release; Go: debug.FreeOSMemory).
//
// The fixed heap monitor's pressure is the Go heap in use (spans holding
// objects, runtime/metrics) over max_heap_size_bytes. The global
// downstream connections monitor is Envoy's proactive one (conns): the
// listeners count every connection they accept, process-wide, and close
// one at accept when max_active_downstream_connections are open; its
// pressure is the open count over the limit. The monitors are
// read once at start, so a proxy that starts overloaded is overloaded
// from its first connection. A nil *overload has every action off.
type overload struct {
	cfg      *config.OverloadManager
	pressure []float64 // per monitor, written by the refresh goroutine
	states   map[string]*atomic.Uint64
	active   map[string]*stats.Gauge
	scale    map[string]*stats.Gauge
	pressG   []*stats.Gauge

	// gate is closed (nil) while connections are accepted.
	mu       sync.Mutex
	gate     chan struct{}
	stop     chan struct{}
	done     chan struct{}
	lastFree time.Time
	// readHeap is the heap in use, in bytes (under mu: a test may point
	// the monitor at a heap figure of its own).
	readHeap func() uint64
	// conns is the global downstream connections monitor; nil without.
	conns *connLimit
}

// connLimit is envoy.resource_monitors.global_downstream_max_connections
// (source/extensions/resource_monitors/downstream_connections): open
// downstream connections counted against max. A refused allocation (a
// connection over the limit) counts overload.<name>.failed_updates, as
// Envoy's ProactiveResource does.
type connLimit struct {
	max    int64
	n      atomic.Int64
	failed *stats.Counter
}

// acquire takes a slot for a new connection; false at the limit.
func (l *connLimit) acquire() bool {
	for {
		n := l.n.Load()
		if n+1 > l.max {
			l.failed.Inc()
			return false
		}
		if l.n.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (l *connLimit) release() { l.n.Add(-1) }

// limitedConn is an accepted connection holding a connLimit slot: its
// first Close gives the slot back. It passes on what the listeners and
// proxies ask of the socket (half-close, splice and sendfile copies, the
// raw socket).
type limitedConn struct {
	net.Conn
	lim  *connLimit
	once sync.Once
}

// Close gives the slot back before closing the socket, so a client that
// sees the connection end can count on the slot being free.
func (c *limitedConn) Close() error {
	c.once.Do(c.lim.release)
	return c.Conn.Close()
}

// NetConn is the socket connection.
func (c *limitedConn) NetConn() net.Conn { return c.Conn }

func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

func (c *limitedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

func (c *limitedConn) WriteTo(w io.Writer) (int64, error) {
	if wt, ok := c.Conn.(io.WriterTo); ok {
		return wt.WriteTo(w)
	}
	return io.Copy(w, struct{ io.Reader }{c.Conn})
}

func (c *limitedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, syscall.EINVAL
}

// admit counts a connection a listener accepted against the global
// downstream connections monitor: the connection to serve (wrapped to
// give its slot back on close), or false when the limit is reached (the
// caller closes it). Without the monitor c is served as it is.
func (o *overload) admit(c net.Conn) (net.Conn, bool) {
	if o == nil || o.conns == nil {
		return c, true
	}
	if !o.conns.acquire() {
		return nil, false
	}
	return &limitedConn{Conn: c, lim: o.conns}, true
}

func newOverload(cfg *config.OverloadManager, st *stats.Store) *overload {
	if cfg == nil {
		return nil
	}
	o := &overload{
		cfg:      cfg,
		pressure: make([]float64, len(cfg.Monitors)),
		states:   map[string]*atomic.Uint64{},
		active:   map[string]*stats.Gauge{},
		scale:    map[string]*stats.Gauge{},
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		readHeap: goHeapInUse,
	}
	for _, m := range cfg.Monitors {
		o.pressG = append(o.pressG, st.Gauge("overload."+m.Name+".pressure"))
		if m.MaxConnections > 0 {
			o.conns = &connLimit{max: m.MaxConnections, failed: st.Counter("overload." + m.Name + ".failed_updates")}
		}
	}
	for _, a := range cfg.Actions {
		o.states[a.Name] = &atomic.Uint64{}
		o.active[a.Name] = st.Gauge("overload." + a.Name + ".active")
		o.scale[a.Name] = st.Gauge("overload." + a.Name + ".scale_percent")
	}
	o.refresh()
	go o.run()
	return o
}

// goHeapInUse is the heap the Go runtime holds for objects: what
// tcmalloc's physical heap less its free and unmapped pages is to Envoy.
func goHeapInUse() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}}
	metrics.Read(s)
	var n uint64
	for _, v := range s {
		if v.Value.Kind() == metrics.KindUint64 {
			n += v.Value.Uint64()
		}
	}
	return n
}

func (o *overload) run() {
	defer close(o.done)
	t := time.NewTicker(o.cfg.RefreshInterval.D())
	defer t.Stop()
	for {
		select {
		case <-o.stop:
			return
		case <-t.C:
			o.refresh()
		}
	}
}

// close stops the refresh and opens the accept gate.
func (o *overload) close() {
	if o == nil {
		return
	}
	close(o.stop)
	<-o.done
	o.setGate(false)
}

// refresh reads the monitors and updates the actions' states.
func (o *overload) refresh() {
	o.mu.Lock()
	readHeap := o.readHeap
	o.mu.Unlock()
	heap := readHeap()
	idx := map[string]int{}
	for i, m := range o.cfg.Monitors {
		if m.MaxConnections > 0 {
			o.pressure[i] = float64(o.conns.n.Load()) / float64(m.MaxConnections)
		} else {
			o.pressure[i] = float64(heap) / float64(m.MaxHeapBytes)
		}
		o.pressG[i].Set(int64(math.Min(o.pressure[i], 1) * 100))
		idx[m.Name] = i
	}
	for _, a := range o.cfg.Actions {
		var v float64
		for _, t := range a.Triggers {
			v = math.Max(v, t.Value(o.pressure[idx[t.Monitor]]))
		}
		o.states[a.Name].Store(math.Float64bits(v))
		if v >= 1 {
			o.active[a.Name].Set(1)
		} else {
			o.active[a.Name].Set(0)
		}
		o.scale[a.Name].Set(int64(v * 100))
		switch a.Name {
		case config.OverloadStopAcceptingConnections:
			o.setGate(v >= 1)
		case config.OverloadShrinkHeap:
			if v >= 1 && time.Since(o.lastFree) >= 10*time.Second {
				o.lastFree = time.Now()
				go debug.FreeOSMemory()
			}
		}
	}
}

// state is an action's current state; 0 when not configured.
func (o *overload) state(action string) float64 {
	if o == nil {
		return 0
	}
	s := o.states[action]
	if s == nil {
		return 0
	}
	return math.Float64frombits(s.Load())
}

// draw is Envoy's bernoulli(state): true with the action's state as
// probability.
func (o *overload) draw(action string) bool {
	v := o.state(action)
	return v >= 1 || v > 0 && rand.Float64() < v
}

// rejectRequest reports whether stop_accepting_requests turns a new
// request of cm away, and counts it (Envoy's
// http.<stat_prefix>.downstream_rq_overload_close).
func (o *overload) rejectRequest(cm *connManager) bool {
	if !o.draw(config.OverloadStopAcceptingRequests) {
		return false
	}
	cm.srv.opts.Stats.Counter("http." + cm.cfg.StatPrefix + ".downstream_rq_overload_close").Inc()
	return true
}

// setGate closes (stop) or opens the listeners' accept gate.
func (o *overload) setGate(stop bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case stop && o.gate == nil:
		o.gate = make(chan struct{})
	case !stop && o.gate != nil:
		close(o.gate)
		o.gate = nil
	}
}

// waitAccept blocks while stop_accepting_connections holds, waking at
// least every refresh interval so a listener closed meanwhile (retired)
// stops waiting.
func (o *overload) waitAccept(retired *atomic.Bool) {
	if o == nil {
		return
	}
	for !retired.Load() {
		o.mu.Lock()
		g := o.gate
		o.mu.Unlock()
		if g == nil {
			return
		}
		select {
		case <-g:
		case <-o.stop:
			return
		case <-time.After(o.cfg.RefreshInterval.D()):
		}
	}
}

// closeForResponse reports whether an HTTP/1 response closes its
// connection: the connection is draining or past its duration, or
// disable_http_keepalive drew it (counted as Envoy's
// downstream_cx_overload_disable_keepalive).
func (sc *serverConn) closeForResponse() bool {
	if sc.shouldClose() {
		return true
	}
	if sc.cm.srv.overload.draw(config.OverloadDisableHTTPKeepalive) {
		sc.cm.srv.opts.Stats.Counter("http." + sc.cm.cfg.StatPrefix + ".downstream_cx_overload_disable_keepalive").Inc()
		return true
	}
	return false
}

// replyOverloaded answers a request stop_accepting_requests turned away,
// as Envoy: 503 "envoy overloaded", details "overload".
func (s *stream) replyOverloaded() {
	s.sendLocalReply(http.StatusServiceUnavailable, []byte("envoy overloaded"), nil, "overload")
}
