package wasmproxy

import (
	"time"

	"slices"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wasmproxy/wasmproxy/admin"
	"github.com/wasmproxy/wasmproxy/xds"
)

var _ admin.DynamicConfigDumper = (*adminProvider)(nil)

// DynamicConfigs shows what the control plane delivered as Envoy's
// /config_dump does: the static listeners and clusters of the file and
// the dynamic ones, each with the version and time of the update that
// last changed it; a listener or cluster that waits for an ECDS config
// or an SDS secret (or routes to such a cluster) is warming (not
// served). Route configurations and ECDS filters are as delivered (the
// listeners as delivered too, rds not inlined). Nothing without
// dynamic_resources.
//
// An update being applied is waited for, as Envoy's admin handlers run
// on the main thread that applies xDS updates: the reload that makes an
// update serve comes before its record (versions, last_updated), so a
// dump read in between would show the routes a client just got served
// as not delivered yet.
func (a *adminProvider) DynamicConfigs() ([]proto.Message, error) {
	r := &a.p.xds
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.meta == nil && r.failures == nil {
		return nil, nil
	}
	static, err := a.staticBootstrap(r)
	if err != nil {
		return nil, err
	}
	in := r.inline(time.Now()) // which delivered listeners and clusters warm
	var out []proto.Message

	cds := &adminv3.ClustersConfigDump{VersionInfo: r.versions[xds.ClusterType]}
	for _, c := range static.GetStaticResources().GetClusters() {
		cds.StaticClusters = append(cds.StaticClusters, &adminv3.ClustersConfigDump_StaticCluster{Cluster: mustAny(c)})
	}
	for _, name := range sortedNames(r.meta[xds.ClusterType]) {
		m := r.meta[xds.ClusterType][name]
		dc := &adminv3.ClustersConfigDump_DynamicCluster{VersionInfo: m.version, Cluster: mustAny(m.msg), LastUpdated: timestamppb.New(m.updated),
			ErrorState: r.failureState(xds.ClusterType, name)}
		if in.warmingClusters[name] {
			cds.DynamicWarmingClusters = append(cds.DynamicWarmingClusters, dc)
			// The version before, which serves while this one warms.
			if old, ok := r.served[xds.ClusterType][name]; ok {
				cds.DynamicActiveClusters = append(cds.DynamicActiveClusters, &adminv3.ClustersConfigDump_DynamicCluster{
					VersionInfo: old.version, Cluster: mustAny(old.msg), LastUpdated: timestamppb.New(old.updated)})
			}
		} else {
			cds.DynamicActiveClusters = append(cds.DynamicActiveClusters, dc)
		}
	}
	out = append(out, cds)

	lds := &adminv3.ListenersConfigDump{VersionInfo: r.versions[xds.ListenerType]}
	for _, l := range static.GetStaticResources().GetListeners() {
		lds.StaticListeners = append(lds.StaticListeners, &adminv3.ListenersConfigDump_StaticListener{Listener: mustAny(l)})
	}
	// A listener whose first version was rejected has only its
	// error_state, as on Envoy.
	listenerNames := map[string]bool{}
	for name := range r.meta[xds.ListenerType] {
		listenerNames[name] = true
	}
	for name := range r.failures[xds.ListenerType] {
		listenerNames[name] = true
	}
	for _, name := range sortedNames(listenerNames) {
		dl := &adminv3.ListenersConfigDump_DynamicListener{Name: name, ErrorState: r.failureState(xds.ListenerType, name)}
		if m, ok := r.meta[xds.ListenerType][name]; ok {
			state := &adminv3.ListenersConfigDump_DynamicListenerState{VersionInfo: m.version, Listener: mustAny(m.msg), LastUpdated: timestamppb.New(m.updated)}
			if in.warmingListeners[name] {
				dl.WarmingState = state
				// The version before, which serves while this one warms.
				if old, ok := r.served[xds.ListenerType][name]; ok {
					dl.ActiveState = &adminv3.ListenersConfigDump_DynamicListenerState{VersionInfo: old.version, Listener: mustAny(old.msg), LastUpdated: timestamppb.New(old.updated)}
				}
			} else {
				dl.ActiveState = state
			}
		}
		lds.DynamicListeners = append(lds.DynamicListeners, dl)
	}
	out = append(out, lds)

	if routes := r.meta[xds.RouteType]; len(routes) > 0 {
		rds := &adminv3.RoutesConfigDump{}
		for _, name := range sortedNames(routes) {
			m := routes[name]
			rds.DynamicRouteConfigs = append(rds.DynamicRouteConfigs, &adminv3.RoutesConfigDump_DynamicRouteConfig{
				VersionInfo: m.version, RouteConfig: mustAny(m.msg), LastUpdated: timestamppb.New(m.updated)})
		}
		out = append(out, rds)
	}
	if exts := r.meta[xds.ExtensionConfigType]; len(exts) > 0 {
		ecds := &adminv3.EcdsConfigDump{}
		for _, name := range sortedNames(exts) {
			m := exts[name]
			ecds.EcdsFilters = append(ecds.EcdsFilters, &adminv3.EcdsConfigDump_EcdsFilterConfig{
				VersionInfo: m.version, EcdsFilter: mustAny(m.msg), LastUpdated: timestamppb.New(m.updated)})
		}
		out = append(out, ecds)
	}
	return out, nil
}

