// Package main defines a counter per route, a gauge and a histogram, the
// way metrics plugins do, and logs from on_configure so the log prefix
// can be checked (with the host's log level, from proxy_get_log_level).
// Plugin configuration "log-only" defines no metrics.
package main

import (
	"strings"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

type plugin struct {
	types.DefaultPluginContext
	metrics  bool
	requests map[string]proxywasm.MetricCounter
	lastBody proxywasm.MetricGauge
	sizes    proxywasm.MetricHistogram
}

func (p *plugin) OnPluginStart(int) types.OnPluginStartStatus {
	cfg, _ := proxywasm.GetPluginConfiguration()
	level, err := proxywasm.GetLogLevel()
	if err != nil {
		proxywasm.LogCriticalf("get log level: %v", err)
		return types.OnPluginStartStatusFailed
	}
	proxywasm.LogInfof("configured %s (log level %s)", cfg, level)
	if string(cfg) == "log-only" {
		return types.OnPluginStartStatusOK
	}
	p.metrics = true
	p.requests = map[string]proxywasm.MetricCounter{}
	p.lastBody = proxywasm.DefineGaugeMetric("e2eplugin.last_body_bytes")
	p.sizes = proxywasm.DefineHistogramMetric("e2eplugin.body_bytes")
	return types.OnPluginStartStatusOK
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{p: p} }

type stream struct {
	types.DefaultHttpContext
	p    *plugin
	size int
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	if !s.p.metrics {
		return types.ActionContinue
	}
	path, _ := proxywasm.GetHttpRequestHeader(":path")
	route, _, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	c, ok := s.p.requests[route]
	if !ok {
		// Defined once per route and instance; the host keeps one stat
		// per name, shared by every definition.
		c = proxywasm.DefineCounterMetric("e2eplugin.requests." + route + ".total")
		s.p.requests[route] = c
	}
	c.Increment(1)
	return types.ActionContinue
}

func (s *stream) OnHttpRequestBody(bodySize int, endOfStream bool) types.Action {
	if endOfStream {
		s.size = bodySize
	}
	return types.ActionContinue
}

func (s *stream) OnHttpStreamDone() {
	if !s.p.metrics {
		return
	}
	s.p.sizes.Record(uint64(s.size))
	s.p.lastBody.Add(int64(s.size) - s.p.lastBody.Value())
}
