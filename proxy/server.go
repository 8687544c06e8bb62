// Package proxy runs the listeners, HTTP connection managers, filter
// chains, router and clusters described by a config.Bootstrap. It knows
// nothing of YAML (config does that) nor of Wasm: filters come from a
// FilterLoader.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmproxy/wasmproxy/accesslog"
	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/stats"
	"github.com/wasmproxy/wasmproxy/tracing"
)

// FilterLoader builds the factory of a configured HTTP filter (for now a
// Wasm plugin). It is called once per filter at start-up, and by a
// reload for each filter set it replaces; an error stops the start (or
// fails the reload) with that error. A factory that holds resources
// implements io.Closer: the server closes it once it is replaced and the
// last stream using it has ended.
type FilterLoader interface {
	LoadHTTPFilter(ctx context.Context, listener string, f *config.HTTPFilter) (filter.Factory, error)
}

// Options tune a Server.
type Options struct {
	Logs   *logging.Registry
	Stats  *stats.Store
	Loader FilterLoader
	// DrainTimeout bounds how long Shutdown waits for in-flight requests.
	DrainTimeout time.Duration
	// AccessLogs opens the access log files, each path once; nil: the
	// server has its own and closes it at the end of Shutdown.
	AccessLogs *accesslog.Files
}

// Server is the running proxy for one bootstrap.
type Server struct {
	cfg *config.Bootstrap
	// serviceCluster is node.cluster, the local service cluster (the
	// rate limit source_cluster action); fixed at start, as the tracers'.
	serviceCluster string
	// serviceNode is node.id (add_user_agent's
	// x-envoy-downstream-service-node), fixed at start likewise.
	serviceNode string
	opts        Options
	log         *slog.Logger
	// clusterSet is the current clusters; streams, TCP sessions and
	// callouts hold the set they started with (generation.go).
	clusterSet atomic.Pointer[clusterSet]
	// building is set while New or Reload builds (reload.go).
	building *buildState
	managers []*connManager
	// netListeners are the listeners the proxy accepts on itself (TLS,
	// several filter chains, TCP proxies): see tcp_listener.go.
	netListeners []*netListener
	listeners    []*runningListener
	started      time.Time

	// httpManagers are every HTTP connection manager, for reloads, which
	// swapMu serializes (reload.go). Read them under swapMu or stateMu.
	httpManagers []*connManager
	swapMu       sync.Mutex
	// stateMu guards cfg and the listener and manager lists, which a
	// reload replaces (reload.go); retiring counts listeners draining
	// after a reload.
	stateMu  sync.RWMutex
	retiring sync.WaitGroup

	mu       sync.Mutex
	draining bool
	// active counts streams in flight on every listener, for draining.
	active atomic.Int64
	// overload is the overload manager (overload.go); nil without one.
	overload *overload

	// accessLogs are the access log files (accesslog.go); the server
	// closes them after Shutdown when it opened them (ownsAccessLogs).
	accessLogs     *accesslog.Files
	ownsAccessLogs bool
	// tracers export the connection managers' spans (proxy/tracing.go);
	// Shutdown flushes them.
	tracers *tracing.Registry
}

type runningListener struct {
	cfg  *config.Listener
	ln   net.Listener
	http *httpServer  // nil for a netListener
	cm   *connManager // the connection manager http serves
	net  *netListener
	// sock is the bound socket, which a reload may hand to the listener
	// replacing this one (reload.go).
	sock *handoffListener
}

