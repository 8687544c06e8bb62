package wasmproxy

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/xds"
)

// xdsResources are the listeners and clusters a control plane delivered
// over ADS and the proxy accepted. Each load appends them to the decoded
// bootstrap's static_resources (patch), so an xDS update is one more
// trigger of the reload pipeline: built, checked and swapped exactly as
// a changed file is, and refused with the same errors.
type xdsResources struct {
	// applyMu serializes applyXDS, and /config_dump with it (see
	// DynamicConfigs); mu guards the fields.
	applyMu   sync.Mutex
	mu        sync.Mutex
	listeners []*listenerv3.Listener
	clusters  []*clusterv3.Cluster
	// routes (RDS) and endpoints (EDS) by resource name; they are put
	// into the listeners' connection managers and the EDS clusters.
	routes    map[string]*routev3.RouteConfiguration
	endpoints map[string]*endpointv3.ClusterLoadAssignment
	// extensions (ECDS) by name: the configs of HTTP filters with
	// config_discovery.
	extensions map[string]*corev3.TypedExtensionConfig
	// subs: the names the delivered listeners and clusters ask of each
	// gRPC stream (ADS, or an api_config_source's) per type (RDS, EDS,
	// ECDS, SDS), as of the last patch.
	subs map[xdsSub][]string
	// staticClusterByName: the bootstrap's own clusters as of the last
	// patch, which an api_config_source may name.
	staticClusterByName map[string]*clusterv3.Cluster
	// streams are the gRPC streams running (see xds_streams.go).
	streams xdsStreams
	// secrets (SDS) by name: TLS certificates and validation contexts
	// of the delivered listeners' DownstreamTlsContexts.
	secrets map[string]*tlsv3.Secret
	// appended and appendedClusters are the names of the delivered
	// listeners and clusters the last patch appended (in order; a
	// warming one is left out), for error paths.
	appended, appendedClusters []string
	// The static counts of the last patch: resources past them came from
	// xDS, which error paths are rewritten to name.
	staticListeners, staticClusters int
	// For /config_dump: the accepted version of each type, and of each
	// accepted resource (by type, then name) the version and time of
	// the update that last changed it, as Envoy's dump shows them.
	versions map[string]string
	meta     map[string]map[string]xdsMeta
	// failures, by type (LDS, CDS) and name: the delivered resource a
	// rejected update's error named.
	failures map[string]map[string]xdsFailure
	// For stats, as of the last patch: the stat_prefix of each
	// connection manager naming a route configuration over RDS, and the
	// clusters naming an EDS service (Envoy counts those subscriptions
	// under http.<stat_prefix>.rds.<name>. and cluster.<name>.).
	rdsPrefixes, edsClusters map[string][]string
	// activeListeners and activeClusters are, by name, the built
	// (inlined) copies the last patch served: while a new version of one
	// warms, the old one keeps serving, as on Envoy.
	activeListeners map[string]*listenerv3.Listener
	activeClusters  map[string]*clusterv3.Cluster
	// servingNew: by type (LDS, CDS) and name, the delivered listeners
	// and clusters the last patch served: true with the version
	// delivered last, false with the one before (the new one warms).
	// served is, for /config_dump, the delivered resource (and its
	// version and time) each serves with, as of the last settle.
	servingNew map[string]map[string]bool
	served     map[string]map[string]xdsMeta
	// fetchDeadline: by "eds/<service>", "rds/<route_config_name>",
	// "ecds/<filter name>" or "sds/<secret name>",
	// when a resource asked for and not delivered stops holding its
	// cluster or listener warming (the config source's
	// initial_fetch_timeout; the zero time: never). rearm, if set, is
	// called with the delay so the proxy patches again then.
	fetchDeadline map[string]time.Time
	rearm         func(time.Duration)
	// paths are the files of the path config sources the delivered
	// resources name (EDS, RDS), with the type each holds, as of the
	// last patch; the poller reads them (syncXDSFiles).
	paths map[string]string
	// For stats, as of the last patch: listeners and clusters active
	// (static ones included) and warming, Envoy's
	// listener_manager.total_listeners_* and cluster_manager.*_clusters.
	counts xdsCounts
}

