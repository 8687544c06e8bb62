// Command queues is the Go SDK conformance plugin for shared queues: each
// root context registers "conformance-queue"; a request under /enqueue
// resolves it by name and enqueues "go <path>"; the registrant drains the
// queue in proxy_on_queue_ready and logs each message
// (conformance/README.md, area "queues").
package main

import (
	"errors"
	"strings"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

const queueName = "conformance-queue"

func main() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

type plugin struct{ types.DefaultPluginContext }

func (*plugin) OnPluginStart(int) types.OnPluginStartStatus {
	_, err := proxywasm.RegisterSharedQueue(queueName)
	return err == nil
}

func (*plugin) OnQueueReady(queueID uint32) {
	for {
		msg, err := proxywasm.DequeueSharedQueue(queueID)
		if errors.Is(err, types.ErrorStatusEmpty) {
			return
		}
		if err != nil {
			proxywasm.LogErrorf("dequeue: %v", err)
			return
		}
		proxywasm.LogInfof("dequeued %s", msg)
	}
}

func (*plugin) NewHttpContext(uint32) types.HttpContext { return &stream{} }

type stream struct{ types.DefaultHttpContext }

func (*stream) OnHttpRequestHeaders(int, bool) types.Action {
	path, err := proxywasm.GetHttpRequestHeader(":path")
	if err != nil || !strings.HasPrefix(path, "/enqueue") {
		return types.ActionContinue
	}
	id, err := proxywasm.ResolveSharedQueue("", queueName)
	if err == nil {
		err = proxywasm.EnqueueSharedQueue(id, []byte("go "+path))
	}
	if err != nil {
		proxywasm.LogErrorf("enqueue: %v", err)
	}
	return types.ActionContinue
}