// New builds every cluster and filter of cfg without opening sockets.
// Errors name the listener, filter or cluster at fault.
func New(ctx context.Context, cfg *config.Bootstrap, opts Options) (*Server, error) {
	if opts.Logs == nil {
		opts.Logs = logging.Default
	}
	if opts.Stats == nil {
		opts.Stats = stats.New()
	}
	if opts.DrainTimeout == 0 {
		opts.DrainTimeout = 10 * time.Second
	}
	// Names unique, routes and TCP proxies naming known clusters: the
	// config package's rules, for models that did not come from Parse.
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, opts: opts, log: opts.Logs.Logger("main"), accessLogs: opts.AccessLogs}
	if s.accessLogs == nil {
		s.accessLogs, s.ownsAccessLogs = &accesslog.Files{Counters: accessLogCounters(opts.Stats)}, true
	}
	tracingOpts := tracing.Options{Upstreams: s, Log: opts.Logs.Logger("tracing")}
	if cfg.Node != nil {
		tracingOpts.NodeID, tracingOpts.ServiceCluster = cfg.Node.ID, cfg.Node.Cluster
		s.serviceCluster, s.serviceNode = cfg.Node.Cluster, cfg.Node.ID
	}
	s.tracers = tracing.NewRegistry(tracingOpts)
	s.overload = newOverload(cfg.OverloadManager, opts.Stats)
	built := false
	defer func() {
		if !built {
			s.overload.close()
		}
		if !built && s.ownsAccessLogs {
			s.accessLogs.Close()
		}
		if !built {
			_ = s.tracers.Shutdown(context.Background())
		}
	}()
	clusters := map[string]*cluster{}
	s.clusterSet.Store(newClusterSet(clusters))
	for _, c := range cfg.Clusters {
		cl, err := newCluster(ctx, c, opts.Stats, opts.Logs.Logger("upstream"))
		if err == nil {
			if err = cl.configureTLS(cfg.Source); err == nil {
				err = cl.loadUpstreamFilters(ctx, opts.Loader)
			}
			if err != nil {
				cl.close()
			}
		}
		if err != nil {
			s.closeClusters()
			return nil, err
		}
		cl.startHealthChecks()
		clusters[c.Name] = cl
	}
	for _, cl := range clusters {
		cl.waitHealthChecks(ctx)
	}
	set := newClusterSet(clusters)
	s.clusterSet.Store(set)
	s.building = &buildState{clusters: set, tracer: cfg.Tracer}
	defer func() { s.httpManagers, s.building = s.building.cms, nil }()
	for i, l := range cfg.Listeners {
		if h := directHTTP(l); h != nil {
			cm, err := s.newConnManager(ctx, i, l, h)
			if err != nil {
				s.closeClusters()
				return nil, err
			}
			s.managers = append(s.managers, cm)
			continue
		}
		nl, err := s.newNetListener(ctx, i, l)
		if err != nil {
			s.closeClusters()
			return nil, err
		}
		s.netListeners = append(s.netListeners, nl)
	}
	built = true
	return s, nil
}

func (s *Server) newConnManager(ctx context.Context, i int, l *config.Listener, h *config.HTTPConnectionManager) (*connManager, error) {
	cm := &connManager{
		srv:        s,
		listener:   l,
		cfg:        h,
		serverName: h.ServerName,
		log:        s.opts.Logs.Logger("http"),
		stats:      newHCMStats(s.opts.Stats, h.StatPrefix, l),
	}
	var err error
	if cm.accessLogs, err = s.newAccessLoggers(h.AccessLogs); err != nil {
		return nil, fmt.Errorf("listener %q: %w", l.Name, err)
	}
	if err = s.newTracer(cm, l, h); err != nil {
		return nil, fmt.Errorf("listener %q: %w", l.Name, err)
	}
	if cm.localReplies, err = newLocalReplies(h.LocalReply); err != nil {
		return nil, fmt.Errorf("listener %q: local_reply_config: %w", l.Name, err)
	}
	if cm.forwarding, err = newForwardingConfig(h); err != nil {
		return nil, fmt.Errorf("listener %q: internal_address_config: %w", l.Name, err)
	}
	if cm.serverName == "" {
		cm.serverName = "wasmproxy"
	}
	if h.HTTP2.AllowConnect && !extendedConnect {
		// The program did not turn extended CONNECT on (xconnect.go):
		// WebSocket clients fall back to HTTP/1.1.
		cm.log.Warn("http2_protocol_options.allow_connect: extended CONNECT (WebSocket over HTTP/2) is off in this process; import github.com/wasmproxy/wasmproxy/proxy/xconnect or set GODEBUG=http2xconnect=1", "listener", l.Name)
	}
	gen, err := s.buildFilters(ctx, l, h.Filters, h.UpgradeFilters) // reload.go
	if err != nil {
		return nil, err
	}
	cm.filters.Store(gen)
	cm.routes.Store(newRouteGeneration(h.Routes, s.building.clusters))
	for ci, c := range l.FilterChains {
		if c.HTTP == h {
			cm.chainIndex = ci
		}
	}
	s.building.cms = append(s.building.cms, cm)
	return cm, nil
}

