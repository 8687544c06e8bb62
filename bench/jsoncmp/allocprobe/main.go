// Command allocprobe is bench/jsoncmp's noop plugin (the seed's SDK
// calls, no JSON) that also reports its own Go runtime's counters, so a
// test can count what a stream costs inside the guest: at each stream's
// response headers it sets x-guest-mallocs, x-guest-bytes and
// x-guest-gcs to the guest's cumulative runtime.MemStats Mallocs,
// TotalAlloc and NumGC, read before anything else in that callback
// (TestGuestAllocationsPerStream, docs/perf.md "Issue 12/16: the Go
// guest's floor").
package main

import (
	"runtime"
	"strconv"
	"unsafe"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

func main() { proxywasm.SetVMContext(&vmContext{}) }

type vmContext struct{ types.DefaultVMContext }

func (*vmContext) NewPluginContext(uint32) types.PluginContext { return &pluginContext{} }

type pluginContext struct{ types.DefaultPluginContext }

func (*pluginContext) NewHttpContext(uint32) types.HttpContext { return &httpContext{} }

type httpContext struct {
	types.DefaultHttpContext
	size int
}

func (c *httpContext) OnHttpRequestHeaders(int, bool) types.Action {
	if _, err := proxywasm.GetHttpRequestHeader("content-type"); err != nil {
		return types.ActionPause
	}
	return types.ActionContinue
}

func (c *httpContext) OnHttpRequestBody(size int, end bool) types.Action {
	c.size += size
	if !end {
		return types.ActionPause
	}
	if _, err := proxywasm.GetHttpRequestBody(0, c.size); err != nil {
		return types.ActionPause
	}
	return types.ActionContinue
}

var (
	ms  runtime.MemStats
	num [3][20]byte // formatted counters: no allocation of the probe's own
)

func (c *httpContext) OnHttpResponseHeaders(int, bool) types.Action {
	runtime.ReadMemStats(&ms)
	for i, h := range [3]struct {
		name string
		v    uint64
	}{{"x-guest-mallocs", ms.Mallocs}, {"x-guest-bytes", ms.TotalAlloc}, {"x-guest-gcs", uint64(ms.NumGC)}} {
		b := strconv.AppendUint(num[i][:0], h.v, 10)
		if err := proxywasm.ReplaceHttpResponseHeader(h.name, unsafe.String(unsafe.SliceData(b), len(b))); err != nil {
			proxywasm.LogErrorf("setting %s: %v", h.name, err)
		}
	}
	return types.ActionContinue
}
