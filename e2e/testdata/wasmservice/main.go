// Package main is one plugin with two root contexts, picked by root_id:
// "service" runs as a bootstrap_extensions WasmService (no traffic: it
// ticks, calls a cluster, drains a shared queue and writes shared data),
// "filter" is an HTTP filter with the same vm_id that reads that shared
// data into response headers and feeds the queue.
package main

import (
	"strconv"
	"strings"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &root{} })
}

type root struct {
	types.DefaultPluginContext
	service   bool
	calling   bool
	queueID   uint32
	nextTicks int
}

func (r *root) OnPluginStart(int) types.OnPluginStartStatus {
	id, err := proxywasm.GetProperty([]string{"plugin_root_id"})
	if err != nil {
		proxywasm.LogCriticalf("plugin_root_id: %v", err)
		return types.OnPluginStartStatusFailed
	}
	if string(id) != "service" {
		return types.OnPluginStartStatusOK
	}
	r.service = true
	if r.queueID, err = proxywasm.RegisterSharedQueue("jobs"); err != nil {
		proxywasm.LogCriticalf("register queue: %v", err)
		return types.OnPluginStartStatusFailed
	}
	add("svc_instances", func(old string) string { return strconv.Itoa(atoi(old) + 1) })
	if err := proxywasm.SetTickPeriodMilliSeconds(20); err != nil {
		proxywasm.LogCriticalf("tick: %v", err)
		return types.OnPluginStartStatusFailed
	}
	proxywasm.LogInfo("service started")
	return types.OnPluginStartStatusOK
}

// add updates shared data key with CAS, retrying on a conflict: several
// instances may update it at once.
func add(key string, update func(old string) string) {
	for {
		old, cas, err := proxywasm.GetSharedData(key)
		if err != nil && err != types.ErrorStatusNotFound {
			proxywasm.LogErrorf("get %s: %v", key, err)
			return
		}
		err = proxywasm.SetSharedData(key, []byte(update(string(old))), cas)
		if err != types.ErrorStatusCasMismatch {
			if err != nil {
				proxywasm.LogErrorf("set %s: %v", key, err)
			}
			return
		}
	}
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

func (r *root) OnTick() {
	add("svc_ticks", func(old string) string { return strconv.Itoa(atoi(old) + 1) })
	if r.calling {
		return
	}
	r.calling = true
	_, err := proxywasm.DispatchHttpCall("backend",
		[][2]string{{":method", "GET"}, {":path", "/ping"}, {":authority", "backend"}}, nil, nil, 2000,
		func(numHeaders, bodySize, _ int) {
			r.calling = false
			if numHeaders == 0 {
				proxywasm.LogWarn("ping failed")
				return
			}
			body, _ := proxywasm.GetHttpCallResponseBody(0, bodySize)
			_ = proxywasm.SetSharedData("svc_callout", body, 0)
		})
	if err != nil {
		r.calling = false
		proxywasm.LogErrorf("dispatch: %v", err)
	}
}

func (r *root) OnQueueReady(queueID uint32) {
	for {
		item, err := proxywasm.DequeueSharedQueue(queueID)
		if err != nil {
			return // EMPTY
		}
		add("svc_jobs", func(old string) string {
			if old == "" {
				return string(item)
			}
			return old + "," + string(item)
		})
	}
}

func (r *root) NewHttpContext(uint32) types.HttpContext {
	if r.service {
		return nil
	}
	return &filter{}
}

type filter struct {
	types.DefaultHttpContext
	seen [][2]string
}

func (f *filter) OnHttpRequestHeaders(int, bool) types.Action {
	for _, key := range []string{"svc_ticks", "svc_callout", "svc_jobs", "svc_instances"} {
		v, _, err := proxywasm.GetSharedData(key)
		if err == nil {
			f.seen = append(f.seen, [2]string{"x-" + strings.ReplaceAll(key, "_", "-"), string(v)})
		}
	}
	path, _ := proxywasm.GetHttpRequestHeader(":path")
	if strings.HasPrefix(path, "/job") {
		id, err := proxywasm.ResolveSharedQueue("", "jobs")
		if err == nil {
			err = proxywasm.EnqueueSharedQueue(id, []byte(path))
		}
		if err != nil {
			proxywasm.LogErrorf("enqueue: %v", err)
		}
	}
	return types.ActionContinue
}

func (f *filter) OnHttpResponseHeaders(int, bool) types.Action {
	for _, kv := range f.seen {
		_ = proxywasm.ReplaceHttpResponseHeader(kv[0], kv[1])
	}
	return types.ActionContinue
}
