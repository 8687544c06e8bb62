package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
)

// Reloading a running server, Envoy-style (see docs/decisions.md, "Hot
// reload", and docs/architecture.md, "A reload"): Reload plans with a
// pure Diff of the running model and the new one (plan.go), builds every
// new piece, commits all at once or undoes what it built, and releases
// what it replaced after its last user. Every piece in use is a
// generation (generation.go), so what a reload replaces is released
// exactly once:
//
//   - a clusterSet is the clusters in use at one time; the server holds
//     its current set, and every route generation, TCP session and
//     callout holds the set it started with. A cluster is closed when
//     the last set naming it is released.
//   - a routeGeneration is one connection manager's route table and the
//     cluster set its routes resolve in; a stream holds one from its
//     start to its end, like its filterGeneration.
//   - a listener that is removed or changed drains (stops accepting,
//     in-flight streams and connections finish, bounded by
//     Options.DrainTimeout) and then releases its filters.
//
// Filter factories that hold resources (a Wasm plugin's instances)
// implement io.Closer; a released generation or retired listener closes
// them.

// buildState is what New and Reload are building: the cluster set new
// connection managers and TCP proxies resolve in, and the connection
// managers built so far. Only one build runs at a time (New, or Reload
// under swapMu).
type buildState struct {
	clusters *clusterSet
	cms      []*connManager
	// tracer is the bootstrap's tracer of the config being built
	// (proxy/tracing.go).
	tracer *config.TracingProvider
}

// ReloadResult is a reload that was applied.
type ReloadResult struct {
	Plan *ReloadPlan
	// Released is closed once everything the reload replaced is gone:
	// replaced filters closed, removed and changed listeners drained and
	// closed, replaced clusters closed.
	Released <-chan struct{}
}

// Reload turns the running server into cfg, all or nothing. It plans
// (Diff of the running model and cfg), then builds every new piece:
// changed and added clusters, new filter and route generations for kept
// listeners, the connection managers, TCP proxies and network filters of
// changed and added listeners, and binds added listeners (and changed
// ones whose address changed). If any of that fails, what was built is released and the
// running server is untouched. Otherwise it commits: the new cluster set
// becomes current; kept listeners switch new streams to their new
// filters and routes (which resolve clusters in the new set) and keep
// their connections; a changed listener on the same address takes over
// the old socket (no connection is refused) while the old one drains;
// removed listeners stop accepting and drain; added listeners serve.
// What was replaced is closed after its last stream or connection ends
// (ReloadResult.Released).
// ErrShuttingDown is Reload's error once Shutdown has begun: the server
// no longer takes a new configuration.
var ErrShuttingDown = errors.New("the server is shutting down")

func (s *Server) Reload(ctx context.Context, cfg *config.Bootstrap) (*ReloadResult, error) {
	s.swapMu.Lock()
	defer s.swapMu.Unlock()
	if s.Draining() {
		return nil, ErrShuttingDown
	}
	plan, err := Diff(s.cfg, cfg)
	if err != nil {
		return nil, err
	}
	if plan.Empty() {
		s.stateMu.Lock()
		s.cfg = cfg
		s.stateMu.Unlock()
		return &ReloadResult{Plan: plan, Released: closedChan}, nil
	}
	return s.apply(ctx, cfg, plan)
}