// xdsCounts are the gauges of the last patch.
type xdsCounts struct{ activeListeners, warmingListeners, activeClusters, warmingClusters int }

// xdsFailure is the last rejected update of a resource (Envoy's
// UpdateFailureState), until its type's next accepted update.
type xdsFailure struct {
	msg              proto.Message
	version, details string
	at               time.Time
}

// xdsMeta is one accepted resource as delivered, with the version_info
// and last_updated of the update that last changed it.
type xdsMeta struct {
	msg     proto.Message
	version string
	updated time.Time
}

// record notes an accepted update of typeURL: delivered are its
// resources by name. A resource equal to the one it replaces keeps its
// version and time (Envoy's dump tells when each resource changed). For
// CDS and LDS the update is the whole type; for RDS, EDS and ECDS the
// names not delivered stay (see applyXDS). r.mu is held.
// It returns the names that changed.
func (r *xdsResources) record(typeURL, version string, delivered map[string]proto.Message, now time.Time) (changed map[string]bool) {
	if r.versions == nil {
		r.versions, r.meta = map[string]string{}, map[string]map[string]xdsMeta{}
	}
	r.versions[typeURL] = version
	old := r.meta[typeURL]
	next := map[string]xdsMeta{}
	if typeURL != xds.ListenerType && typeURL != xds.ClusterType {
		for name, m := range old {
			next[name] = m
		}
	}
	changed = map[string]bool{}
	for name, msg := range delivered {
		if m, ok := old[name]; ok && proto.Equal(m.msg, msg) {
			next[name] = m
			continue
		}
		next[name] = xdsMeta{msg: msg, version: version, updated: now}
		changed[name] = true
	}
	r.meta[typeURL] = next
	return changed
}

// settle notes, after a reload that applied a patch, which delivered
// version each listener and cluster serves with (servingNew): the last
// one recorded, or the one served before while the last warms. r.mu is
// held.
func (r *xdsResources) settle() {
	next := map[string]map[string]xdsMeta{}
	for _, t := range []string{xds.ListenerType, xds.ClusterType} {
		next[t] = map[string]xdsMeta{}
		for name, isNew := range r.servingNew[t] {
			m, ok := r.meta[t][name]
			if !isNew {
				m, ok = r.served[t][name]
			}
			if ok {
				next[t][name] = m
			}
		}
	}
	r.served = next
}

// patch appends the accepted resources to pb's static_resources, with
// what they ask of ADS put in and the warming ones left out (see
// inline). Until its RDS or EDS resource arrives, a listener has an
// empty route configuration (404) and a cluster no endpoints (503),
// where Envoy would keep them warming.
func (r *xdsResources) patch(pb *bootstrapv3.Bootstrap) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.listeners) == 0 && len(r.clusters) == 0 {
		r.counts = xdsCounts{activeListeners: len(pb.GetStaticResources().GetListeners()), activeClusters: len(pb.GetStaticResources().GetClusters())}
		return nil
	}
	if pb.StaticResources == nil {
		pb.StaticResources = &bootstrapv3.Bootstrap_StaticResources{}
	}
	sr := pb.StaticResources
	r.staticListeners, r.staticClusters = len(sr.Listeners), len(sr.Clusters)
	r.staticClusterByName = map[string]*clusterv3.Cluster{}
	for _, c := range sr.Clusters {
		r.staticClusterByName[c.GetName()] = c
	}
	now := time.Now()
	in := r.inline(now)
	r.appended, r.appendedClusters = r.appended[:0], r.appendedClusters[:0]
	r.activeListeners, r.activeClusters = map[string]*listenerv3.Listener{}, map[string]*clusterv3.Cluster{}
	r.servingNew = map[string]map[string]bool{xds.ListenerType: {}, xds.ClusterType: {}}
	for _, c := range in.clusters {
		r.servingNew[xds.ClusterType][c.GetName()] = !in.warmingClusters[c.GetName()]
		r.appendedClusters = append(r.appendedClusters, c.GetName())
		r.activeClusters[c.GetName()] = c
		sr.Clusters = append(sr.Clusters, proto.Clone(c).(*clusterv3.Cluster))
	}
	for _, l := range in.listeners {
		r.servingNew[xds.ListenerType][l.GetName()] = !in.warmingListeners[l.GetName()]
		r.appended = append(r.appended, l.GetName())
		r.activeListeners[l.GetName()] = l
		sr.Listeners = append(sr.Listeners, proto.Clone(l).(*listenerv3.Listener))
	}
	// A resource asked for and not delivered starts its initial fetch
	// timeout the first time a patch waits for it; one delivered (or no
	// longer asked for) forgets it.
	next := map[string]time.Time{}
	for key, d := range in.fetching {
		dl, ok := r.fetchDeadline[key]
		if !ok {
			if d > 0 {
				dl = now.Add(d)
				if r.rearm != nil {
					r.rearm(d)
				}
			}
		}
		next[key] = dl
	}
	r.fetchDeadline = next
	r.counts = xdsCounts{
		activeListeners: len(sr.Listeners), activeClusters: len(sr.Clusters),
		warmingListeners: len(in.warmingListeners), warmingClusters: len(in.warmingClusters),
	}
	r.subs = map[xdsSub][]string{}
	for sub, names := range in.subs {
		r.subs[sub] = sortedNames(names)
	}
	r.paths = in.paths
	r.rdsPrefixes, r.edsClusters = in.rds, in.edsClusters
	if len(in.errs) > 0 {
		return r.sourceError(in.errs[0])
	}
	return nil
}

