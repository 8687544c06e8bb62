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
// bounded: each run of a coroutine (from the headers, or resumed with
// the body) has a deadline (Budget), after which it fails as an error.
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
	"sync/atomic"
	"time"

	glua "github.com/yuin/gopher-lua"

	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/filters"
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
	executions, errs *stats.Counter
}

func newFactory(cfg any, env filters.Env) (filter.Factory, error) {
	f := &factory{name: env.FilterName, cfg: cfg.(*Config), log: env.Log}
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
	f        *factory
	cb       filter.Callbacks
	script   *Script
	st       *state
	disabled bool
	resolved bool
	req      *coroutine
	resp     *coroutine
}

// coroutine is one direction's script run.
type coroutine struct {
	s       *stream
	dir     filter.Direction
	th      *glua.LState
	cancel  context.CancelFunc
	headers *filter.HeaderMap
	end     bool // the headers ended the direction
	// waitingBody: the script called body() and is suspended.
	waitingBody  bool
	body         *filter.Buffer
	bodyComplete bool
	responded    bool
	done         bool
}

// resolve picks the script: the route's, else the virtual host's, else
// the filter's default.
func (s *stream) resolve() {
	if s.resolved {
		return
	}
	s.resolved = true
	s.script = s.f.cfg.Default
	route, vhost := filters.PerRoute(s.cb, s.f.name)
	pr, _ := route.(*PerRoute)
	if pr == nil {
		pr, _ = vhost.(*PerRoute)
	}
	if pr != nil {
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

// start runs the direction's entry point, if the script has one.
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
	co := &coroutine{s: s, dir: dir, headers: h, end: end}
	co.th, co.cancel = s.st.L.NewThread()
	co.run(fn, newHandle(co))
	return co
}

// run starts or resumes the coroutine within the budget.
func (co *coroutine) run(fn *glua.LFunction, args ...glua.LValue) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(budget.Load()))
	defer cancel()
	co.th.SetContext(ctx)
	co.waitingBody = false
	res, err, _ := co.s.st.L.Resume(co.th, fn, args...)
	co.th.RemoveContext()
	switch {
	case err != nil:
		co.s.scriptError(err)
		co.finish()
	case res == glua.ResumeOK, co.responded:
		// Done, or respond() yielded for good.
		co.finish()
	}
}

func (co *coroutine) finish() {
	co.done = true
	co.waitingBody = false
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

// headersStatus is what a direction's headers callback answers.
func (co *coroutine) headersStatus() filter.HeadersStatus {
	if co == nil || co.done && !co.responded {
		return filter.HeadersContinue
	}
	// Responded (the local reply is queued) or waiting for the body.
	return filter.HeadersStopIteration
}

func (co *coroutine) data(data *filter.Buffer, end bool) filter.DataStatus {
	if co == nil || !co.waitingBody {
		if co != nil && co.responded {
			return filter.DataStopIterationNoBuffer
		}
		return filter.DataContinue
	}
	if !end {
		return filter.DataStopIterationAndBuffer
	}
	co.body, co.bodyComplete = data, true
	co.run(nil, newBuffer(co))
	if co.responded {
		return filter.DataStopIterationNoBuffer
	}
	if co.waitingBody {
		return filter.DataStopIterationAndBuffer // body() again: the body is whole, but answer as Envoy would
	}
	return filter.DataContinue
}

// trailers end a body the script waits for.
func (co *coroutine) trailers() filter.TrailersStatus {
	if co != nil && co.waitingBody {
		if co.body == nil {
			co.body = &filter.Buffer{}
		}
		co.bodyComplete = true
		co.run(nil, newBuffer(co))
	}
	if co != nil && co.responded {
		return filter.TrailersStopIteration
	}
	return filter.TrailersContinue
}

func (s *stream) DecodeHeaders(h *filter.HeaderMap, end bool) filter.HeadersStatus {
	s.req = s.start(filter.Request, h, end)
	return s.req.headersStatus()
}

func (s *stream) DecodeData(data *filter.Buffer, end bool) filter.DataStatus {
	if s.req != nil && s.req.waitingBody {
		s.req.body = data
	}
	return s.req.data(data, end)
}

func (s *stream) DecodeTrailers(*filter.HeaderMap) filter.TrailersStatus { return s.req.trailers() }

func (s *stream) EncodeHeaders(h *filter.HeaderMap, end bool) filter.HeadersStatus {
	s.resp = s.start(filter.Response, h, end)
	return s.resp.headersStatus()
}

func (s *stream) EncodeData(data *filter.Buffer, end bool) filter.DataStatus {
	if s.resp != nil && s.resp.waitingBody {
		s.resp.body = data
	}
	return s.resp.data(data, end)
}

func (s *stream) EncodeTrailers(*filter.HeaderMap) filter.TrailersStatus { return s.resp.trailers() }

func (s *stream) OnLog() {}

// OnDestroy ends the coroutines and gives the state back.
func (s *stream) OnDestroy() {
	for _, co := range []*coroutine{s.req, s.resp} {
		if co != nil && co.cancel != nil {
			co.cancel()
		}
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
