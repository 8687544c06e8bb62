package proxy

import (
	"math"
	"math/rand/v2"
	"net/http"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
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
// objects, runtime/metrics) over max_heap_size_bytes. The monitors are
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
		o.pressure[i] = float64(heap) / float64(m.MaxHeapBytes)
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