// sourceError is the error of a delivered resource's config source
// that cannot be used, with the path of the resource in the patched
// bootstrap, which describe rewrites to name the resource. r.mu is held.
func (r *xdsResources) sourceError(e xdsSourceErr) error {
	var ce *config.Error
	if !errors.As(e.err, &ce) {
		return e.err
	}
	c := *ce
	list, base, field := r.appendedClusters, r.staticClusters, "clusters"
	if e.typeURL == xds.ListenerType {
		list, base, field = r.appended, r.staticListeners, "listeners"
	}
	if i := slices.Index(list, e.name); i >= 0 {
		c.Path = fmt.Sprintf("static_resources.%s[%d].%s", field, base+i, ce.Path)
		return &c
	}
	what := "cluster"
	if e.typeURL == xds.ListenerType {
		what = "listener"
	}
	c.Source = fmt.Sprintf("xDS %s %q", what, e.name)
	return &c
}

// inlined is the delivered listeners and clusters with what they ask of
// ADS put in, the ones still warming apart, and the names asked for.
type inlined struct {
	listeners []*listenerv3.Listener
	clusters  []*clusterv3.Cluster
	// warming: by name, the delivered listeners and clusters left out.
	warmingListeners, warmingClusters map[string]bool
	// The names asked of RDS (with the stat_prefix of each connection
	// manager naming it) and EDS (with the clusters naming it), over
	// any source.
	rds, edsClusters map[string][]string
	// subs: the names asked of each gRPC stream, per type.
	subs map[xdsSub]map[string]bool
	// fetching: by "eds/<name>", "rds/<name>", "ecds/<name>" or
	// "sds/<name>", the resources asked for and not delivered, with
	// their config source's initial_fetch_timeout (0: none).
	fetching map[string]time.Duration
	// paths: the files of path config sources asked for, with the type
	// each holds.
	paths map[string]string
	// errs: config sources that cannot be used (an api_config_source
	// naming no static cluster, …): the update is refused.
	errs []xdsSourceErr
	// what is the delivered resource being inlined (its type and name),
	// for errs.
	what xdsSourceErr
	// staticClusters are the clusters an api_config_source may name.
	staticClusters map[string]*clusterv3.Cluster
}

// xdsSourceErr is a delivered resource's config source that cannot be
// used; err's path is within the resource.
type xdsSourceErr struct {
	typeURL, name string
	err           error
}

// xdsSub is the subscription of one type on one gRPC stream.
type xdsSub struct {
	stream  xdsStream
	typeURL string
}

