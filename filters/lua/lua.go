// Package lua is envoy.filters.http.lua on a pure-Go Lua 5.1 VM
// (github.com/yuin/gopher-lua), with the subset of Envoy's stream API
// that configs use, restated from source/extensions/filters/http/lua/:
//
// The script defines envoy_on_request(handle) and/or
// envoy_on_response(handle); each runs as a coroutine when that
// direction's headers arrive. handle:headers() reads and edits the
// headers (get, add, replace, remove); handle:body() waits for the whole
// body (the headers are held meanwhile) and returns a buffer (length,
// getBytes, setBytes), or nil when the direction has no body;
// handle:bodyChunks() iterates over the body's chunks as they arrive
// (each may be edited before it goes on); handle:trailers() waits for
// the direction's end and returns its trailers (or nil);
// handle:httpCall(cluster, headers, body, timeout_ms[, asynchronous])
// asks a cluster through the proxy's cluster path and waits for the
// answer (headers table, body), the direction held meanwhile;
// handle:respond(headers, body) answers the client from the request
// path; handle:logTrace/logDebug/logInfo/logWarn/logErr/logCritical log
// at that level; handle:metadata():get(key) reads the route's metadata
// under "envoy.filters.http.lua"; handle:streamInfo():protocol() and
// handle:streamInfo():dynamicMetadata() (get(ns), set(ns, key, value))
// reach the stream.
//
// A script error (including one of the API's argument checks) is
// Envoy's: it is logged, counted (errors), and the stream goes on as if
// the script had finished; it never fails the proxy. A runaway script is
// bounded: each run of a script (from the headers, or resumed by a
// body, chunk, trailers or call answer) has a deadline (Budget), after
// which it fails as an error. A script runs on its own goroutine, handed
// control by the stream's (see coroutine).
// The os library is reduced to time functions (no exit, execute,
// remove), io, debug and package loading are not opened.
//
// Per route, LuaPerRoute disables the filter or picks another script
// (a named source_codes entry, or its own source_code). Stats
// http.<stat_prefix>.lua.[<filter stat_prefix>.]executions and errors.
package lua

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	glua "github.com/yuin/gopher-lua"

	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/filters"
	"github.com/wasmproxy/wasmproxy/filters/internal/async"
	"github.com/wasmproxy/wasmproxy/stats"
)

// Name is the filter's canonical name, and its metadata namespace.
const Name = "envoy.filters.http.lua"

// Budget bounds one run of a script coroutine (wall clock): a script
// still running after it fails with an error. Envoy has no bound (a
// runaway script blocks its worker); this one keeps the stream's
// goroutine, not the proxy, and then gives it back.
var budget atomic.Int64

func init() {
	budget.Store(int64(time.Second))
	filters.Register(&filters.Native{
		Name:          Name,
		Config:        "envoy.extensions.filters.http.lua.v3.Lua",
		Parse:         parseConfig,
		PerRoute:      "envoy.extensions.filters.http.lua.v3.LuaPerRoute",
		ParsePerRoute: parsePerRoute,
		New:           newFactory,
	})
}

// SetBudget changes the bound of one coroutine run (for tests).
func SetBudget(d time.Duration) { budget.Store(int64(d)) }

type factory struct {
	name             string
	cfg              *Config
	log              *slog.Logger
	ups              filter.Upstreams
	executions, errs *stats.Counter
}

func newFactory(cfg any, env filters.Env) (filter.Factory, error) {
	f := &factory{name: env.FilterName, cfg: cfg.(*Config), log: env.Log, ups: env.Upstreams}
	if f.log == nil {
		f.log = slog.Default()
	}
	if env.Stats != nil {
		p := env.StatPrefix + "lua."
		if f.cfg.StatPrefix != "" {
			p += f.cfg.StatPrefix + "."
		}
		f.executions, f.errs = env.Stats.Counter(p+"executions"), env.Stats.Counter(p+"errors")
	}
	return f, nil
}

func (f *factory) NewStreamFilter(cb filter.Callbacks) filter.StreamFilter {
	return &stream{f: f, cb: cb}
}

// state is one Lua state with the script loaded.
type state struct {
	L                 *glua.LState
	onRequest, onResp *glua.LFunction
	broken            bool // an error left it unusable: closed, not pooled
}