// Start binds every listener and starts serving. An address already in
// use is an error naming the listener.
func (s *Server) Start() error {
	s.started = time.Now()
	for _, cm := range s.managers {
		l := cm.listener
		sock, err := s.bindSocket(l)
		if err != nil {
			s.closeListeners()
			return err
		}
		s.listeners = append(s.listeners, s.serveDirect(cm, sock))
		s.log.Info("listener started", "listener", l.Name, "address", sock.Addr().String())
	}
	for _, nl := range s.netListeners {
		if err := nl.start(); err != nil {
			s.closeListeners()
			return err
		}
		s.listeners = append(s.listeners, &runningListener{cfg: nl.cfg, ln: nl.ln, net: nl, sock: nl.ln.(*handoffListener)})
		s.log.Info("listener started", "listener", nl.cfg.Name, "address", nl.ln.Addr().String())
	}
	// Config order, for the admin API.
	order := map[*config.Listener]int{}
	for i, l := range s.cfg.Listeners {
		order[l] = i
	}
	sort.SliceStable(s.listeners, func(i, j int) bool { return order[s.listeners[i].cfg] < order[s.listeners[j].cfg] })
	return nil
}

// serveDirect serves a listener whose one chain is a plaintext HTTP
// connection manager, accepting on sock itself.
func (s *Server) serveDirect(cm *connManager, sock *handoffListener) *runningListener {
	l := cm.listener
	srv := s.newHTTPServer(cm, false)
	go func() {
		if err := srv.Serve(sock); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			s.log.Error("listener stopped", "listener", l.Name, "err", err)
		}
	}()
	return &runningListener{cfg: l, ln: sock, http: srv, cm: cm, sock: sock}
}

// listenNetwork keeps an IPv4 address IPv4-only, as Envoy binds
// 0.0.0.0 (Go's "tcp" would take [::] as well).
func listenNetwork(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "tcp"
	}
	if ip := net.ParseIP(host); ip != nil {
		if ip.To4() != nil {
			return "tcp4"
		}
		return "tcp6"
	}
	return "tcp"
}

// ListenNetwork is listenNetwork for the admin listener.
func ListenNetwork(addr string) string { return listenNetwork(addr) }

// Addr returns the bound address of the named listener ("" if unknown):
// useful when the config asked for port 0.
func (s *Server) Addr(listener string) string {
	s.stateMu.RLock()
	defer s.stateMu.RUnlock()
	for _, rl := range s.listeners {
		if rl.cfg.Name == listener {
			return rl.ln.Addr().String()
		}
	}
	return ""
}

// Draining reports whether Shutdown has begun.
func (s *Server) Draining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

