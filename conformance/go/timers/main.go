// Command timers is the Go SDK conformance plugin for timers: each root
// context asks for a tick every 50 ms and adds one to the gauge
// conformance_go_ticks on each (conformance/README.md, area "timers").
package main

import (
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

func main() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

type plugin struct {
	types.DefaultPluginContext
	ticks proxywasm.MetricGauge
}

func (p *plugin) OnPluginStart(int) types.OnPluginStartStatus {
	p.ticks = proxywasm.DefineGaugeMetric("conformance_go_ticks")
	return proxywasm.SetTickPeriodMilliSeconds(50) == nil
}

func (p *plugin) OnTick() { p.ticks.Add(1) }