// get takes a state of s from its pool, or makes one.
func (s *Script) get() (*state, error) {
	if st, ok := s.pool.Get().(*state); ok {
		return st, nil
	}
	L := glua.NewState(glua.Options{SkipOpenLibs: true, CallStackSize: 200, RegistrySize: 1024, RegistryGrowStep: 1024, RegistryMaxSize: 1 << 20})
	for _, lib := range []struct {
		name string
		fn   glua.LGFunction
	}{{glua.BaseLibName, glua.OpenBase}, {glua.TabLibName, glua.OpenTable}, {glua.StringLibName, glua.OpenString},
		{glua.MathLibName, glua.OpenMath}, {glua.CoroutineLibName, glua.OpenCoroutine}, {glua.OsLibName, glua.OpenOs}} {
		L.Push(L.NewFunction(lib.fn))
		L.Push(glua.LString(lib.name))
		L.Call(1, 0)
	}
	// Nothing a script does may end or change the process.
	if os, ok := L.GetGlobal("os").(*glua.LTable); ok {
		for _, name := range []string{"exit", "execute", "remove", "rename", "setenv", "setlocale", "tmpname"} {
			os.RawSetString(name, glua.LNil)
		}
	}
	for _, name := range []string{"dofile", "loadfile", "require", "module"} {
		L.SetGlobal(name, glua.LNil)
	}
	registerTypes(L)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(budget.Load()))
	defer cancel()
	L.SetContext(ctx)
	L.Push(L.NewFunctionFromProto(s.proto))
	err := L.PCall(0, 0, nil)
	L.RemoveContext()
	if err != nil {
		L.Close()
		return nil, err
	}
	st := &state{L: L}
	st.onRequest, _ = L.GetGlobal("envoy_on_request").(*glua.LFunction)
	st.onResp, _ = L.GetGlobal("envoy_on_response").(*glua.LFunction)
	return st, nil
}

func (s *Script) put(st *state) {
	if st.broken {
		st.L.Close()
		return
	}
	s.pool.Put(st)
}

type stream struct {
	filter.PassThrough
	f        *factory
	cb       filter.Callbacks
	script   *Script
	st       *state
	disabled bool
	resolved bool
	context  map[string]any // filterContext()
	// life ends with the stream: it bounds asynchronous calls that have
	// no timeout of their own (made on first use).
	life    context.Context
	endLife context.CancelFunc
	req     *coroutine
	resp    *coroutine
}

// wait is what a suspended script waits for (Envoy's coroutine states).
type wait int

const (
	notWaiting   wait = iota
	waitBody          // body(): the whole body
	waitChunk         // bodyChunks(): the next chunk
	waitTrailers      // trailers()
	waitCall          // httpCall(): the cluster's answer
	waitForever       // respond(): the script never runs again
)

// coroutine is one direction's script run. It runs on its own
// goroutine, but never at the same time as the stream's: the stream's
// goroutine hands it control (step) and waits until it suspends or
// ends, so the Lua state is used by one goroutine at a time. A suspended
// script is blocked inside the API call that waits (body(), the
// bodyChunks() iterator, trailers(), httpCall(), respond()); Lua 5.1
// cannot yield across a for-in iterator, a goroutine can.
type coroutine struct {
	s       *stream
	dir     filter.Direction
	th      *glua.LState
	cancel  context.CancelFunc
	headers *filter.HeaderMap
	// end: the direction's end was seen (headers, last data, trailers).
	end      bool
	body     *filter.Buffer // the data held here (body(), or while a call waits)
	trailers *filter.HeaderMap
	wait     wait
	// held: this filter stopped the direction and owes it a Continue
	// when the script stops waiting outside a filter callback.
	held      bool
	responded bool
	started   bool
	done      bool
	killed    bool
	err       error

	stopBudget func()

	resume chan []glua.LValue // stream → script: go on, with these results
	parked chan struct{}      // script → stream: suspended or ended
	dead   chan struct{}      // closed when the stream ends
	call   async.Call         // an httpCall in flight
}

// resolve picks the script: the route's, else the virtual host's, else
// the filter's default.
func (s *stream) resolve() {
	if s.resolved {
		return
	}
	s.resolved = true
	s.script = s.f.cfg.Default
	s.context = s.f.cfg.FilterContext
	route, vhost := filters.PerRoute(s.cb, s.f.name)
	pr, _ := route.(*PerRoute)
	if pr == nil {
		pr, _ = vhost.(*PerRoute)
	}
	if pr != nil {
		// Only the most specific entry counts, for the context too.
		if pr.FilterContext != nil {
			s.context = pr.FilterContext
		}
		switch {
		case pr.Disabled:
			s.disabled = true
		case pr.Script != nil:
			s.script = pr.Script
		case pr.Name != "":
			s.script = s.f.cfg.SourceCodes[pr.Name]
			if s.script == nil {
				// Envoy logs and runs nothing for a name it does not have.
				s.f.log.Error("lua: no source code named in LuaPerRoute", "name", pr.Name)
				s.disabled = true
			}
		}
	}
	if s.script == nil {
		s.disabled = true
	}
}

