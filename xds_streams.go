package wasmproxy

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/xds"
)

// xdsStream names one gRPC stream to a control plane: ADS (the zero
// value), or an api_config_source's stream of one type through its
// cluster, as Envoy opens one per config source and type.
type xdsStream struct {
	cluster string
	delta   bool
	typeURL string
}

func (s xdsStream) String() string {
	if s.typeURL == "" {
		return "ADS"
	}
	return fmt.Sprintf("%s via %s", s.typeURL, s.cluster)
}

// xdsStreams are the gRPC streams running: those of dynamic_resources
// (ADS, lds_config's and cds_config's api_config_source), for the
// proxy's life, and those the delivered resources' api_config_sources
// name (EDS, RDS, ECDS, SDS), started and stopped as the names asked of
// them come and go (syncXDSStreams). All of them are xds.Run with one
// Handler, applyXDS: one subscription machinery, however many streams.
type xdsStreams struct {
	mu sync.Mutex
	// ctx ends every stream; nil before startXDS.
	ctx     context.Context
	node    *corev3.Node
	nodeOne bool
	running map[xdsStream]*xdsRunning
	// gaugeMu serializes xdsConnectedGauges; connected are the
	// connected_state gauges it set last, by name.
	gaugeMu   sync.Mutex
	connected map[string]bool
}

type xdsRunning struct {
	cancel context.CancelFunc
	// wake tells the stream its names may have changed (xds.Options.Wake).
	wake chan struct{}
	// static: a stream of dynamic_resources, never stopped.
	static bool
	// up: the stream is connected (xds.Options.Connected).
	up atomic.Bool
}

// xdsStatic is a stream of dynamic_resources.
type xdsStatic struct {
	key   xdsStream
	types []string
	// cds, lds: it carries CDS, LDS (the wildcard types whose first
	// response ends initialization).
	cds, lds bool
	// after, if not nil, holds the stream back until it is closed (LDS
	// waits for CDS, as Envoy's listener manager for its cluster
	// manager).
	after <-chan struct{}
	// initialized is called when its types had their first response.
	initialized func()
}

