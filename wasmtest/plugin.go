package wasmtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/stats"
	"github.com/wasmproxy/wasmproxy/wasm"
)

// TB is the part of testing.TB the harness uses; *testing.T and
// *testing.B satisfy it. Fatalf must not return (testing's calls
// runtime.Goexit).
type TB interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// DefaultTimeout bounds every call into the plugin unless Timeout says
// otherwise.
const DefaultTimeout = 10 * time.Second

// loadTimeout is the least time Load gives the host to compile and start
// the plugin.
const loadTimeout = 2 * time.Minute

// guardGrace is how long after the timeout guard waits for a spinning
// callback, whose deadline it expired, to return before giving it up as
// stuck. A spinning guest returns at its next fuel check once it is
// scheduled, which on a loaded machine (or under -race) can take well
// over a second of wall-clock time; taking it for stuck then would be a
// false verdict that stops the run. The grace only delays the report of
// a call that really is stuck in a host function, which is rare.
const guardGrace = 10 * time.Second

// DefaultBufferLimit is what a plugin may buffer per direction, Envoy's
// default per_connection_buffer_limit_bytes.
const DefaultBufferLimit = 1 << 20

// Option configures Load.
type Option func(*settings)

type settings struct {
	cfg         config.WasmPlugin
	poolSize    int
	timeout     time.Duration
	logLevel    string
	cacheDir    string
	bufferLimit int
	clusters    map[string]Responder
	// grpcClusters serve gRPC (GrpcCluster).
	grpcClusters map[string]GrpcHandler
	noTrace      bool
	// anyCluster declares every cluster name, answered by the test
	// (AnyCluster).
	anyCluster bool
	progress   func(call string, bound time.Duration)
	node       *config.Node
	// routeConfigs are per-route plugin configurations by route name
	// (RouteConfig), in the order given.
	routeConfigs []routeConfig
	// property and foreign stand in for host attributes and foreign
	// functions (Properties, ForeignFunctions).
	property func(path []string) ([]byte, bool)
	foreign  func(name string, args []byte) ([]byte, bool)
}

type routeConfig struct{ route, configuration string }

// PluginConfig sets the plugin configuration the plugin reads in
// OnPluginStart (Envoy's configuration field), usually JSON.
func PluginConfig(s string) Option {
	return func(o *settings) { o.cfg.PluginConfiguration = []byte(s) }
}

// RouteConfig gives the plugin another configuration on the route named
// route, as a route's typed_per_filter_config entry does on the proxy
// (per-route plugin configuration, docs/guide.md): it is loaded as one
// more root context in the same instances (proxy_on_context_create,
// on_configure with these bytes), and a stream whose route is that name
// (WithRoute, or WithInfo setting RouteName) is served by it. Streams on
// other routes get the PluginConfig.
func RouteConfig(route, configuration string) Option {
	return func(o *settings) {
		o.routeConfigs = append(o.routeConfigs, routeConfig{route, configuration})
	}
}

// VMConfig sets the VM configuration (vm_config.configuration) the
// plugin reads in OnVMStart.
func VMConfig(s string) Option {
	return func(o *settings) { o.cfg.VMConfiguration = []byte(s) }
}

// Name sets the plugin's name (plugin_name property, log prefix).
func Name(name string) Option { return func(o *settings) { o.cfg.Name = name } }

// RootID sets the root_id, which selects the root context in SDKs that
// serve several.
func RootID(id string) Option { return func(o *settings) { o.cfg.RootID = id } }

// VMID sets the vm_id, which partitions shared data and queues.
func VMID(id string) Option { return func(o *settings) { o.cfg.VMID = id } }

// Env adds an environment variable (vm_config.environment_variables
// key_values) the plugin sees through WASI.
func Env(key, value string) Option {
	return func(o *settings) {
		if o.cfg.EnvKeyValues == nil {
			o.cfg.EnvKeyValues = map[string]string{}
		}
		o.cfg.EnvKeyValues[key] = value
	}
}

// FailOpen sets failure policy FAIL_OPEN: after a trap, streams skip the
// plugin instead of getting a 503.
func FailOpen() Option { return func(o *settings) { o.cfg.FailurePolicy = config.FailOpen } }