// start runs the direction's entry point, if the script has one, until
// it ends or waits.
func (s *stream) start(dir filter.Direction, h *filter.HeaderMap, end bool) *coroutine {
	s.resolve()
	if s.disabled {
		return nil
	}
	if s.st == nil {
		st, err := s.script.get()
		if err != nil {
			s.scriptError(err)
			s.disabled = true
			return nil
		}
		s.st = st
	}
	fn := s.st.onRequest
	if dir == filter.Response {
		fn = s.st.onResp
	}
	if fn == nil {
		return nil
	}
	inc(s.f.executions)
	co := &coroutine{s: s, dir: dir, headers: h, end: end,
		resume: make(chan []glua.LValue), parked: make(chan struct{}), dead: make(chan struct{})}
	co.th, co.cancel = s.st.L.NewThread()
	handle := newHandle(co)
	co.started = true
	go co.main(fn, handle)
	co.step()
	return co
}

// running counts script goroutines (tests check none outlives its
// stream).
var running atomic.Int64

// main is the script's goroutine.
func (co *coroutine) main(fn *glua.LFunction, handle glua.LValue) {
	running.Add(1)
	defer running.Add(-1)
	<-co.resume
	co.budget()
	err := co.th.CallByParam(glua.P{Fn: fn, NRet: 0, Protect: true}, handle)
	co.stopBudget()
	co.err, co.done, co.wait = err, true, notWaiting
	co.parked <- struct{}{}
}

// budget bounds the script's run until it next suspends (stopBudget).
func (co *coroutine) budget() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(budget.Load()))
	co.th.SetContext(ctx)
	co.stopBudget = func() {
		co.th.RemoveContext()
		cancel()
	}
}

// step hands the script control (with results for the call it waits
// in) and waits until it suspends or ends; on the stream's goroutine.
func (co *coroutine) step(results ...glua.LValue) {
	var version uint64
	if co.dir == filter.Request && co.headers != nil {
		version = co.headers.Version()
	}
	co.wait = notWaiting
	co.resume <- results
	<-co.parked
	if co.dir == filter.Request && co.headers != nil && co.headers.Version() != version {
		// Envoy's Lua filter clears the route cache when a script
		// edits the request headers.
		if rc, ok := co.s.cb.(filter.RouteCacheClearer); ok {
			rc.ClearRouteCache()
		}
	}
	if co.done && co.err != nil && !co.killed {
		co.s.scriptError(co.err)
	}
}

// suspend parks the script until the stream's goroutine steps it again;
// on the script's goroutine, from an API call. It returns what the step
// passes (the budget starts again), or unwinds the script when the
// stream ended meanwhile.
func (co *coroutine) suspend(L *glua.LState, w wait) []glua.LValue {
	select {
	case <-co.dead:
		L.RaiseError(streamEnded)
	default:
	}
	co.wait = w
	co.stopBudget()
	co.parked <- struct{}{}
	select {
	case res := <-co.resume:
		co.budget()
		return res
	case <-co.dead:
		co.budget() // a script that catches the error stays bounded
		L.RaiseError(streamEnded)
		return nil
	}
}

// streamEnded unwinds a script still waiting when its stream ends.
const streamEnded = "the stream has ended"

// kill ends a suspended script at the stream's end and waits until its
// goroutine has let go of the state.
func (co *coroutine) kill() {
	co.call.End()
	if co.started && !co.done {
		co.killed = true
		close(co.dead)
		<-co.parked
		// Unwound to the top, the state is as a finished script leaves
		// it (a respond() ends this way on every local reply); a script
		// that caught the unwinding and went on may have left anything.
		if co.err == nil || !strings.Contains(co.err.Error(), streamEnded) {
			co.s.st.broken = true
		}
	}
	if co.cancel != nil {
		co.cancel()
	}
}

// scriptError is Envoy's: logged, counted, and the stream goes on.
func (s *stream) scriptError(err error) {
	inc(s.f.errs)
	if s.st != nil {
		// The state may hold a half-run coroutine's garbage; start over.
		s.st.broken = true
	}
	s.f.log.Error("script log: "+oneLine(err.Error()), "filter", s.f.name)
}

func inc(c *stats.Counter) {
	if c != nil {
		c.Inc()
	}
}