// source reports whether cs is a config source the proxy reads for a
// delivered resource's typeURL, and subscribes name there: ADS or an
// api_config_source (a gRPC stream, recorded in subs), or a file
// (path_config_source or path), recorded in paths. at is the path of
// cs in the resource, for errors.
func (in *inlined) source(cs *corev3.ConfigSource, typeURL, name, at string) bool {
	sub := func(s xdsStream) bool {
		k := xdsSub{s, typeURL}
		if in.subs[k] == nil {
			in.subs[k] = map[string]bool{}
		}
		in.subs[k][name] = true
		return true
	}
	if cs.GetAds() != nil {
		return sub(xdsStream{})
	}
	if api := cs.GetApiConfigSource(); api != nil {
		at += ".api_config_source"
		src, err := config.ParseAPISource(api, at)
		if err == nil {
			// A static HTTP/2 cluster with endpoints, as for
			// dynamic_resources' own sources.
			err = config.CheckGRPCSourceCluster(in.staticClusters[src.Cluster], src.Cluster, at)
		}
		if err != nil {
			e := in.what
			e.err = err
			in.errs = append(in.errs, e)
			return false
		}
		return sub(xdsStream{cluster: src.Cluster, delta: src.Delta, typeURL: typeURL})
	}
	path := cs.GetPath()
	if pcs := cs.GetPathConfigSource(); pcs != nil && pcs.GetWatchedDirectory() == nil {
		path = pcs.GetPath()
	}
	if path == "" {
		return false
	}
	in.paths[path] = typeURL
	return true
}

// fetchTimeout is a config source's initial_fetch_timeout, Envoy's
// default 15s when unset.
func fetchTimeout(cs *corev3.ConfigSource) time.Duration {
	if t := cs.GetInitialFetchTimeout(); t != nil {
		return t.AsDuration()
	}
	return config.DefaultInitialFetchTimeout.D()
}

// waits reports whether a resource asked for and not delivered (key, as
// in inlined.fetching) still holds what names it warming at now: until
// its initial fetch timeout passes, after which Envoy serves the
// cluster without endpoints (503) or the listener without routes (404).
// r.mu is held.
func (r *xdsResources) waits(key string, now time.Time) bool {
	dl, ok := r.fetchDeadline[key]
	return !ok || dl.IsZero() || now.Before(dl)
}

// inline puts into copies of the delivered resources what they ask of
// ADS: each EDS cluster becomes a static one with the delivered
// endpoints, a connection manager's rds the delivered route
// configuration, an HTTP filter's config_discovery its ECDS config, a
// TLS context's SDS secrets the delivered ones. As on Envoy, a cluster
// warms (is not served) until its endpoints and secrets arrive, and a
// listener until its routes, ECDS configs and secrets arrive, and while it routes to a warming cluster; each stops
// holding it once its config source's initial fetch timeout passed
// (then endpoints: 503, routes: 404, a filter config: its default or
// 500, a secret: see inlineSDS). While a new version warms, the version
// served before (activeListeners, activeClusters) stays. r.mu is held.
func (r *xdsResources) inline(now time.Time) *inlined {
	in := &inlined{warmingListeners: map[string]bool{}, warmingClusters: map[string]bool{},
		rds: map[string][]string{}, edsClusters: map[string][]string{}, subs: map[xdsSub]map[string]bool{},
		fetching: map[string]time.Duration{}, paths: map[string]string{}, staticClusters: r.staticClusterByName}
	// The clusters that will serve, by name, for the listeners' check.
	serving := map[string]bool{}
	for _, c := range r.clusters {
		c = proto.Clone(c).(*clusterv3.Cluster)
		in.what = xdsSourceErr{typeURL: xds.ClusterType, name: c.GetName()}
		name := c.GetEdsClusterConfig().GetServiceName()
		if name == "" {
			name = c.GetName()
		}
		if c.GetType() == clusterv3.Cluster_EDS && in.source(c.GetEdsClusterConfig().GetEdsConfig(), xds.EndpointType, name, "eds_cluster_config.eds_config") {
			if !slices.Contains(in.edsClusters[name], c.GetName()) {
				in.edsClusters[name] = append(in.edsClusters[name], c.GetName())
			}
			cla := &endpointv3.ClusterLoadAssignment{}
			ready := true
			if got, ok := r.endpoints[name]; ok {
				cla = proto.Clone(got).(*endpointv3.ClusterLoadAssignment)
			} else {
				key := "eds/" + name
				in.fetching[key] = fetchTimeout(c.GetEdsClusterConfig().GetEdsConfig())
				ready = !r.waits(key, now)
			}
			cla.ClusterName = c.GetName()
			c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
			c.EdsClusterConfig = nil
			c.LoadAssignment = cla
			if !ready {
				r.inlineSDS(c.GetTransportSocket(), in, now, "transport_socket") // its secrets are asked for meanwhile
				r.warmCluster(in, c.GetName(), serving)
				continue
			}
		}
		switch r.inlineSDS(c.GetTransportSocket(), in, now, "transport_socket") {
		case sdsWarming:
			r.warmCluster(in, c.GetName(), serving)
			continue
		case sdsNotReady:
			// Served with its endpoints, every connection failing (503,
			// flag UF) and counted, as through Envoy's NotReadySslSocket.
			c.TransportSocket.Name = config.SecretsNotReadySocket
		}
		serving[c.GetName()] = true
		in.clusters = append(in.clusters, c)
	}
	// A listener routing to a cluster that warms with no version to
	// serve meanwhile warms too.
	unserved := map[string]bool{}
	for name := range in.warmingClusters {
		if !serving[name] {
			unserved[name] = true
		}
	}
	for _, l := range r.listeners {
		l = proto.Clone(l).(*listenerv3.Listener)
		in.what = xdsSourceErr{typeURL: xds.ListenerType, name: l.GetName()}
		if !r.inlineListener(l, in, now) || routesToAny(l, unserved) {
			in.warmingListeners[l.GetName()] = true
			if old := r.activeListeners[l.GetName()]; old != nil && !routesToAny(old, unserved) {
				in.listeners = append(in.listeners, old)
			}
			continue
		}
		in.listeners = append(in.listeners, l)
	}
	return in
}

