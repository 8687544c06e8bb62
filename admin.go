package wasmproxy

import (
	"context"
	"encoding/json"

	"github.com/wasmproxy/wasmproxy/admin"
	"github.com/wasmproxy/wasmproxy/wasm"
)

// adminProvider exposes the running proxy to the admin server.
type adminProvider struct{ p *Proxy }

var (
	_ admin.Reloader              = (*adminProvider)(nil)
	_ admin.LogReopener           = (*adminProvider)(nil)
	_ admin.ExtensionConfigDumper = (*adminProvider)(nil)
	_ admin.StatusProvider        = (*adminProvider)(nil)
)

// PluginStatus is every loaded plugin's live state for the home page,
// as the Wasm host keeps it (wasm.Host.Status).
func (a *adminProvider) PluginStatus() []admin.PluginStatus {
	src := a.p.host.Status()
	out := make([]admin.PluginStatus, 0, len(src))
	for _, ps := range src {
		st := admin.PluginStatus{
			Name: ps.Name, VM: ps.VM, FailurePolicy: ps.FailurePolicy,
			Traps: ps.Traps, DeadlineExceeded: ps.DeadlineExceeded, MemoryLimitExceeded: ps.MemoryLimitExceeded,
			Requests:   ps.Traffic.Requests,
			Slot:       wasm.MeterSlot,
			LastMinute: admin.TrafficPoint(ps.Traffic.LastMinute),
		}
		for _, is := range ps.Instances {
			st.Instances = append(st.Instances, admin.InstanceStatus(is))
		}
		if e := ps.LastError; e != nil {
			le := admin.PluginError(*e)
			st.LastError = &le
		}
		for _, pt := range ps.Traffic.Points {
			st.Points = append(st.Points, admin.TrafficPoint(pt))
		}
		out = append(out, st)
	}
	return out
}

// ReopenLogs reopens the access log files (POST /reopen_logs).
func (a *adminProvider) ReopenLogs() { a.p.ReopenLogs() }

func (a *adminProvider) ServerInfo() admin.ServerInfo {
	p := a.p
	state := admin.StateLive
	switch {
	case p.srv.Draining():
		state = admin.StateDraining
	case p.xdsInitializing.Load(), p.xdsWarmingInit.Load():
		state = admin.StateInitializing
	}
	opts := p.opts.CommandLine
	if opts.Concurrency == 0 {
		opts.Concurrency = uint32(p.opts.Concurrency)
	}
	if opts.ConfigPath == "" {
		opts.ConfigPath = p.opts.ConfigPath
	}
	if opts.DrainTime == 0 {
		opts.DrainTime = p.opts.DrainTimeout
	}
	opts.DisableHotRestart = true
	info := admin.ServerInfo{
		Version:   "wasmproxy/" + p.opts.Version,
		State:     state,
		StartTime: p.srv.Started(),
		Options:   opts,
	}
	if n := p.node; n != nil { // the bootstrap's, as started: a reload does not change it
		info.Node = admin.NodeInfo{ID: n.ID, Cluster: n.Cluster, UserAgentVersion: p.opts.Version}
	}
	return info
}

func (a *adminProvider) Listeners() []admin.ListenerInfo {
	var out []admin.ListenerInfo
	for _, l := range a.p.srv.ListenerStatuses() {
		out = append(out, admin.ListenerInfo{Name: l.Name, Address: l.Address})
	}
	return out
}

func (a *adminProvider) Clusters() []admin.ClusterInfo {
	var out []admin.ClusterInfo
	for _, c := range a.p.srv.ClusterStatuses() {
		ci := admin.ClusterInfo{Name: c.Name}
		if cb := c.CircuitBreakers; cb != nil {
			// The configured DEFAULT thresholds; HIGH ones are refused by
			// the config, so they keep Envoy's defaults, as Envoy prints
			// a priority the config leaves out.
			ci.CircuitBreakers = &admin.CircuitBreakers{
				Default: admin.Thresholds{
					MaxConnections: cb.MaxConnections, MaxPendingRequests: cb.MaxPendingRequests,
					MaxRequests: cb.MaxRequests, MaxRetries: cb.MaxRetries,
				},
				High: admin.DefaultThresholds,
			}
		}
		for _, e := range c.Endpoints {
			ci.Endpoints = append(ci.Endpoints, admin.EndpointInfo{
				Address:            e.Address,
				Healthy:            !e.FailedActiveHC,
				FailedOutlierCheck: e.FailedOutlierCheck,
				FailedEDSHealth:    e.FailedEDSHealth,
				Weight:             e.Weight,
				Priority:           e.Priority,
				Stats: admin.EndpointStats{
					CxActive: uint64(e.Active), RqActive: uint64(e.Active),
					RqTotal: e.RqTotal, RqError: e.RqError, RqSuccess: e.RqTotal - e.RqError,
					CxTotal: e.CxTotal,
				},
			})
		}
		out = append(out, ci)
	}
	return out
}

// ExtensionConfigs are the running configuration's WasmPlugins, as ECDS
// would have delivered them.
func (a *adminProvider) ExtensionConfigs() ([]json.RawMessage, error) {
	return a.p.applied.Load().ExtensionConfigs, nil
}

func (a *adminProvider) Quit() {
	select {
	case a.p.quit <- struct{}{}:
	default:
	}
}

func (a *adminProvider) Reload(ctx context.Context, trigger string) (admin.ReloadStatus, error) {
	return a.p.Reload(ctx, trigger)
}

func (a *adminProvider) ReloadStatus() admin.ReloadStatus { return a.p.ReloadStatus() }