// AllowHeadersStopIteration sets allow_on_headers_stop_iteration: a Pause
// from a headers callback lets the body reach the plugin instead of
// holding it before the plugin.
func AllowHeadersStopIteration() Option {
	return func(o *settings) { o.cfg.AllowOnHeadersStopIteration = true }
}

// PoolSize sets how many instances of the module serve streams (the
// proxy uses one per CPU). The default, 1, makes ticks, metrics and the
// plugin's own state deterministic.
func PoolSize(n int) Option { return func(o *settings) { o.poolSize = n } }

// Timeout bounds each call into the plugin (and each Await); 0 or less
// disables the bound, which benchmarks use to measure the plugin alone.
// The bound is the host's per-call deadline (wasm.EnvCallDeadline, unless
// the test sets that itself): a callback spinning past it is stopped, and
// the test fails naming it, with the guest's stack where it spun. The
// host's deadline counts CPU time; the harness also stops a callback
// still running after the timeout of wall-clock time, so the bound holds
// on a busy machine too.
func Timeout(d time.Duration) Option { return func(o *settings) { o.timeout = d } }

// LogLevel sets the level of the host's "wasm" logger, which decides what
// the plugin's log calls (and proxy_get_log_level) see: trace, debug
// (the default), info, warning, error, critical, off. At trace the host
// also logs every ABI call it serves.
func LogLevel(level string) Option { return func(o *settings) { o.logLevel = level } }

// BufferLimit sets how many bytes the plugin may hold per direction
// before the request fails with 413 (the response with 500), as
// per_connection_buffer_limit_bytes does. 0 or less: no limit.
func BufferLimit(n int) Option { return func(o *settings) { o.bufferLimit = n } }

// CompilationCache sets the directory of wazero's compiled-code cache;
// "" compiles in memory every time. The default is the cache
// `wasmproxy run` uses (os.UserCacheDir()/wasmproxy).
func CompilationCache(dir string) Option { return func(o *settings) { o.cacheDir = dir } }

// Progress calls fn before every bounded call into the plugin with what is
// called and how long it may take, from the goroutine driving the test.
// A supervisor in another process can use it to stop a plugin stuck in
// an endless loop, which nothing inside the process can interrupt (Wasm
// code is not preemptible, and a spinning guest can stall the Go
// runtime's garbage collector).
func Progress(fn func(call string, bound time.Duration)) Option {
	return func(o *settings) { o.progress = fn }
}

// noTrace skips recording stream traces, for benchmarks.
func noTrace() Option { return func(o *settings) { o.noTrace = true } }

// Properties makes fn the first source of every property the plugin
// reads (proxy_get_property): a value it returns (ok) is what the plugin
// gets, in the encoding it reads (strings as is, integers 8-byte little
// endian, maps in the header-pair encoding); for any other path the host
// resolves the property from the stream and the node as in the proxy.
// It is for harnesses whose tests set attributes no stream option
// carries (package wasmtest/proxytest's WithProperty); fn is called on
// the goroutine running the plugin.
func Properties(fn func(path []string) (value []byte, ok bool)) Option {
	return func(o *settings) { o.property = fn }
}

// ForeignFunctions makes fn the first to answer the plugin's
// proxy_call_foreign_function: a result it returns (ok) is the call's
// result; for any other name the host's own functions (compress,
// declare_property, ...) answer or the call fails NOT_FOUND. It is for
// harnesses whose tests register foreign functions (package
// wasmtest/proxytest's RegisterForeignFunction); fn is called on the
// goroutine running the plugin.
func ForeignFunctions(fn func(name string, args []byte) (result []byte, ok bool)) Option {
	return func(o *settings) { o.foreign = fn }
}

// Node sets the proxy's node identity (xds.node.id, xds.node.cluster).
func Node(id, cluster string) Option {
	return func(o *settings) { o.node = &config.Node{ID: id, Cluster: cluster} }
}

