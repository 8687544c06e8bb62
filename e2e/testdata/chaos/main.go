// Package main is the chaos plugin of the isolation tests: it misbehaves
// on purpose, as its plugin configuration and each request's x-chaos
// header say, so the tests can check that only the streams it breaks
// fail, exactly as the failure policy says, and that the proxy recovers.
//
// Plugin configuration (one word, optional ":N"):
//
//	""          behave, unless the request asks otherwise
//	panic:N     panic in on_request_headers on every Nth request of an instance
//	tick        panic in on_tick (period 20 ms)
//	reloadfail  panic in on_configure in every instance started after the first pool
//
// x-chaos request header: "panic", "loop" (never returns), "alloc" (allocates
// until memory runs out), "fill" (the same, writing to every page it gets),
// "slow" (busy for 30 ms, under the deadline),
// "callout" (an HTTP call to cluster "callout" whose response handler panics),
// "hold" (the request stays paused for good, after the log line "chaos:
// holding request": only a trap on its instance answers it).
//
// On a TCP listener (envoy.filters.network.wasm) the first downstream
// data of a connection says what to do, by its first word: the same
// words as x-chaos, where "callout" holds the connection's data paused
// until the call's response, whose handler panics; any other data passes.
// "panic:N" panics on the first data of every Nth connection.
package main

import (
	"encoding/binary"
	"strconv"
	"strings"
	"time"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

func main() {}

func init() { proxywasm.SetVMContext(&vm{}) }

type vm struct{ types.DefaultVMContext }

func (*vm) NewPluginContext(uint32) types.PluginContext { return &plugin{} }

type plugin struct {
	types.DefaultPluginContext
	mode     string
	n        int
	requests int
}

func (p *plugin) OnPluginStart(int) types.OnPluginStartStatus {
	conf, _ := proxywasm.GetPluginConfiguration()
	mode, arg, _ := strings.Cut(strings.TrimSpace(string(conf)), ":")
	p.mode = mode
	p.n, _ = strconv.Atoi(arg)
	switch mode {
	case "tick":
		_ = proxywasm.SetTickPeriodMilliSeconds(20)
	case "reloadfail":
		// Count starts across instances in shared data; the first
		// pool (up to 2 instances) starts, every later one traps.
		for {
			v, cas, _ := proxywasm.GetSharedData("chaos.starts")
			n := uint64(0)
			if len(v) == 8 {
				n = binary.LittleEndian.Uint64(v)
			}
			if n >= 2 {
				panic("chaos: on_configure trap after reload")
			}
			b := binary.LittleEndian.AppendUint64(nil, n+1)
			if proxywasm.SetSharedData("chaos.starts", b, cas) == nil {
				break
			}
		}
	}
	return types.OnPluginStartStatusOK
}

func (p *plugin) OnTick() { panic("chaos: on_tick trap") }

func (p *plugin) NewTcpContext(uint32) types.TcpContext { return &conn{p: p} }

type conn struct {
	types.DefaultTcpContext
	p       *plugin
	seen    bool // the first data has been looked at
	holding bool // the data waits for a callout's response
}

func (c *conn) OnDownstreamData(size int, _ bool) types.Action {
	if c.holding {
		return types.ActionPause // more data (or the end) while held
	}
	if c.seen || size == 0 {
		return types.ActionContinue
	}
	c.seen = true
	c.p.requests++
	if c.p.mode == "panic" && c.p.n > 0 && c.p.requests%c.p.n == 0 {
		panic("chaos: every Nth connection")
	}
	data, _ := proxywasm.GetDownstreamData(0, size)
	word, _, _ := strings.Cut(strings.TrimSpace(string(data)), " ")
	if word == "callout" {
		_, err := proxywasm.DispatchHttpCall("callout", [][2]string{{":method", "GET"}, {":path", "/"}, {":authority", "callout"}}, nil, nil, 5000,
			func(int, int, int) { panic("chaos: on_http_call_response trap (tcp)") })
		if err != nil {
			proxywasm.LogCriticalf("dispatch: %v", err)
			return types.ActionContinue
		}
		c.holding = true
		return types.ActionPause
	}
	misbehave(word)
	return types.ActionContinue
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{p: p} }

type stream struct {
	types.DefaultHttpContext
	p *plugin
}

var hoard [][]byte

// misbehave does what word asks: "panic", "loop" (never returns),
// "alloc" and "fill" (until memory runs out), "slow" (30 ms busy);
// anything else nothing.
func misbehave(word string) {
	switch word {
	case "panic":
		panic("chaos: asked to panic")
	case "loop":
		for x := 0; ; x++ {
			if x < 0 {
				break
			}
		}
	case "alloc":
		for {
			hoard = append(hoard, make([]byte, 1<<20))
		}
	case "fill":
		for {
			b := make([]byte, 1<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			hoard = append(hoard, b)
		}
	case "slow":
		for start := time.Now(); time.Since(start) < 30*time.Millisecond; {
		}
	}
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	s.p.requests++
	if s.p.mode == "panic" && s.p.n > 0 && s.p.requests%s.p.n == 0 {
		panic("chaos: every Nth request")
	}
	what, _ := proxywasm.GetHttpRequestHeader("x-chaos")
	misbehave(what)
	switch what {
	case "hold":
		proxywasm.LogWarn("chaos: holding request")
		return types.ActionPause
	case "callout":
		_, err := proxywasm.DispatchHttpCall("callout", [][2]string{{":method", "GET"}, {":path", "/"}, {":authority", "callout"}}, nil, nil, 5000,
			func(int, int, int) { panic("chaos: on_http_call_response trap") })
		if err != nil {
			proxywasm.LogCriticalf("dispatch: %v", err)
			return types.ActionContinue
		}
		return types.ActionPause
	}
	_ = proxywasm.AddHttpResponseHeader("x-chaos-ok", "1")
	return types.ActionContinue
}