// warmCluster notes a delivered cluster as warming; the version served
// before, if any, keeps serving meanwhile. r.mu is held.
func (r *xdsResources) warmCluster(in *inlined, name string, serving map[string]bool) {
	in.warmingClusters[name] = true
	if old := r.activeClusters[name]; old != nil {
		serving[name] = true
		in.clusters = append(in.clusters, old)
	}
}

// inlineHCM puts into a connection manager filter f what it asks of
// ADS: the route configuration its rds names (recorded in rds) and the
// configs of its HTTP filters with config_discovery (recorded in ecds).
// It reports false when a filter config is missing, with no default to
// apply: the listener must warm.
func (r *xdsResources) inlineHCM(f *listenerv3.Filter, in *inlined, now time.Time, at string) bool {
	rds := in.rds
	tc := f.GetTypedConfig()
	if tc == nil || tc.MessageName() != hcmName {
		return true
	}
	hcm := &hcmv3.HttpConnectionManager{}
	if err := tc.UnmarshalTo(hcm); err != nil {
		return true // the build reports it
	}
	changed, ready := false, true
	if src := hcm.GetRds(); src != nil && in.source(src.GetConfigSource(), xds.RouteType, src.GetRouteConfigName(), at+".typed_config.rds.config_source") {
		name := src.GetRouteConfigName()
		if !slices.Contains(rds[name], hcm.GetStatPrefix()) {
			rds[name] = append(rds[name], hcm.GetStatPrefix())
		}
		rc := &routev3.RouteConfiguration{Name: name}
		if got, ok := r.routes[name]; ok {
			rc = proto.Clone(got).(*routev3.RouteConfiguration)
		} else {
			key := "rds/" + name
			in.fetching[key] = fetchTimeout(src.GetConfigSource())
			if r.waits(key, now) {
				ready = false
			}
		}
		hcm.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: rc}
		changed = true
	}
	for i, hf := range hcm.GetHttpFilters() {
		ok, c := r.inlineECDS(hf, in, now, fmt.Sprintf("%s.typed_config.http_filters[%d]", at, i))
		ready, changed = ready && ok, changed || c
	}
	if changed {
		if a, err := anypb.New(hcm); err == nil {
			f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
		}
	}
	return ready
}

var hcmName = (&hcmv3.HttpConnectionManager{}).ProtoReflect().Descriptor().FullName()