// buffering: the script holds the direction's data until it goes on.
func (co *coroutine) buffering() bool { return co.wait == waitBody || co.wait == waitCall }

// headersStatus is what a direction's headers callback answers.
func (co *coroutine) headersStatus() filter.HeadersStatus {
	if co == nil || co.done {
		return filter.HeadersContinue
	}
	// Responded (the local reply is queued) or waiting.
	co.held = !co.responded
	return filter.HeadersStopIteration
}

func (co *coroutine) data(data *filter.Buffer, end bool) filter.DataStatus {
	if co == nil || co.done {
		return filter.DataContinue
	}
	if co.responded {
		return filter.DataStopIterationNoBuffer
	}
	co.end = co.end || end
	switch co.wait {
	case waitChunk:
		co.step(newBuffer(co, data, false))
	case waitBody:
		co.body = data
		if end {
			co.step(newBuffer(co, data, true))
		}
	case waitTrailers:
		if end {
			co.step(glua.LNil)
		}
	case waitCall:
		co.body = data
	}
	switch {
	case co.responded:
		return filter.DataStopIterationNoBuffer
	case !co.done && co.buffering():
		co.held = true
		return filter.DataStopIterationAndBuffer
	}
	co.held = false // the data goes on, and the headers with it
	return filter.DataContinue
}

// trailers end the direction: a script waiting for its body, the next
// chunk or the trailers goes on.
func (co *coroutine) onTrailers(t *filter.HeaderMap) filter.TrailersStatus {
	if co == nil || co.done {
		return filter.TrailersContinue
	}
	co.end, co.trailers = true, t
	switch co.wait {
	case waitChunk:
		co.step(glua.LNil)
	case waitBody:
		if co.body == nil {
			co.body = &filter.Buffer{}
		}
		co.step(newBuffer(co, co.body, true))
	case waitTrailers:
		co.step(newHeaders(co, t))
	}
	if co.responded || !co.done && co.buffering() {
		co.held = !co.responded
		return filter.TrailersStopIteration
	}
	co.held = false
	return filter.TrailersContinue
}

// callDone resumes the script with an httpCall's answer, on the
// stream's goroutine (posted), and lets the direction go on unless the
// script waits for more.
func (co *coroutine) callDone(resp *filter.CalloutResponse) {
	if co.done || co.wait != waitCall {
		return
	}
	hdrs := co.th.NewTable()
	for _, p := range resp.Headers {
		hdrs.RawSetString(p.Key, glua.LString(p.Value)) // a repeated header: the last value, as Envoy's
	}
	var body glua.LValue = glua.LNil
	if len(resp.Body) > 0 {
		body = glua.LString(resp.Body)
	}
	co.step(hdrs, body)
	if co.responded || !co.done && (co.wait == waitCall || co.wait == waitBody && !co.end) {
		return
	}
	if co.held {
		co.held = false
		co.s.cb.Continue(co.dir)
	}
}

func (s *stream) DecodeHeaders(h *filter.HeaderMap, end bool) filter.HeadersStatus {
	s.req = s.start(filter.Request, h, end)
	return s.req.headersStatus()
}

func (s *stream) DecodeData(data *filter.Buffer, end bool) filter.DataStatus {
	return s.req.data(data, end)
}

func (s *stream) DecodeTrailers(t *filter.HeaderMap) filter.TrailersStatus {
	return s.req.onTrailers(t)
}

func (s *stream) EncodeHeaders(h *filter.HeaderMap, end bool) filter.HeadersStatus {
	s.resp = s.start(filter.Response, h, end)
	return s.resp.headersStatus()
}

func (s *stream) EncodeData(data *filter.Buffer, end bool) filter.DataStatus {
	return s.resp.data(data, end)
}

func (s *stream) EncodeTrailers(t *filter.HeaderMap) filter.TrailersStatus {
	return s.resp.onTrailers(t)
}

// OnDestroy ends the scripts still waiting, cancels their calls, and
// gives the state back.
func (s *stream) OnDestroy() {
	for _, co := range []*coroutine{s.req, s.resp} {
		if co != nil {
			co.kill()
		}
	}
	if s.endLife != nil {
		s.endLife()
	}
	if s.st != nil {
		s.script.put(s.st)
		s.st = nil
	}
}

// respond answers the client (request path only).
func (co *coroutine) respond(status int, headers []filter.Pair, body []byte) {
	co.responded = true
	co.s.cb.SendLocalReply(status, body, headers, "lua_response")
}

func statusOf(v string) (int, bool) {
	n, err := strconv.Atoi(v)
	return n, err == nil && n >= 100 && n <= 999
}