// startXDS runs the gRPC streams of the bootstrap's dynamic_resources
// until ctx ends — ADS (CDS first, then LDS, as Envoy subscribes), and
// the api_config_source streams of lds_config and cds_config — and sets
// up its path config sources (p.xdsFiles), which the poller reads: at
// once, and, for listeners from a file after the clusters, when wake
// closes.
func (p *Proxy) startXDS(ctx context.Context, ads *config.ADS, node *config.Node) (wake <-chan struct{}, err error) {
	if p.opts.Bootstrap != nil {
		return nil, errors.New("dynamic_resources: a control plane's resources patch a config file (Options.ConfigPath), not a built model (Options.Bootstrap)")
	}
	n := &corev3.Node{}
	if node != nil {
		if err := proto.Unmarshal(node.Proto, n); err != nil {
			return nil, fmt.Errorf("dynamic_resources: node: %w", err)
		}
	}
	// cdsReady closes once the clusters had their first response (or
	// file read): listeners are asked for then.
	cdsReady := make(chan struct{})
	var cdsOnce sync.Once
	cdsDone := func() { cdsOnce.Do(func() { close(cdsReady) }) }
	if !ads.CDS && ads.CDSStream == nil && ads.CDSPath == "" {
		cdsDone()
	}
	files, err := xdsFileSources(ads, cdsReady)
	if err != nil {
		return nil, err
	}
	var streams []*xdsStatic
	if ads.Cluster != "" {
		var types []string
		if ads.CDS {
			types = append(types, xds.ClusterType)
		}
		types = append(types, xds.EndpointType)
		if ads.LDS {
			types = append(types, xds.ListenerType)
		}
		types = append(types, xds.RouteType, xds.ExtensionConfigType, xds.SecretType)
		st := &xdsStatic{key: xdsStream{}, types: types, cds: ads.CDS, lds: ads.LDS}
		if ads.LDS && !ads.CDS {
			st.after = cdsReady
		}
		streams = append(streams, st)
	}
	if s := ads.CDSStream; s != nil {
		streams = append(streams, &xdsStatic{key: xdsStream{cluster: s.Cluster, delta: s.Delta, typeURL: xds.ClusterType}, types: []string{xds.ClusterType}, cds: true})
	}
	if s := ads.LDSStream; s != nil {
		streams = append(streams, &xdsStatic{key: xdsStream{cluster: s.Cluster, delta: s.Delta, typeURL: xds.ListenerType}, types: []string{xds.ListenerType}, lds: true, after: cdsReady})
	}
	if len(streams) == 0 && len(files) == 0 {
		return nil, nil
	}
	// INITIALIZING (/ready 503) until the first CDS and LDS responses
	// and the first read of each file, bounded by initial_fetch_timeout,
	// as Envoy's init manager.
	p.xdsInitializing.Store(true)
	p.xds.mu.Lock()
	p.xds.rearm = func(d time.Duration) {
		// An EDS or RDS resource's initial fetch timeout: patch again
		// then, so what waited for it serves without it.
		time.AfterFunc(d, func() {
			if ctx.Err() == nil {
				_, _ = p.Reload(ctx, "xds")
			}
		})
	}
	p.xds.mu.Unlock()
	p.xdsGauges()
	var once sync.Once
	done := func() {
		once.Do(func() {
			// Then, as Envoy's init manager, until what arrived has
			// warmed (clusters their endpoints, listeners their routes,
			// each bounded by its own initial_fetch_timeout): see
			// xdsGauges, which ends it.
			p.xdsWarmingInit.Store(true)
			p.xdsInitializing.Store(false)
			p.xdsGauges()
		})
	}
	var pending atomic.Int32
	step := func() {
		if pending.Add(-1) == 0 {
			done()
		}
	}
	for _, f := range files {
		pending.Add(1)
		f.first = step
		if f.typeURL == xds.ClusterType {
			f.first = func() { step(); cdsDone() }
		}
	}
	var inits []func()
	for _, st := range streams {
		if !st.cds && !st.lds {
			continue
		}
		pending.Add(1)
		var o sync.Once
		cds := st.cds
		st.initialized = func() {
			o.Do(func() {
				if cds {
					cdsDone()
				}
				step()
			})
		}
		inits = append(inits, st.initialized)
	}
	p.xdsFiles = files
	if d := ads.InitialFetchTimeout.D(); d > 0 {
		timer := time.AfterFunc(d, func() {
			if !p.xdsInitializing.Load() {
				// Initialized in time: no warning, no count; what still
				// warms no longer holds the proxy back.
				if p.xdsWarmingInit.CompareAndSwap(true, false) {
					p.log.Warn("xDS resources still warming at initial_fetch_timeout; ready without them", "initial_fetch_timeout", d)
				}
				return
			}
			p.log.Warn("xDS initial fetch timed out; serving what arrived", "initial_fetch_timeout", d)
			p.xdsInitFetchTimeout(ads.CDS || ads.CDSStream != nil, ads.LDS || ads.LDSStream != nil)
			cdsDone()
			for _, f := range inits {
				f()
			}
			done()
			p.xdsWarmingInit.Store(false)
		})
		go func() { <-ctx.Done(); timer.Stop() }()
	}
	ss := &p.xds.streams
	ss.mu.Lock()
	ss.ctx, ss.node, ss.nodeOne = ctx, n, ads.SetNodeOnFirstMessageOnly
	ss.mu.Unlock()
	for _, st := range streams {
		st := st
		onConnected := func(on bool) {
			if !on && ctx.Err() == nil {
				p.xdsStreamClosed(st.cds, st.lds)
			}
		}
		p.runXDSStream(st.key, st.types, true, st.after, st.initialized, onConnected)
	}
	p.xdsConnectedGauges() // 0 until each connects
	return cdsReady, nil
}