// Plugin is a compiled plugin loaded on its own wasmproxy host. Every
// Plugin has private logs, metrics, shared data and queues, so tests do
// not see each other. Methods are for the test goroutine.
type Plugin struct {
	t     TB
	file  string
	label string // for messages: the plugin name or the file's base name
	set   settings

	host   *wasm.Host
	plugin *wasm.Plugin
	// routes are the RouteConfig plugins by route name, in the plugin's
	// VM; all lists plugin and these, for ticks, deadlines and closing.
	routes map[string]*wasm.Plugin
	all    []*wasm.Plugin
	logs   *logCapture
	stats  *stats.Store

	// loaded is set once Load has stored plugin: from then on guard may
	// expire calls that run past the timeout.
	loaded atomic.Bool
	// stuck names the callback that did not return within the timeout
	// and the grace after it, blocked where the deadline cannot stop it
	// (in a host function); once set, nothing calls into the plugin
	// again (the instance is still running it).
	stuck atomic.Pointer[string]
	// callDeadline is the host's per-call deadline the plugin runs under,
	// for messages; 0 when off.
	callDeadline time.Duration

	mu       sync.Mutex
	streams  []*HTTPStream
	conns    []*TCPStream
	current  *HTTPStream // the stream whose callback is running, if any
	nextConn uint64
	tickRest time.Duration
	// properties read through proxy_get_property, per stream context of
	// the instance; see HTTPStream.PropertiesRead.
	propertyReads []string

	callouts calloutState

	grpcMu    sync.Mutex
	grpcCalls []*GrpcCall
	closed    bool
}