// apply builds what plan needs, then commits it or, when anything fails,
// undoes what it built. It runs under swapMu.
func (s *Server) apply(ctx context.Context, cfg *config.Bootstrap, plan *ReloadPlan) (*ReloadResult, error) {
	// Build. Everything built is undone by abort until the commit.
	var undo []func()
	abort := func(err error) (*ReloadResult, error) {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		return nil, err
	}
	changedCluster := map[string]bool{}
	for _, n := range append(append([]string(nil), plan.ClustersAdded...), plan.ClustersChanged...) {
		changedCluster[n] = true
	}
	old := s.currentClusters()
	next := map[string]*cluster{}
	var fresh []*cluster
	for _, c := range cfg.Clusters {
		if !changedCluster[c.Name] {
			next[c.Name] = old[c.Name]
			continue
		}
		cl, err := newCluster(ctx, c, s.opts.Stats, s.opts.Logs.Logger("upstream"))
		if err == nil {
			if err = cl.configureTLS(cfg.Source); err == nil {
				err = cl.loadUpstreamFilters(ctx, s.opts.Loader)
			}
			if err != nil {
				cl.close()
			}
		}
		if err != nil {
			for _, f := range fresh {
				f.close()
			}
			return nil, err
		}
		cl.startHealthChecks()
		fresh = append(fresh, cl)
		next[c.Name] = cl
	}
	for _, cl := range fresh {
		cl.waitHealthChecks(ctx)
	}
	set := newClusterSet(next)
	undo = append(undo, set.unref)
	s.building = &buildState{clusters: set, tracer: cfg.Tracer}
	defer func() { s.building = nil }()

	clustersChanged := len(plan.ClustersAdded)+len(plan.ClustersChanged)+len(plan.ClustersRemoved) > 0
	newListeners := map[string]*config.Listener{}
	for _, l := range cfg.Listeners {
		newListeners[l.Name] = l
	}
	isKept := map[string]bool{}
	for _, l := range s.cfg.Listeners {
		isKept[l.Name] = newListeners[l.Name] != nil
	}
	for _, n := range plan.ListenersChanged {
		isKept[n] = false
	}
	swapFor := map[*connManager][]*config.HTTPFilter{}
	for _, sw := range plan.FilterSwaps {
		swapFor[s.manager(sw.Listener, sw.Chain)] = sw.Filters
	}
	type keptSwap struct {
		cm      *connManager
		filters *filterGeneration
		routes  *routeGeneration
	}
	var kept []keptSwap
	for _, cm := range s.httpManagers {
		if !isKept[cm.listener.Name] {
			continue
		}
		nl := newListeners[cm.listener.Name]
		h := nl.FilterChains[cm.chainIndex].HTTP
		ks := keptSwap{cm: cm}
		if fs, ok := swapFor[cm]; ok {
			gen, err := s.buildFilters(ctx, cm.listener, fs, h.UpgradeFilters)
			if err != nil {
				return abort(err)
			}
			undo = append(undo, gen.unref)
			ks.filters = gen
		}
		if clustersChanged || !jsonEqual(cm.routes.Load().cfg, h.Routes) {
			rg := newRouteGeneration(h.Routes, set)
			undo = append(undo, rg.unref)
			ks.routes = rg
		} else {
			// The same routes, resolving in the new set: left on the old
			// one, they would hold it forever and the reload would never
			// report it released (a goroutine left waiting per
			// filter-only reload, as a plugin rebuild under --watch is).
			rg := cm.routes.Load().rebind(set)
			undo = append(undo, rg.unref)
			ks.routes = rg
		}
		if ks.filters != nil || ks.routes != nil {
			kept = append(kept, ks)
		}
	}

	// New listeners (added or changed), built against the new set.
	type built struct {
		cfg  *config.Listener
		cm   *connManager // a direct HTTP listener
		nl   *netListener
		sock *handoffListener // bound now; nil when taken over at commit
		from *runningListener // the listener it replaces
	}
	var fresh2 []*built
	runningByName := map[string]*runningListener{}
	for _, rl := range s.listeners {
		runningByName[rl.cfg.Name] = rl
	}
	replaced := map[string]bool{}
	for _, n := range plan.ListenersChanged {
		replaced[n] = true
	}
	for i, l := range cfg.Listeners {
		if isKept[l.Name] {
			continue
		}
		b := &built{cfg: l, from: runningByName[l.Name]}
		before := len(s.building.cms)
		if h := directHTTP(l); h != nil {
			cm, err := s.newConnManager(ctx, i, l, h)
			if err != nil {
				return abort(err)
			}
			b.cm = cm
		} else {
			nl, err := s.newNetListener(ctx, i, l)
			if err != nil {
				// Release the connection managers it built before failing.
				for _, cm := range s.building.cms[before:] {
					cm.filters.Load().unref()
					cm.routes.Load().unref()
				}
				return abort(err)
			}
			b.nl = nl
			undo = append(undo, nl.closeFilters)
		}
		for _, cm := range s.building.cms[before:] {
			undo = append(undo, cm.filters.Load().unref, cm.routes.Load().unref)
		}
		// A listener replaced on the address it is bound to (as configured,
		// or the port it got for port 0) takes over the socket at commit.
		sameAddr := b.from != nil && b.from.sock != nil &&
			(b.from.cfg.Address == l.Address || b.from.sock.Addr().String() == l.Address)
		if !sameAddr {
			sock, err := s.bindSocket(l)
			if err != nil {
				return abort(err)
			}
			b.sock = sock
			undo = append(undo, func() { _ = sock.TCPListener.Close() })
		}
		fresh2 = append(fresh2, b)
	}

	// Commit: nothing below fails.
	var waits []<-chan struct{}
	oldSet := s.clusterSet.Swap(set)
	waits = append(waits, oldSet.released)
	for _, ks := range kept {
		if ks.filters != nil {
			o := ks.cm.filters.Swap(ks.filters)
			waits = append(waits, o.released)
			o.unref()
		}
		if ks.routes != nil {
			o := ks.cm.routes.Swap(ks.routes)
			waits = append(waits, o.released)
			o.unref()
		}
	}
	var started []*runningListener
	for _, b := range fresh2 {
		sock := b.sock
		if sock == nil {
			sock = b.from.sock.handOff()
			s.setConnLimit(sock, b.cfg)
		}
		if b.from != nil {
			waits = append(waits, s.retireListener(b.from))
		}
		var rl *runningListener
		if b.cm != nil {
			rl = s.serveDirect(b.cm, sock)
		} else {
			b.nl.serve(sock)
			rl = &runningListener{cfg: b.cfg, ln: b.nl.ln, net: b.nl, sock: sock}
		}
		started = append(started, rl)
		s.log.Info("listener started", "listener", b.cfg.Name, "address", sock.Addr().String())
	}
	removed := map[string]bool{}
	for _, n := range plan.ListenersRemoved {
		removed[n] = true
		waits = append(waits, s.retireListener(runningByName[n]))
	}

	// The server's lists, in config order.
	var listeners []*runningListener
	for _, rl := range s.listeners {
		if !removed[rl.cfg.Name] && !replaced[rl.cfg.Name] {
			listeners = append(listeners, rl)
		}
	}
	listeners = append(listeners, started...)
	order := map[string]int{}
	for i, l := range cfg.Listeners {
		order[l.Name] = i
	}
	sort.SliceStable(listeners, func(i, j int) bool { return order[listeners[i].cfg.Name] < order[listeners[j].cfg.Name] })
	var managers []*connManager
	var nets []*netListener
	var https []*connManager
	for _, rl := range listeners {
		if rl.net != nil {
			nets = append(nets, rl.net)
			for _, c := range rl.net.chains {
				if c.cm != nil {
					https = append(https, c.cm)
				}
			}
		} else {
			managers = append(managers, rl.cm)
			https = append(https, rl.cm)
		}
	}
	s.stateMu.Lock()
	s.cfg, s.listeners, s.managers, s.netListeners, s.httpManagers = cfg, listeners, managers, nets, https
	s.stateMu.Unlock()
	oldSet.unref()

	done := make(chan struct{})
	go func() {
		for _, w := range waits {
			<-w
		}
		close(done)
	}()
	return &ReloadResult{Plan: plan, Released: done}, nil
}

