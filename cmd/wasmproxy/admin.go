package main

import (
	"github.com/wasmproxy/wasmproxy/admin"
	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/proxy"
)

// adminProvider exposes the running proxy to the admin server.
type adminProvider struct {
	srv   *proxy.Server
	cfg   *config.Bootstrap
	flags *runFlags
	quit  chan struct{}
}

func (p *adminProvider) ServerInfo() admin.ServerInfo {
	state := admin.StateLive
	if p.srv.Draining() {
		state = admin.StateDraining
	}
	info := admin.ServerInfo{
		Version:   "wasmproxy/" + version,
		State:     state,
		StartTime: p.srv.Started(),
		Options: admin.CommandLineOptions{
			BaseID:            uint64(p.flags.baseID),
			Concurrency:       uint32(poolSize(p.flags.concurrency)),
			ConfigPath:        p.flags.configPath,
			LogLevel:          p.flags.logLevel,
			ComponentLogLevel: p.flags.componentLogLevels,
			DrainTime:         p.flags.drainTime,
			DisableHotRestart: true,
		},
	}
	if p.cfg.Node != nil {
		info.Node = admin.NodeInfo{ID: p.cfg.Node.ID, Cluster: p.cfg.Node.Cluster, UserAgentVersion: version}
	}
	return info
}

func (p *adminProvider) Listeners() []admin.ListenerInfo {
	var out []admin.ListenerInfo
	for _, l := range p.srv.ListenerStatuses() {
		out = append(out, admin.ListenerInfo{Name: l.Name, Address: l.Address})
	}
	return out
}

func (p *adminProvider) Clusters() []admin.ClusterInfo {
	var out []admin.ClusterInfo
	for _, c := range p.srv.ClusterStatuses() {
		ci := admin.ClusterInfo{Name: c.Name}
		for _, e := range c.Endpoints {
			ci.Endpoints = append(ci.Endpoints, admin.EndpointInfo{
				Address: e.Address,
				Healthy: true,
				Stats: admin.EndpointStats{
					CxActive: uint64(e.Active), RqActive: uint64(e.Active),
					RqTotal: e.RqTotal, RqError: e.RqError, RqSuccess: e.RqTotal - e.RqError,
				},
			})
		}
		out = append(out, ci)
	}
	return out
}

func (p *adminProvider) ConfigDump() ([]byte, error) { return p.cfg.RawJSON, nil }

func (p *adminProvider) Quit() {
	select {
	case p.quit <- struct{}{}:
	default:
	}
}