// Load reads a compiled plugin and starts it on a fresh host the way the
// proxy does (instantiate, _initialize, on_vm_start, on_configure). A
// failure (not a Proxy-Wasm module, a missing import, on_configure
// returning false, a trap) fails t with the reason and the plugin's logs.
// The plugin is closed when the test ends.
func Load(t TB, wasmFile string, opts ...Option) *Plugin {
	t.Helper()
	p, err := open(t, wasmFile, opts...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(p.cleanup)
	return p
}

func open(t TB, wasmFile string, opts ...Option) (*Plugin, error) {
	set := settings{poolSize: 1, timeout: DefaultTimeout, logLevel: "debug", bufferLimit: DefaultBufferLimit}
	if d, err := os.UserCacheDir(); err == nil {
		set.cacheDir = filepath.Join(d, "wasmproxy")
	}
	for _, o := range opts {
		o(&set)
	}
	set.cfg.CodeFile = wasmFile
	level, err := logging.ParseLevel(set.logLevel)
	if err != nil {
		return nil, fmt.Errorf("wasmtest: LogLevel: %w", err)
	}
	label := set.cfg.Name
	if label == "" {
		label = strings.TrimSuffix(filepath.Base(wasmFile), ".wasm")
	}
	p := &Plugin{t: t, file: wasmFile, label: label, set: set, logs: &logCapture{}, stats: stats.New()}
	logs := logging.NewTextRegistry(p.logs, logging.LevelWarn)
	if err := logs.SetLevel("wasm", level); err != nil {
		return nil, err
	}
	ctx := context.Background()
	host, err := wasm.NewHost(ctx, wasm.Options{
		CacheDir:  set.cacheDir,
		PoolSize:  set.poolSize,
		Logs:      logs,
		Stats:     p.stats,
		Node:      set.node,
		Upstreams: &testUpstreams{p: p},
	})
	if err != nil {
		return nil, fmt.Errorf("wasmtest: %w", err)
	}
	host.SetTestHooks(wasm.TestHooks{
		ManualTicks:     true,
		PropertyRead:    p.onPropertyRead,
		HTTPCallStarted: p.onHTTPCallStarted,
		HTTPCallDone:    p.onHTTPCallDone,
		Property:        set.property,
		ForeignFunction: set.foreign,
	})
	p.host = host
	// The timeout is the host's per-call deadline, which stops a guest
	// spinning in its own code (the proxy's default, 100 ms, would fail
	// slow but legitimate test callbacks). guard's timer, a little later,
	// catches what the deadline cannot stop.
	if v, ok := set.cfg.EnvKeyValues[wasm.EnvCallDeadline]; ok {
		ms, _ := strconv.Atoi(v)
		p.callDeadline = time.Duration(ms) * time.Millisecond
	} else {
		if set.cfg.EnvKeyValues == nil {
			set.cfg.EnvKeyValues = map[string]string{}
		}
		ms := int64(0)
		if p.set.timeout > 0 {
			ms = max(p.set.timeout.Milliseconds(), 1)
		}
		set.cfg.EnvKeyValues[wasm.EnvCallDeadline] = strconv.FormatInt(ms, 10)
		p.callDeadline = time.Duration(ms) * time.Millisecond
	}
	var loadErr error
	// Loading includes compiling the module, which may take a while on a
	// cold cache: it gets at least loadTimeout.
	bound := p.set.timeout
	if bound > 0 && bound < loadTimeout {
		p.set.timeout = loadTimeout
	}
	p.guard("loading the plugin (_initialize, proxy_on_vm_start, proxy_on_configure)", func() {
		if p.plugin, loadErr = host.LoadPlugin(ctx, &set.cfg); loadErr != nil {
			return
		}
		p.all = []*wasm.Plugin{p.plugin}
		for _, rc := range set.routeConfigs {
			cfg := set.cfg
			cfg.PluginConfiguration = []byte(rc.configuration)
			rp, err := host.LoadPlugin(ctx, &cfg)
			if err != nil {
				loadErr = fmt.Errorf("RouteConfig(%q): %w", rc.route, err)
				return
			}
			if p.routes == nil {
				p.routes = map[string]*wasm.Plugin{}
			}
			p.routes[rc.route] = rp
			p.all = append(p.all, rp)
		}
		// Streams spread over the whole pool (PoolSize), as a test expects.
		for _, pl := range p.all {
			pl.WaitPool()
		}
	})
	p.set.timeout = bound
	if stuck := p.stuck.Load(); stuck != nil {
		return nil, fmt.Errorf("wasmtest: %s did not return within %v (an endless loop?)\nrecent plugin logs:\n%s",
			*stuck, loadTimeout, recentLogs(p.logs.snapshot(), 20))
	}
	if loadErr != nil {
		for _, pl := range p.all {
			_ = pl.Close(ctx)
		}
		_ = host.Close(ctx)
		return nil, fmt.Errorf("wasmtest: %v\nrecent plugin logs:\n%s", loadErr, recentLogs(p.logs.snapshot(), 20))
	}
	p.loaded.Store(true)
	return p, nil
}

// guard runs fn, a call into the plugin, bounded by the timeout. A guest
// spinning in its own code is stopped by the host's call deadline when it
// has used the timeout's worth of CPU, or, when the wall clock gets there
// first (a busy machine), by guard expiring its deadline; fn returns with
// the trap. When fn still has not returned guardGrace later (blocked where
// the deadline does not reach, in a host function) the plugin is marked
// stuck: the goroutine running it cannot be stopped, so nothing may call
// into the instance again.
func (p *Plugin) guard(callback string, fn func()) bool {
	if p.stuck.Load() != nil {
		return false
	}
	if p.set.timeout <= 0 {
		fn()
		return true
	}
	if p.set.progress != nil {
		p.set.progress(callback, p.set.timeout)
	}
	done := make(chan struct{})
	var panicked any
	go func() {
		defer close(done)
		defer func() { panicked = recover() }()
		fn()
	}()
	timer := time.NewTimer(p.set.timeout)
	defer timer.Stop()
	for expired := false; ; expired = true {
		select {
		case <-done:
			if panicked != nil {
				panic(panicked)
			}
			return true
		case <-timer.C:
		}
		if expired {
			break
		}
		// The host's deadline counts the guest's CPU time, which a busy
		// machine hands out slower than the wall clock runs: stop the
		// call now, as the deadline would on an idle one.
		if p.loaded.Load() {
			for _, pl := range p.all {
				pl.ExpireCalls()
			}
		}
		timer.Reset(guardGrace)
	}
	p.stuck.Store(&callback)
	stuckMu.Lock()
	if stuckCall == "" {
		stuckCall = fmt.Sprintf("%s did not return within %v", callback, p.set.timeout)
	}
	stuckMu.Unlock()
	return false
}

var (
	stuckMu   sync.Mutex
	stuckCall string
)

// Stuck reports the first call into a plugin, in this process, that did
// not return within its timeout. Such a call keeps running: it holds a
// processor and can stall the garbage collector, so a tool that runs many
// cases should stop soon after (`wasmproxy plugin test` does).
func Stuck() (call string, ok bool) {
	stuckMu.Lock()
	defer stuckMu.Unlock()
	return stuckCall, stuckCall != ""
}

// settle waits until the replies to the plugin's HTTP calls that do not
// wait for the test have been delivered.
func (p *Plugin) settle(t TB, what string) {
	t.Helper()
	if !p.settleCallouts() {
		t.Fatalf("wasmtest: plugin %s: %s: the replies to the plugin's HTTP calls were not delivered within %v (is proxy_on_http_call_response stuck?)\nrecent plugin logs:\n%s",
			p.label, what, p.waitBound(), recentLogs(p.logs.snapshot(), 20))
	}
}

// failStuck reports a callback that did not return and stops the test.
func (p *Plugin) failStuck(t TB, what string) {
	t.Helper()
	cb := p.stuck.Load()
	t.Fatalf("wasmtest: %s: %s did not return within %v (an endless loop or a blocking call?); the plugin cannot be called again\nrecent plugin logs:\n%s",
		what, *cb, p.set.timeout, recentLogs(p.logs.snapshot(), 20))
}

// Close ends every open stream (see HTTPStream.Complete), then the
// plugin's root context (proxy_on_done, proxy_on_delete) and the host.
// Load registers it with t.Cleanup; calling it earlier is allowed.
func (p *Plugin) Close() {
	p.t.Helper()
	p.cleanup()
}

func (p *Plugin) cleanup() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	streams := append([]*HTTPStream(nil), p.streams...)
	conns := append([]*TCPStream(nil), p.conns...)
	p.mu.Unlock()
	for _, s := range streams {
		if !s.ended {
			s.finish(true)
		}
	}
	for _, c := range conns {
		if !c.ended {
			c.finish(true)
		}
	}
	p.callouts.closeAll()
	if p.stuck.Load() != nil {
		// A guest call is still running on the instance; closing would
		// wait for it forever.
		return
	}
	ctx := context.Background()
	p.guard("proxy_on_done / proxy_on_delete of the root context", func() {
		for _, pl := range p.all {
			_ = pl.Close(ctx)
		}
		_ = p.host.Close(ctx)
	})
}