// cms lists a running listener's HTTP connection managers.
func (rl *runningListener) cms() []*connManager {
	if rl.net == nil {
		return []*connManager{rl.cm}
	}
	var out []*connManager
	for _, c := range rl.net.chains {
		if c.cm != nil {
			out = append(out, c.cm)
		}
	}
	return out
}

// retireListener drains a listener a reload removed or replaced: it
// stops accepting (a socket handed to the replacement stays open),
// in-flight streams and TCP connections get Options.DrainTimeout to
// finish, then what is left is closed and its filters released. The
// channel closes when everything it held has been released.
func (s *Server) retireListener(rl *runningListener) <-chan struct{} {
	done := make(chan struct{})
	s.retiring.Add(1)
	go func() {
		defer s.retiring.Done()
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.DrainTimeout)
		defer cancel()
		if rl.net != nil {
			nl := rl.net
			nl.drain()
			nl.mu.Lock()
			nl.closed = true
			nl.mu.Unlock()
			_ = nl.ln.Close()
			for _, c := range nl.chains {
				// Sessions ahead of a connection manager end with its
				// keep-alive connections, which shutdown closes.
				if c.tcp != nil && c.tcp.local == nil {
					c.tcp.waitIdle(ctx)
				}
			}
			if err := nl.shutdown(ctx); err != nil {
				s.log.Warn("retired listener drain incomplete", "listener", rl.cfg.Name, "err", err)
			}
			nl.closeFilters()
		} else {
			// net/http's Shutdown drops a connection whose request it reads
			// after shutdown began, unanswered: a connection accepted just
			// before the socket changed hands would be lost. So first stop
			// accepting (closing the socket unless the successor has it),
			// answer with "connection: close", and wait for this server's
			// connections to end; only then shut it down.
			if rl.sock != nil && !rl.sock.handedOff.Load() {
				_ = rl.sock.Close()
			}
			rl.http.SetKeepAlivesEnabled(false)
			for ctx.Err() == nil && rl.openConns() > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(10 * time.Millisecond):
				}
			}
			if err := rl.http.Shutdown(ctx); err != nil {
				_ = rl.http.Close()
				s.log.Warn("retired listener drain incomplete", "listener", rl.cfg.Name, "err", err)
			}
		}
		var gens []<-chan struct{}
		for _, cm := range rl.cms() {
			f, r := cm.filters.Load(), cm.routes.Load()
			gens = append(gens, f.released, r.released)
			f.unref()
			r.unref()
		}
		for _, g := range gens {
			<-g
		}
		s.log.Info("listener retired", "listener", rl.cfg.Name)
	}()
	return done
}

