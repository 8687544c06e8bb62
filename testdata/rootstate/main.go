// Package main keeps state in its root context, so that a test can see
// whether a reload kept a root context or made a new one. Every response
// carries, in headers, the configuration of the root context that served
// the stream, how many streams that root context has begun, how many
// times it was configured, and the configurations of the root contexts
// the host has finished (proxy_on_done), which it records in shared data.
package main

import (
	"strconv"
	"strings"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

func main() {}

func init() { proxywasm.SetVMContext(&vm{}) }

type vm struct{ types.DefaultVMContext }

func (*vm) NewPluginContext(uint32) types.PluginContext { return &root{} }

// root is one root context: one plugin configuration.
type root struct {
	types.DefaultPluginContext
	config     string
	configured int
	streams    int
}

func (r *root) OnPluginStart(int) types.OnPluginStartStatus {
	b, err := proxywasm.GetPluginConfiguration()
	if err != nil {
		proxywasm.LogErrorf("configuration: %v", err)
		return types.OnPluginStartStatusFailed
	}
	r.config = string(b)
	r.configured++
	return types.OnPluginStartStatusOK
}

// OnPluginDone appends the configuration to the shared "done" list.
func (r *root) OnPluginDone() bool {
	for {
		v, cas, err := proxywasm.GetSharedData("done")
		if err != nil && err != types.ErrorStatusNotFound {
			proxywasm.LogErrorf("done: %v", err)
			return true
		}
		next := r.config
		if len(v) > 0 {
			next = string(v) + "," + r.config
		}
		if err := proxywasm.SetSharedData("done", []byte(next), cas); err != types.ErrorStatusCasMismatch {
			return true
		}
	}
}

func (r *root) NewHttpContext(uint32) types.HttpContext {
	r.streams++
	return &stream{root: r, n: r.streams}
}

type stream struct {
	types.DefaultHttpContext
	root *root
	n    int
}

func (s *stream) OnHttpResponseHeaders(int, bool) types.Action {
	done, _, _ := proxywasm.GetSharedData("done")
	for _, h := range [][2]string{
		{"x-config", s.root.config},
		{"x-stream", strconv.Itoa(s.n)},
		{"x-configured", strconv.Itoa(s.root.configured)},
		{"x-done", strings.TrimSpace(string(done))},
	} {
		if err := proxywasm.AddHttpResponseHeader(h[0], h[1]); err != nil {
			proxywasm.LogErrorf("%s: %v", h[0], err)
		}
	}
	return types.ActionContinue
}