// names is the xDS client's Names for stream s: the RDS, EDS, ECDS and
// SDS resources the accepted listeners and clusters ask of it (nil: the
// whole type, CDS and LDS).
func (r *xdsResources) names(s xdsStream) func(typeURL string) []string {
	return func(typeURL string) []string {
		if typeURL == xds.ClusterType || typeURL == xds.ListenerType {
			return nil
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		return append([]string{}, r.subs[xdsSub{s, typeURL}]...)
	}
}

// applyXDS is the ADS handler: the resources become the accepted set of
// their type if the reload they trigger succeeds; otherwise the previous
// set stays (a NACK changes nothing) and the error, naming the resource,
// goes back to the control plane.
func (p *Proxy) applyXDS(ctx context.Context, typeURL, version string, resources []*anypb.Any) error {
	r := &p.xds
	// One update at a time: the ADS client and the file poller both
	// apply, and a failed update restores the state it replaced, which
	// must not undo another's accepted one.
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	var listeners []*listenerv3.Listener
	var clusters []*clusterv3.Cluster
	routes := map[string]*routev3.RouteConfiguration{}
	endpoints := map[string]*endpointv3.ClusterLoadAssignment{}
	extensions := map[string]*corev3.TypedExtensionConfig{}
	secrets := map[string]*tlsv3.Secret{}
	seen := map[string]proto.Message{}
	for i, a := range resources {
		var name string
		var delivered proto.Message
		switch typeURL {
		case xds.ListenerType:
			l := &listenerv3.Listener{}
			if err := a.UnmarshalTo(l); err != nil {
				return fmt.Errorf("resource %d: %v", i, err)
			}
			listeners, name, delivered = append(listeners, l), l.GetName(), l
		case xds.ClusterType:
			c := &clusterv3.Cluster{}
			if err := a.UnmarshalTo(c); err != nil {
				return fmt.Errorf("resource %d: %v", i, err)
			}
			clusters, name, delivered = append(clusters, c), c.GetName(), c
		case xds.RouteType:
			rc := &routev3.RouteConfiguration{}
			if err := a.UnmarshalTo(rc); err != nil {
				return fmt.Errorf("resource %d: %v", i, err)
			}
			name, delivered = rc.GetName(), rc
			routes[name] = rc
		case xds.EndpointType:
			cla := &endpointv3.ClusterLoadAssignment{}
			if err := a.UnmarshalTo(cla); err != nil {
				return fmt.Errorf("resource %d: %v", i, err)
			}
			name, delivered = cla.GetClusterName(), cla
			endpoints[name] = cla
		case xds.ExtensionConfigType:
			ec := &corev3.TypedExtensionConfig{}
			if err := a.UnmarshalTo(ec); err != nil {
				return fmt.Errorf("resource %d: %v", i, err)
			}
			name, delivered = ec.GetName(), ec
			extensions[name] = ec
		case xds.SecretType:
			sec := &tlsv3.Secret{}
			if err := a.UnmarshalTo(sec); err != nil {
				return fmt.Errorf("resource %d: %v", i, err)
			}
			name, delivered = sec.GetName(), sec
			secrets[name] = sec
		default:
			return fmt.Errorf("type %s was not subscribed to", typeURL)
		}
		if seen[name] != nil {
			return fmt.Errorf("resource %d: duplicate name %q", i, name)
		}
		seen[name] = delivered
	}
	r.mu.Lock()
	oldL, oldC, oldR, oldE, oldX, oldS := r.listeners, r.clusters, r.routes, r.endpoints, r.extensions, r.secrets
	// What the running version's patch served and waited for: a failed
	// reload's patch must not become it.
	oldAL, oldAC, oldFD, oldCounts, oldSN := r.activeListeners, r.activeClusters, r.fetchDeadline, r.counts, r.servingNew
	// Nor may the names it asked for: a stream woken later would
	// subscribe what a rejected resource named.
	oldSubs, oldPaths, oldRP, oldEC := r.subs, r.paths, r.rdsPrefixes, r.edsClusters
	switch typeURL {
	case xds.ListenerType:
		r.listeners = listeners
	case xds.ClusterType:
		r.clusters = clusters
	case xds.RouteType:
		// State of the world for what was asked: a name not in the
		// response keeps its last configuration (Envoy's RDS and EDS
		// are per resource, and a response may carry a subset).
		r.routes = merge(r.routes, routes)
	case xds.EndpointType:
		r.endpoints = merge(r.endpoints, endpoints)
	case xds.ExtensionConfigType:
		r.extensions = merge(r.extensions, extensions)
	case xds.SecretType:
		r.secrets = merge(r.secrets, secrets)
	}
	scopes := r.statScopes(typeURL, sortedNames(seen))
	r.mu.Unlock()
	p.xdsAttempt(scopes)
	if _, err := p.Reload(ctx, "xds"); err != nil {
		r.mu.Lock()
		r.listeners, r.clusters, r.routes, r.endpoints, r.extensions, r.secrets = oldL, oldC, oldR, oldE, oldX, oldS
		r.activeListeners, r.activeClusters, r.fetchDeadline, r.counts, r.servingNew = oldAL, oldAC, oldFD, oldCounts, oldSN
		r.subs, r.paths, r.rdsPrefixes, r.edsClusters = oldSubs, oldPaths, oldRP, oldEC
		err, failedType, failedName := r.describe(err)
		if failedType == typeURL && seen[failedName] != nil {
			// Envoy's error_state of the resource, for /config_dump.
			if r.failures == nil {
				r.failures = map[string]map[string]xdsFailure{}
			}
			if r.failures[typeURL] == nil {
				r.failures[typeURL] = map[string]xdsFailure{}
			}
			r.failures[typeURL][failedName] = xdsFailure{msg: seen[failedName], version: version, at: time.Now(), details: err.Error()}
		}
		r.mu.Unlock()
		// Counted once the failure is recorded: one who saw the count
		// finds the error_state in /config_dump.
		p.xdsRejected(typeURL, scopes)
		return err
	}
	now := time.Now()
	r.mu.Lock()
	changed := r.record(typeURL, version, seen, now)
	r.settle()
	if typeURL == xds.ListenerType || typeURL == xds.ClusterType {
		delete(r.failures, typeURL) // the whole type was accepted
	}
	r.mu.Unlock()
	p.xdsSuccess(typeURL, version, scopes, changed, now)
	// The names asked of each stream may have changed: a stream of an
	// api_config_source starts, stops, or subscribes other names.
	p.syncXDSStreams()
	return nil
}

// merge returns a copy of old with add's entries put in.
func merge[V any](old, add map[string]V) map[string]V {
	out := make(map[string]V, len(old)+len(add))
	for k, v := range old {
		out[k] = v
	}
	for k, v := range add {
		out[k] = v
	}
	return out
}

var staticPath = regexp.MustCompile(`^static_resources\.(listeners|clusters)\[(\d+)\]`)

// describe rewrites a config error about a resource that came from xDS
// so that it names the resource, not its place in the merged bootstrap.
// r.mu is held.
//
// typeURL and name say which delivered resource it is (ListenerType or
// ClusterType), empty when the error is not about one.
func (r *xdsResources) describe(err error) (_ error, typeURL, name string) {
	var ce *config.Error
	if !errors.As(err, &ce) {
		return err, "", ""
	}
	m := staticPath.FindStringSubmatch(ce.Path)
	if m == nil {
		return err, "", ""
	}
	i, _ := strconv.Atoi(m[2])
	var what string
	switch {
	case m[1] == "listeners" && i >= r.staticListeners && i-r.staticListeners < len(r.appended):
		typeURL, name = xds.ListenerType, r.appended[i-r.staticListeners]
		what = fmt.Sprintf("listener %q", name)
	case m[1] == "clusters" && i >= r.staticClusters && i-r.staticClusters < len(r.appendedClusters):
		typeURL, name = xds.ClusterType, r.appendedClusters[i-r.staticClusters]
		what = fmt.Sprintf("cluster %q", name)
	default:
		return err, "", ""
	}
	c := *ce
	c.Source = "xDS " + what
	c.Path = ce.Path[len(m[0]):]
	if len(c.Path) > 0 && c.Path[0] == '.' {
		c.Path = c.Path[1:]
	}
	return &c, typeURL, name
}