// Logs returns every line logged for the plugin so far, oldest first.
func (p *Plugin) Logs() []LogEntry { return p.logs.snapshot() }

// ExpectLog fails the test unless a line at level (trace, debug, info,
// warning, error, critical; "" for any) contains substr.
func (p *Plugin) ExpectLog(level, substr string) {
	p.t.Helper()
	for _, e := range p.logs.snapshot() {
		if (level == "" || e.Level == level) && strings.Contains(e.Message, substr) {
			return
		}
	}
	want := fmt.Sprintf("a log line containing %q", substr)
	if level != "" {
		want = fmt.Sprintf("a log line at level %s containing %q", level, substr)
	}
	p.t.Errorf("wasmtest: plugin %s: expected %s, found none\nplugin logs:\n%s", p.label, want, recentLogs(p.logs.snapshot(), 40))
}

// Metric reads a counter or gauge the plugin defined (proxy_define_metric)
// by its name; ok is false when no such metric exists.
func (p *Plugin) Metric(name string) (value int64, ok bool) {
	snap := p.stats.Snapshot()
	for _, list := range [][]stats.NamedValue{snap.Counters, snap.Gauges} {
		for _, v := range list {
			if v.Name == name && v.Kind == stats.Custom {
				return v.Value, true
			}
		}
	}
	return 0, false
}

// Histogram reads a histogram the plugin defined.
func (p *Plugin) Histogram(name string) (stats.HistogramSnapshot, bool) {
	for _, h := range p.stats.Snapshot().Histograms {
		if h.Name == name && h.Kind == stats.Custom {
			return h.HistogramSnapshot, true
		}
	}
	return stats.HistogramSnapshot{}, false
}