// Shutdown drains the proxy, bounded by ctx and Options.DrainTimeout.
// First every listener answers with "connection: close" (HTTP/2:
// GOAWAY) while still accepting, as Envoy's drain does, until no stream
// is in flight: a request already in flight may still need one of this
// proxy's own listeners as its upstream. Then the listeners close,
// idle connections are dropped, and remaining streams get what is left
// of the budget.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, s.opts.DrainTimeout)
	defer cancel()
	// No reload runs from here on (Reload checks Draining under swapMu).
	s.swapMu.Lock()
	s.swapMu.Unlock() // a reload in progress has finished
	retired := make(chan struct{})
	go func() { s.retiring.Wait(); close(retired) }()
	for _, rl := range s.listeners {
		if rl.net != nil {
			rl.net.drain()
			continue
		}
		rl.http.SetKeepAlivesEnabled(false)
	}
	tick := time.NewTicker(10 * time.Millisecond)
	for s.active.Load() > 0 && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	tick.Stop()
	var errs []error
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, rl := range s.listeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if rl.net != nil {
				if err := rl.net.shutdown(ctx); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
				return
			}
			if err := rl.http.Shutdown(ctx); err != nil {
				_ = rl.http.Close()
				mu.Lock()
				errs = append(errs, fmt.Errorf("listener %q: %w", rl.cfg.Name, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	select {
	case <-retired:
	case <-ctx.Done():
	}
	// The last spans go out through the clusters, before they close,
	// with a budget of their own (the drain may have used ctx's).
	flushCtx, flushCancel := context.WithTimeout(context.Background(), tracingFlushTimeout)
	defer flushCancel()
	if err := s.tracers.Shutdown(flushCtx); err != nil {
		s.log.Warn("tracing: spans not exported at shutdown", "error", err)
	}
	s.closeClusters()
	if s.ownsAccessLogs {
		s.accessLogs.Close() // flushes what the last streams logged
	}
	s.overload.close()
	return errors.Join(errs...)
}

func (s *Server) closeListeners() {
	for _, rl := range s.listeners {
		if rl.net != nil {
			rl.net.close()
			continue
		}
		_ = rl.http.Close()
	}
	for _, nl := range s.netListeners {
		nl.close()
	}
}

func (s *Server) closeClusters() {
	for _, c := range s.currentClusters() {
		c.close()
	}
}

// ListenerStatus is a bound listener, for the admin API.
type ListenerStatus struct {
	Name    string
	Address string
}

// ListenerStatuses lists the bound listeners in config order.
func (s *Server) ListenerStatuses() []ListenerStatus {
	s.stateMu.RLock()
	defer s.stateMu.RUnlock()
	out := make([]ListenerStatus, 0, len(s.listeners))
	for _, rl := range s.listeners {
		out = append(out, ListenerStatus{Name: rl.cfg.Name, Address: rl.ln.Addr().String()})
	}
	return out
}

// EndpointStatus is one cluster member, for the admin API.
type EndpointStatus struct {
	Address  string
	Active   int64
	RqTotal  uint64
	RqError  uint64
	CxFailed uint64
	CxTotal  uint64
	// FailedActiveHC: the health checker has failed the host (or not
	// passed it yet).
	FailedActiveHC bool
	// FailedOutlierCheck: outlier detection has ejected the host.
	FailedOutlierCheck bool
	// FailedEDSHealth: the assignment's health_status keeps it out.
	FailedEDSHealth  bool
	Weight, Priority uint32
}

// ClusterStatus is one cluster, for the admin API.
type ClusterStatus struct {
	Name      string
	Endpoints []EndpointStatus
	// CircuitBreakers are the cluster's configured DEFAULT-priority
	// thresholds (circuit_breakers); nil: Envoy's defaults.
	CircuitBreakers *config.CircuitBreakers
}

// ClusterStatuses lists clusters sorted by name.
func (s *Server) ClusterStatuses() []ClusterStatus {
	clusters := s.currentClusters()
	out := make([]ClusterStatus, 0, len(clusters))
	for name, c := range clusters {
		cs := ClusterStatus{Name: name, CircuitBreakers: c.cfg.CircuitBreakers}
		for _, ep := range c.snapshotEndpoints() {
			cs.Endpoints = append(cs.Endpoints, EndpointStatus{
				Address: ep.address, Active: ep.active.Load(), RqTotal: ep.rqTotal.Load(),
				RqError: ep.rqError.Load(), CxFailed: ep.cxFailed.Load(), CxTotal: ep.cxTotal.Load(),
				FailedActiveHC: ep.failedActiveHC.Load(), FailedOutlierCheck: ep.failedOutlier.Load(),
				FailedEDSHealth: ep.edsUnhealthy, Weight: ep.weight, Priority: ep.priority,
			})
		}
		out = append(out, cs)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Started is when Start ran.
func (s *Server) Started() time.Time { return s.started }