// xdsConnectedGauges sets control_plane.connected_state of each gRPC
// stream running (1 connected, 0 not) as Envoy keeps it, one gauge per
// gRPC mux in the stats scope of the subscription that made it: ADS's
// at the root (control_plane.connected_state), an api_config_source's
// in its subscription's scope — cluster_manager.cds. and
// listener_manager.lds. for dynamic_resources', and, for a stream of
// named resources, the scope of each name it carries
// (http.<stat_prefix>.rds.<name>., cluster.<name>., sds.<name>.,
// extension_config_discovery.http_filter.<name>.: see statScopes),
// since Envoy opens a mux per such subscription. A gauge whose stream
// stopped, or whose name left its stream, goes to 0.
func (p *Proxy) xdsConnectedGauges() {
	ss := &p.xds.streams
	ss.gaugeMu.Lock()
	defer ss.gaugeMu.Unlock()
	ss.mu.Lock()
	up := make(map[xdsStream]bool, len(ss.running))
	for key, run := range ss.running {
		up[key] = run.up.Load()
	}
	ss.mu.Unlock()
	next := map[string]bool{}
	r := &p.xds
	r.mu.Lock()
	for key, on := range up {
		if key.typeURL == "" {
			next["control_plane.connected_state"] = on
			continue
		}
		var names []string
		if key.typeURL != xds.ClusterType && key.typeURL != xds.ListenerType {
			names = r.subs[xdsSub{key, key.typeURL}]
		}
		for _, sc := range r.statScopes(key.typeURL, names) {
			// Two streams for one subscription's scope (a name moving
			// from one source to another): connected if either is.
			next[sc.prefix+"control_plane.connected_state"] = next[sc.prefix+"control_plane.connected_state"] || on
		}
	}
	r.mu.Unlock()
	for name := range ss.connected {
		if _, ok := next[name]; !ok {
			p.stats.Gauge(name).Set(0)
		}
	}
	for name, on := range next {
		v := int64(0)
		if on {
			v = 1
		}
		p.stats.Gauge(name).Set(v)
	}
	ss.connected = next
}

// runXDSStream starts the stream key of types, after after closes (if
// not nil). It does nothing once the streams' context has ended or
// when the stream runs already.
func (p *Proxy) runXDSStream(key xdsStream, types []string, static bool, after <-chan struct{}, initialized func(), connected func(bool)) {
	ss := &p.xds.streams
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ctx == nil || ss.ctx.Err() != nil || ss.running[key] != nil {
		return
	}
	if ss.running == nil {
		ss.running = map[xdsStream]*xdsRunning{}
	}
	ctx, cancel := context.WithCancel(ss.ctx)
	run := &xdsRunning{cancel: cancel, wake: make(chan struct{}, 1), static: static}
	ss.running[key] = run
	cluster, delta := key.cluster, key.delta
	if key.typeURL == "" {
		ads := p.applied.Load().ADS
		cluster, delta = ads.Cluster, ads.Delta
	}
	opts := xds.Options{
		Upstreams: p.srv, Cluster: cluster, Delta: delta, OwnService: key.typeURL != "",
		Node: ss.node, SetNodeOnFirstMessageOnly: ss.nodeOne,
		Types: types, Handler: p.applyXDS, Names: p.xds.names(key), Wake: run.wake,
		Logger: p.logs.Logger("upstream"), Initialized: initialized,
		Connected: func(on bool) {
			run.up.Store(on)
			p.xdsConnectedGauges()
			if connected != nil {
				connected(on)
			}
		},
	}
	p.spawn(func() {
		defer cancel()
		if after != nil {
			select {
			case <-ctx.Done():
				return
			case <-after:
			}
		}
		p.log.Info("xDS client started", "stream", key.String(), "cluster", cluster)
		_ = xds.Run(ctx, opts)
	})
}

// syncXDSStreams starts the streams the delivered resources now ask of
// (an api_config_source of an EDS, RDS, ECDS or SDS config source),
// stops those no longer asked of, and wakes the others, whose names
// may have changed with this update.
func (p *Proxy) syncXDSStreams() {
	r := &p.xds
	r.mu.Lock()
	want := map[xdsStream]bool{}
	for sub, names := range r.subs {
		if sub.stream.typeURL != "" && len(names) > 0 {
			want[sub.stream] = true
		}
	}
	r.mu.Unlock()
	ss := &r.streams
	ss.mu.Lock()
	var start []xdsStream
	for key := range want {
		if ss.running[key] == nil {
			start = append(start, key)
		}
	}
	for key, run := range ss.running {
		if !run.static && !want[key] {
			run.cancel()
			delete(ss.running, key)
			continue
		}
		select {
		case run.wake <- struct{}{}:
		default:
		}
	}
	ss.mu.Unlock()
	for _, key := range start {
		p.runXDSStream(key, []string{key.typeURL}, false, nil, nil, nil)
	}
	// The names each stream carries may have changed, and with them the
	// subscriptions' connected_state gauges.
	p.xdsConnectedGauges()
}