// Metrics lists the plugin's counters and gauges by name.
func (p *Plugin) Metrics() map[string]int64 {
	out := map[string]int64{}
	snap := p.stats.Snapshot()
	for _, list := range [][]stats.NamedValue{snap.Counters, snap.Gauges} {
		for _, v := range list {
			if v.Kind == stats.Custom {
				out[v.Name] = v.Value
			}
		}
	}
	return out
}

// ExpectMetric fails the test unless the counter or gauge name has value
// want.
func (p *Plugin) ExpectMetric(name string, want int64) {
	p.t.Helper()
	got, ok := p.Metric(name)
	if ok && got == want {
		return
	}
	actual := "it does not exist"
	if ok {
		actual = fmt.Sprintf("it is %d", got)
	}
	p.t.Errorf("wasmtest: plugin %s: expected metric %q = %d, but %s\nmetrics: %s\nrecent plugin logs:\n%s",
		p.label, name, want, actual, formatMetrics(p.Metrics()), recentLogs(p.logs.snapshot(), 20))
}

func formatMetrics(m map[string]int64) string {
	if len(m) == 0 {
		return "(none defined)"
	}
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for i, n := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%d", n, m[n])
	}
	return b.String()
}

// HostStat reads one of the host's own counters or gauges (for example
// "wasm.<plugin name>.runtime_errors"); ok is false when it does not
// exist.
func (p *Plugin) HostStat(name string) (int64, bool) {
	snap := p.stats.Snapshot()
	for _, list := range [][]stats.NamedValue{snap.Counters, snap.Gauges} {
		for _, v := range list {
			if v.Name == name {
				return v.Value, true
			}
		}
	}
	return 0, false
}

// TickPeriod is the tick period the plugin set with
// SetTickPeriodMilliSeconds; 0 when it set none.
func (p *Plugin) TickPeriod() time.Duration {
	if p.stuck.Load() != nil {
		return 0
	}
	return p.plugin.TickPeriod()
}

// Tick delivers one proxy_on_tick to the plugin now. Ticks never come from
// a clock in wasmtest: the test decides when time passes. It fails the
// test when the plugin set no tick period.
func (p *Plugin) Tick() {
	p.t.Helper()
	if p.TickPeriod() <= 0 {
		p.t.Fatalf("wasmtest: plugin %s: Tick: the plugin set no tick period (proxywasm.SetTickPeriodMilliSeconds), so the proxy would never call OnTick\nrecent plugin logs:\n%s",
			p.label, recentLogs(p.logs.snapshot(), 20))
	}
	p.tick()
}

func (p *Plugin) tick() {
	p.t.Helper()
	if !p.guard("proxy_on_tick", func() {
		for _, pl := range p.all {
			pl.Tick()
		}
	}) {
		p.failStuck(p.t, "Tick")
	}
	p.settle(p.t, "Tick")
	p.afterAsync()
}

// Advance lets d pass on the plugin's clock: it delivers one tick per tick
// period elapsed (carrying the remainder to the next Advance) and returns
// how many ran. The period is read again after every tick, since OnTick
// may change it.
func (p *Plugin) Advance(d time.Duration) int {
	p.t.Helper()
	n := 0
	left := p.tickRest + d
	for {
		period := p.TickPeriod()
		if period <= 0 || left < period {
			break
		}
		left -= period
		p.tick()
		n++
	}
	p.tickRest = left
	if p.TickPeriod() <= 0 {
		p.tickRest = 0
	}
	return n
}

// SharedData reads key from the shared data of the plugin's vm_id, as
// proxywasm.GetSharedData would.
func (p *Plugin) SharedData(key string) (value []byte, ok bool) {
	v, _, ok := p.host.SharedData(p.set.cfg.VMID, key)
	return v, ok
}

// SetSharedData stores key = value in the shared data of the plugin's
// vm_id, as another plugin (or another proxy worker) would.
func (p *Plugin) SetSharedData(key string, value []byte) {
	p.host.SetSharedData(p.set.cfg.VMID, key, value)
}

