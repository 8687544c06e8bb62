package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
)

// Reloading a running server, Envoy-style (see docs/decisions.md, "Hot
// reload"). Every piece in use is reference counted so that what a
// reload replaces is closed exactly once, after its last user:
//
//   - a clusterSet is the clusters in use at one time; the server holds
//     its current set, and every route generation, TCP session and
//     callout holds the set it started with. A cluster is closed when
//     the last set naming it is released.
//   - a routeGeneration is one connection manager's route table and the
//     cluster set its routes resolve in; a stream holds one from its
//     start to its end, like its filterGeneration (swap.go).
//   - a listener that is removed or changed drains (stops accepting,
//     in-flight streams and connections finish, bounded by
//     Options.DrainTimeout) and then releases its filters.

// clusterSet is the clusters in use at one time, by name.
type clusterSet struct {
	m        map[string]*cluster
	refs     atomic.Int64
	released chan struct{}
	once     sync.Once
}

// newClusterSet returns a set holding one reference (its creator's) and
// one reference on each of its clusters.
func newClusterSet(m map[string]*cluster) *clusterSet {
	cs := &clusterSet{m: m, released: make(chan struct{})}
	cs.refs.Store(1)
	for _, c := range m {
		c.refs.Add(1)
	}
	return cs
}

func (cs *clusterSet) tryRef() bool {
	for {
		n := cs.refs.Load()
		if n <= 0 {
			return false
		}
		if cs.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// unref drops one reference; the last one drops the set's reference on
// each cluster, closing those no other set names.
func (cs *clusterSet) unref() {
	if cs.refs.Add(-1) == 0 {
		cs.once.Do(func() {
			for _, c := range cs.m {
				c.unref()
			}
			close(cs.released)
		})
	}
}

// acquireClusters returns the current cluster set with a reference
// taken; the caller unrefs it when done.
func (s *Server) acquireClusters() *clusterSet {
	for {
		if cs := s.clusterSet.Load(); cs.tryRef() {
			return cs
		}
	}
}

// currentClusters is the current set's map, for lookups that take no
// reference (admin, validation).
func (s *Server) currentClusters() map[string]*cluster { return s.clusterSet.Load().m }

// unref drops one set's reference; the last one closes the cluster.
func (c *cluster) unref() {
	if c.refs.Add(-1) == 0 {
		c.close()
	}
}

// routeGeneration is one connection manager's routes and the clusters
// they resolve in. refs counts the streams using it plus one while it is
// current.
type routeGeneration struct {
	cfg      *config.RouteConfig
	table    *routeTable
	clusters *clusterSet
	refs     atomic.Int64
	released chan struct{}
	once     sync.Once
}

// newRouteGeneration takes a reference on cs, which must be alive.
func newRouteGeneration(rc *config.RouteConfig, cs *clusterSet) *routeGeneration {
	cs.refs.Add(1)
	g := &routeGeneration{cfg: rc, table: newRouteTable(rc), clusters: cs, released: make(chan struct{})}
	g.refs.Store(1)
	return g
}

func (g *routeGeneration) unref() {
	if g.refs.Add(-1) == 0 {
		g.once.Do(func() {
			g.clusters.unref()
			close(g.released)
		})
	}
}

// acquireRoutes returns the current route generation with a reference
// taken for one stream.
func (cm *connManager) acquireRoutes() *routeGeneration {
	for {
		g := cm.routes.Load()
		n := g.refs.Load()
		if n > 0 && g.refs.CompareAndSwap(n, n+1) {
			return g
		}
	}
}

// buildState is what New and Reload are building: the cluster set new
// connection managers and TCP proxies resolve in, and the connection
// managers built so far. Only one build runs at a time (New, or Reload
// under swapMu).
type buildState struct {
	clusters *clusterSet
	cms      []*connManager
}

// handoffListener is a bound TCP socket that can be handed from one
// consumer (an http.Server or a netListener's accept loop) to another
// without closing it, so a changed listener on the same address keeps
// accepting: the kernel queues connections while the new consumer takes
// over, and none is refused.
type handoffListener struct {
	*net.TCPListener
	retired   atomic.Bool // Accept answers net.ErrClosed
	handedOff atomic.Bool // Close leaves the socket open
	exited    chan struct{}
	exitOnce  sync.Once
	// carried are connections accepted after retirement (or handed on
	// from the previous consumer): the next consumer gets them first.
	mu      sync.Mutex
	carried []net.Conn
}

func newHandoff(tl *net.TCPListener) *handoffListener {
	return &handoffListener{TCPListener: tl, exited: make(chan struct{})}
}

// bindSocket binds a listener's address.
func bindSocket(addr string) (*handoffListener, error) {
	ln, err := net.Listen(listenNetwork(addr), addr)
	if err != nil {
		return nil, err
	}
	return newHandoff(ln.(*net.TCPListener)), nil
}

func (h *handoffListener) Accept() (net.Conn, error) {
	h.mu.Lock()
	if len(h.carried) > 0 && !h.retired.Load() {
		c := h.carried[0]
		h.carried = h.carried[1:]
		h.mu.Unlock()
		return c, nil
	}
	h.mu.Unlock()
	if h.retired.Load() {
		h.exitOnce.Do(func() { close(h.exited) })
		return nil, net.ErrClosed
	}
	c, err := h.TCPListener.Accept()
	if h.retired.Load() {
		if err == nil {
			// Accepted as the socket changed hands: the successor serves it.
			h.mu.Lock()
			h.carried = append(h.carried, c)
			h.mu.Unlock()
		}
		h.exitOnce.Do(func() { close(h.exited) })
		return nil, net.ErrClosed
	}
	return c, err
}

func (h *handoffListener) Close() error {
	h.retired.Store(true)
	if h.handedOff.Load() {
		return nil
	}
	return h.TCPListener.Close()
}

// handOff stops this consumer's accepting (its Accept returns
// net.ErrClosed) and returns the same socket for the next consumer.
func (h *handoffListener) handOff() *handoffListener {
	h.handedOff.Store(true)
	h.retired.Store(true)
	_ = h.TCPListener.SetDeadline(time.Unix(1, 0)) // wakes a blocked Accept
	select {
	case <-h.exited:
	case <-time.After(2 * time.Second):
	}
	_ = h.TCPListener.SetDeadline(time.Time{})
	next := newHandoff(h.TCPListener)
	h.mu.Lock()
	next.carried, h.carried = h.carried, nil
	h.mu.Unlock()
	return next
}

// ReloadPlan is what a reload changes.
type ReloadPlan struct {
	// FilterSwaps are HTTP filter changes on listeners that are kept.
	FilterSwaps []HTTPFilterSwap
	// RoutesChanged names ("listener/chain") the kept connection managers
	// whose route_config changed.
	RoutesChanged []string

	ClustersAdded, ClustersChanged, ClustersRemoved    []string
	ListenersAdded, ListenersChanged, ListenersRemoved []string
}

// Empty reports whether the new config changes nothing.
func (p *ReloadPlan) Empty() bool {
	return len(p.FilterSwaps)+len(p.RoutesChanged)+len(p.ClustersAdded)+len(p.ClustersChanged)+
		len(p.ClustersRemoved)+len(p.ListenersAdded)+len(p.ListenersChanged)+len(p.ListenersRemoved) == 0
}

// Summary lists the changes for logs and /reload_status: "main/0" for a
// filter swap, "routes main/0", "cluster+ x", "cluster~ x", "cluster- x",
// "listener+ x", "listener~ x", "listener- x".
func (p *ReloadPlan) Summary() []string {
	var out []string
	for _, sw := range p.FilterSwaps {
		out = append(out, fmt.Sprintf("%s/%d", sw.Listener, sw.Chain))
	}
	add := func(prefix string, names []string) {
		for _, n := range names {
			out = append(out, prefix+n)
		}
	}
	add("routes ", p.RoutesChanged)
	add("cluster+ ", p.ClustersAdded)
	add("cluster~ ", p.ClustersChanged)
	add("cluster- ", p.ClustersRemoved)
	add("listener+ ", p.ListenersAdded)
	add("listener~ ", p.ListenersChanged)
	add("listener- ", p.ListenersRemoved)
	return out
}

// ReloadResult is a reload that was applied.
type ReloadResult struct {
	Plan *ReloadPlan
	// Released is closed once everything the reload replaced is gone:
	// retired filters released, removed and changed listeners drained and
	// closed, replaced clusters closed.
	Released <-chan struct{}
	// RetiredFilters are the HTTP filter configs no longer in use.
	RetiredFilters []*config.HTTPFilter
}

// PlanReload compares cfg with the running config. A listener is kept
// (same socket, same connections) when nothing but its HTTP filters and
// route configs differ; otherwise it is changed and will be replaced. A
// cluster whose config differs is changed. same reports whether two
// filter configs build the same filter (same config and same code);
// filter sets whose filters are all the same are left alone, so their
// plugins keep their state.
func (s *Server) PlanReload(cfg *config.Bootstrap, same func(running, next *config.HTTPFilter) bool) (*ReloadPlan, error) {
	if err := cfg.Check(); err != nil { // names unique, clusters known
		return nil, err
	}
	p := &ReloadPlan{}
	oldClusters := map[string]*config.Cluster{}
	for _, c := range s.cfg.Clusters {
		oldClusters[c.Name] = c
	}
	seen := map[string]bool{}
	for _, c := range cfg.Clusters {
		seen[c.Name] = true
		switch old := oldClusters[c.Name]; {
		case old == nil:
			p.ClustersAdded = append(p.ClustersAdded, c.Name)
		case !jsonEqual(old, c):
			p.ClustersChanged = append(p.ClustersChanged, c.Name)
		}
	}
	for _, c := range s.cfg.Clusters {
		if !seen[c.Name] {
			p.ClustersRemoved = append(p.ClustersRemoved, c.Name)
		}
	}

	running := map[string]*config.Listener{}
	for _, l := range s.cfg.Listeners {
		running[l.Name] = l
	}
	seen = map[string]bool{}
	for _, l := range cfg.Listeners {
		if seen[l.Name] { // unnamed: Check allows several, as Envoy does
			return nil, fmt.Errorf("static_resources.listeners: more than one listener without a name; a reload tells listeners apart by name")
		}
		seen[l.Name] = true
		old := running[l.Name]
		if old == nil {
			p.ListenersAdded = append(p.ListenersAdded, l.Name)
			continue
		}
		if err := sameShape(old, l, "http_filters", "route_config"); err != nil {
			p.ListenersChanged = append(p.ListenersChanged, l.Name)
			continue
		}
		for ci, c := range l.FilterChains {
			if c.HTTP == nil {
				continue
			}
			cm := s.manager(l.Name, ci)
			if cm == nil {
				return nil, fmt.Errorf("listener %q: filter chain %d is not running", l.Name, ci)
			}
			current := cm.filters.Load().configs
			next := withoutRouter(c.HTTP.Filters)
			changed := len(current) != len(next)
			for i := 0; !changed && i < len(next); i++ {
				changed = !same(current[i], next[i])
			}
			if changed {
				p.FilterSwaps = append(p.FilterSwaps, HTTPFilterSwap{Listener: l.Name, Chain: ci, Filters: next})
			}
			if !jsonEqual(cm.routes.Load().cfg, c.HTTP.Routes) {
				p.RoutesChanged = append(p.RoutesChanged, fmt.Sprintf("%s/%d", l.Name, ci))
			}
		}
	}
	for _, l := range s.cfg.Listeners {
		if !seen[l.Name] {
			p.ListenersRemoved = append(p.ListenersRemoved, l.Name)
		}
	}
	return p, nil
}

func jsonEqual(a, b any) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && string(ja) == string(jb)
}

// Reload turns the running server into cfg, all or nothing. It plans
// (PlanReload), then builds every new piece: changed and added clusters,
// new filter and route generations for kept listeners, the connection
// managers, TCP proxies and network filters of changed and added
// listeners, and binds added listeners (and changed ones whose address
// changed). If any of that fails, what was built is released and the
// running server is untouched. Otherwise it commits: the new cluster set
// becomes current; kept listeners switch new streams to their new
// filters and routes (which resolve clusters in the new set) and keep
// their connections; a changed listener on the same address takes over
// the old socket (no connection is refused) while the old one drains;
// removed listeners stop accepting and drain; added listeners serve.
// What was replaced is closed after its last stream or connection ends
// (ReloadResult.Released).
func (s *Server) Reload(ctx context.Context, cfg *config.Bootstrap, same func(running, next *config.HTTPFilter) bool) (*ReloadResult, error) {
	s.swapMu.Lock()
	defer s.swapMu.Unlock()
	if s.Draining() {
		return nil, fmt.Errorf("the server is shutting down")
	}
	plan, err := s.PlanReload(cfg, same)
	if err != nil {
		return nil, err
	}
	if plan.Empty() {
		s.stateMu.Lock()
		s.cfg = cfg
		s.stateMu.Unlock()
		return &ReloadResult{Plan: plan, Released: closedChan}, nil
	}

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
			if err = cl.configureTLS(cfg.Source); err != nil {
				cl.close()
			}
		}
		if err != nil {
			for _, f := range fresh {
				f.close()
			}
			return nil, err
		}
		fresh = append(fresh, cl)
		next[c.Name] = cl
	}
	set := newClusterSet(next)
	undo = append(undo, set.unref)
	s.building = &buildState{clusters: set}
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
			gen, err := s.buildFilters(ctx, cm.listener, fs)
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
			undo = append(undo, func() { s.releaseNetFilters(nl) })
		}
		for _, cm := range s.building.cms[before:] {
			undo = append(undo, cm.filters.Load().unref, cm.routes.Load().unref)
		}
		// A listener replaced on the address it is bound to (as configured,
		// or the port it got for port 0) takes over the socket at commit.
		sameAddr := b.from != nil && b.from.sock != nil &&
			(b.from.cfg.Address == l.Address || b.from.sock.Addr().String() == l.Address)
		if !sameAddr {
			sock, err := bindSocket(l.Address)
			if err != nil {
				return abort(fmt.Errorf("listener %q: %w", l.Name, err))
			}
			b.sock = sock
			undo = append(undo, func() { _ = sock.TCPListener.Close() })
		}
		fresh2 = append(fresh2, b)
	}

	// Commit: nothing below fails.
	var waits []<-chan struct{}
	var retired []*config.HTTPFilter
	oldSet := s.clusterSet.Swap(set)
	waits = append(waits, oldSet.released)
	for _, ks := range kept {
		if ks.filters != nil {
			o := ks.cm.filters.Swap(ks.filters)
			retired = append(retired, o.configs...)
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
		}
		if b.from != nil {
			retired = append(retired, s.listenerFilters(b.from)...)
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
		rl := runningByName[n]
		retired = append(retired, s.listenerFilters(rl)...)
		waits = append(waits, s.retireListener(rl))
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
	return &ReloadResult{Plan: plan, Released: done, RetiredFilters: retired}, nil
}

// listenerFilters lists the HTTP filter configs a listener runs.
func (s *Server) listenerFilters(rl *runningListener) []*config.HTTPFilter {
	var out []*config.HTTPFilter
	for _, cm := range rl.cms() {
		out = append(out, cm.filters.Load().configs...)
	}
	return out
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
			s.releaseNetFilters(nl)
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

// NetworkFilterReleaser is implemented by loaders whose network filter
// factories hold resources; the server calls it for the network filters
// of a listener a reload retired, after its last connection ended.
type NetworkFilterReleaser interface {
	ReleaseNetworkFilter(ctx context.Context, f filter.NetworkFactory)
}

func (s *Server) releaseNetFilters(nl *netListener) {
	r, ok := s.opts.Loader.(NetworkFilterReleaser)
	if !ok {
		return
	}
	for _, c := range nl.chains {
		if c.tcp != nil {
			for _, f := range c.tcp.factories {
				r.ReleaseNetworkFilter(context.Background(), f)
			}
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