// waitIdle waits, bounded by ctx, until the proxy has no session.
func (p *tcpProxy) waitIdle(ctx context.Context) {
	for ctx.Err() == nil {
		p.mu.Lock()
		n := len(p.sessions)
		p.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// openConns counts the downstream connections still open on a directly
// served HTTP listener.
func (rl *runningListener) openConns() int64 {
	var n int64
	for _, cm := range rl.cms() {
		n += cm.open.Load()
	}
	return n
}

// buildFilters loads the factories of filters (router excluded), and of
// each upgrade type's own chain (upgrade_configs[].filters), into a
// generation whose release closes them all.
func (s *Server) buildFilters(ctx context.Context, l *config.Listener, filters []*config.HTTPFilter, upgradeFilters map[string][]*config.HTTPFilter) (*filterGeneration, error) {
	main, err := s.loadFilters(ctx, l, filters, "http_filters")
	if err != nil {
		return nil, err
	}
	var upgrades map[string]*filterList
	closeAll := func() {
		closeFactories(main.factories)
		for _, u := range upgrades {
			closeFactories(u.factories)
		}
	}
	for _, t := range slices.Sorted(maps.Keys(upgradeFilters)) {
		u, err := s.loadFilters(ctx, l, upgradeFilters[t], fmt.Sprintf("upgrade_configs[%s].filters", t))
		if err != nil {
			closeAll()
			return nil, err
		}
		if upgrades == nil {
			upgrades = map[string]*filterList{}
		}
		upgrades[t] = &u
	}
	return newFilterGeneration(main, upgrades), nil
}

// loadFilters loads one HTTP filter chain's factories (where names it
// in errors), the router left out.
func (s *Server) loadFilters(ctx context.Context, l *config.Listener, filters []*config.HTTPFilter, where string) (filterList, error) {
	var out filterList
	for fi, f := range filters {
		if f.Router {
			continue
		}
		if s.opts.Loader == nil {
			return filterList{}, fmt.Errorf("listener %q: %s[%d] %q: no filter loader configured", l.Name, where, fi, f.Name)
		}
		fac, err := s.opts.Loader.LoadHTTPFilter(ctx, l.Name, f)
		if err != nil {
			closeFactories(out.factories)
			return filterList{}, err
		}
		out.factories = append(out.factories, fac)
		out.configs = append(out.configs, f)
	}
	return out, nil
}

// closeFactories releases the factories that hold resources: those
// that implement io.Closer.
func closeFactories[F any](factories []F) {
	for _, f := range factories {
		if c, ok := any(f).(io.Closer); ok {
			_ = c.Close()
		}
	}
}

// closeFilters closes the network filter factories of a listener that
// was retired, after its last connection ended, or never served.
func (nl *netListener) closeFilters() {
	for _, c := range nl.chains {
		if c.tcp != nil {
			closeFactories(c.tcp.factories)
		}
	}
}

// manager finds a running HTTP connection manager; under swapMu.
func (s *Server) manager(listener string, chain int) *connManager {
	for _, cm := range s.httpManagers {
		if cm.listener.Name == listener && cm.chainIndex == chain {
			return cm
		}
	}
	return nil
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()