// Enqueue puts data on the shared queue name (of the plugin's vm_id) and
// delivers OnQueueReady to the plugin context that registered it, before
// returning. It fails the test when no plugin registered the queue.
func (p *Plugin) Enqueue(name string, data []byte) {
	p.t.Helper()
	var err error
	if !p.guard("proxy_on_queue_ready", func() { err = p.host.EnqueueSharedQueue(p.set.cfg.VMID, name, data) }) {
		p.failStuck(p.t, "Enqueue")
	}
	if err != nil {
		p.t.Fatalf("wasmtest: plugin %s: Enqueue: %v\nrecent plugin logs:\n%s", p.label, err, recentLogs(p.logs.snapshot(), 20))
	}
	p.settle(p.t, "Enqueue")
	p.afterAsync()
}

// Dequeue takes the oldest item from the shared queue name (of the
// plugin's vm_id), as a consumer in another plugin would; ok is false
// when the queue does not exist or is empty.
func (p *Plugin) Dequeue(name string) (data []byte, ok bool) {
	data, err := p.host.DequeueSharedQueue(p.set.cfg.VMID, name)
	return data, err == nil
}

// QueueLen reports how many items wait on the shared queue name (of the
// plugin's vm_id); ok is false when no plugin registered it.
func (p *Plugin) QueueLen(name string) (n int, ok bool) {
	n, err := p.host.SharedQueueLen(p.set.cfg.VMID, name)
	return n, err == nil
}

// onPropertyRead records proxy_get_property paths (the host's test hook).
func (p *Plugin) onPropertyRead(path []string, found bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := strings.Join(path, ".")
	if !found {
		s += " (not found)"
	}
	p.propertyReads = append(p.propertyReads, s)
	if p.current != nil {
		p.current.propertyReads = append(p.current.propertyReads, s)
	}
}

// PropertiesRead lists the properties the plugin read so far, in order,
// as dotted paths ("request.headers.x-user"); absent ones end in
// " (not found)".
func (p *Plugin) PropertiesRead() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.propertyReads...)
}

// afterAsync applies what the plugin asked of its streams from a root
// context callback (tick, queue, callout reply): resuming, answering.
func (p *Plugin) afterAsync() {
	p.mu.Lock()
	streams := append([]*HTTPStream(nil), p.streams...)
	conns := append([]*TCPStream(nil), p.conns...)
	p.mu.Unlock()
	for _, s := range streams {
		if !s.ended {
			s.drain()
		}
	}
	for _, c := range conns {
		if !c.ended {
			c.drain()
		}
	}
}

func (p *Plugin) nextConnectionID() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.nextConn++
	return p.nextConn
}

// trapSince describes a trap of the plugin logged since log index from:
// the callback, the Go panic message when the plugin printed one, the
// host's reason and the guest's stack trace.
func (p *Plugin) trapSince(from int) (string, bool) {
	entries := p.logs.snapshot()
	if from > len(entries) {
		from = len(entries)
	}
	panicMsg := ""
	for _, e := range entries[from:] {
		if e.FromPlugin && strings.HasPrefix(e.Message, "panic: ") && panicMsg == "" {
			panicMsg = e.Message
		}
		// The host logs "wasm: plugin <name>: <callback> failed: <reason>".
		if e.FromPlugin || e.Level != "error" || !strings.HasPrefix(e.Message, "wasm: plugin ") {
			continue
		}
		head, reason, ok := strings.Cut(e.Message, " failed: ")
		if !ok {
			continue
		}
		callback := head[strings.LastIndex(head, ": ")+2:]
		msg := "in " + callback + ": "
		if strings.HasPrefix(reason, "deadline exceeded") {
			reason = fmt.Sprintf("it did not return within %v (an endless loop?) and was stopped by the call deadline", p.callDeadline)
		}
		if panicMsg != "" {
			msg += panicMsg + " (" + reason + ")"
		} else {
			msg += reason
		}
		if st := e.Attrs["stack"]; st != "" {
			msg += "\n    " + strings.ReplaceAll(st, "\n", "\n    ")
		}
		return msg, true
	}
	return "", false
}

// pluginFor is the plugin that serves a stream on route: its RouteConfig
// one, else the plugin's own configuration.
func (p *Plugin) pluginFor(route string) *wasm.Plugin {
	if rp := p.routes[route]; rp != nil {
		return rp
	}
	return p.plugin
}