// failureState is Envoy's error_state of a delivered listener or
// cluster: its last rejected version, when, and why; nil when its
// type's last update was accepted. r.mu is held.
func (r *xdsResources) failureState(typeURL, name string) *adminv3.UpdateFailureState {
	f, ok := r.failures[typeURL][name]
	if !ok {
		return nil
	}
	return &adminv3.UpdateFailureState{FailedConfiguration: mustAny(f.msg), LastUpdateAttempt: timestamppb.New(f.at), Details: f.details, VersionInfo: f.version}
}

// staticBootstrap is the running bootstrap without what the control
// plane delivered: the file (with command-line overrides and Istio
// patches), as Envoy's BootstrapConfigDump shows it. r.mu is held.
func (a *adminProvider) staticBootstrap(r *xdsResources) (*bootstrapv3.Bootstrap, error) {
	pb := &bootstrapv3.Bootstrap{}
	raw := a.p.applied.Load().RawJSON
	if len(raw) > 0 {
		if err := protojson.Unmarshal(raw, pb); err != nil {
			return nil, err
		}
	}
	sr := pb.GetStaticResources()
	if sr == nil {
		return pb, nil
	}
	// Names are unique in the merged bootstrap, so a delivered name is
	// the delivered resource.
	sr.Listeners = slices.DeleteFunc(sr.Listeners, func(l *listenerv3.Listener) bool {
		_, ok := r.meta[xds.ListenerType][l.GetName()]
		return ok
	})
	sr.Clusters = slices.DeleteFunc(sr.Clusters, func(c *clusterv3.Cluster) bool {
		_, ok := r.meta[xds.ClusterType][c.GetName()]
		return ok
	})
	return pb, nil
}

// ConfigDump is the configuration running now: the last one a reload
// applied, else the one the proxy started with. Under a control plane
// the delivered listeners and clusters are left out (they are in the
// dynamic sections), as in Envoy's BootstrapConfigDump.
func (a *adminProvider) ConfigDump() ([]byte, error) {
	r := &a.p.xds
	r.applyMu.Lock() // as DynamicConfigs: not amid an update
	defer r.applyMu.Unlock()
	raw := a.p.applied.Load().RawJSON
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.meta == nil {
		return raw, nil
	}
	pb, err := a.staticBootstrap(r)
	if err != nil {
		return nil, err
	}
	return protojson.MarshalOptions{UseProtoNames: true}.Marshal(pb)
}

func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// mustAny wraps a resource: its type is linked in, so New cannot fail.
func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}
