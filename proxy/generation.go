package proxy

import (
	"sync"
	"sync/atomic"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
)

// A generation is one version of something a reload replaces while
// streams still use the old one: the clusters in use (clusterSet), one
// connection manager's routes (routeGeneration) or HTTP filters
// (filterGeneration). It counts its users (streams, TCP sessions,
// callouts) plus one while it is current. A reload stores the new
// generation and drops the server's reference on the old one, which is
// released, exactly once, when its last user drops its own.
type generation struct {
	refs     atomic.Int64
	released chan struct{} // closed after release ran
	once     sync.Once
	release  func() // may be nil
}

// start gives the generation its creator's reference; release runs when
// the last reference is dropped.
func (g *generation) start(release func()) {
	g.refs.Store(1)
	g.released = make(chan struct{})
	g.release = release
}

// tryRef takes a reference unless the count already reached zero: the
// generation was released and must not be used.
func (g *generation) tryRef() bool {
	for {
		n := g.refs.Load()
		if n <= 0 {
			return false
		}
		if g.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// ref takes a reference on a generation known to be alive (its caller
// holds one).
func (g *generation) ref() { g.refs.Add(1) }

// unref drops one reference; the last one runs the release.
func (g *generation) unref() {
	if g.refs.Add(-1) == 0 {
		g.once.Do(func() {
			if g.release != nil {
				g.release()
			}
			close(g.released)
		})
	}
}

// counted is a type that embeds generation.
type counted interface{ tryRef() bool }

// acquire returns the generation current holds, with a reference taken
// for one user, who must unref it when done. A generation whose count
// already reached zero has just been replaced, so acquire reads current
// again.
func acquire[T any, P interface {
	*T
	counted
}](current *atomic.Pointer[T]) P {
	for {
		if g := P(current.Load()); g.tryRef() {
			return g
		}
	}
}

// clusterSet is the clusters in use at one time, by name.
type clusterSet struct {
	generation
	m map[string]*cluster
}

// newClusterSet returns a set holding one reference (its creator's) and
// one reference on each of its clusters; its release drops those,
// closing the clusters no other set names.
func newClusterSet(m map[string]*cluster) *clusterSet {
	cs := &clusterSet{m: m}
	for _, c := range m {
		c.refs.Add(1)
	}
	cs.start(func() {
		for _, c := range m {
			c.unref()
		}
	})
	return cs
}

// acquireClusters returns the current cluster set with a reference
// taken; the caller unrefs it when done.
func (s *Server) acquireClusters() *clusterSet { return acquire(&s.clusterSet) }

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
// they resolve in. A stream holds one from its start to its end, like
// its filterGeneration.
type routeGeneration struct {
	generation
	cfg      *config.RouteConfig
	table    *routeTable
	clusters *clusterSet
}

// newRouteGeneration takes a reference on cs, which must be alive.
func newRouteGeneration(rc *config.RouteConfig, cs *clusterSet) *routeGeneration {
	cs.ref()
	g := &routeGeneration{cfg: rc, table: newRouteTable(rc), clusters: cs}
	g.start(cs.unref)
	return g
}

// rebind is a generation of g's routes (the same table) resolving in
// cs, which must be alive; it takes a reference on cs.
func (g *routeGeneration) rebind(cs *clusterSet) *routeGeneration {
	cs.ref()
	n := &routeGeneration{cfg: g.cfg, table: g.table, clusters: cs}
	n.start(cs.unref)
	return n
}

// acquireRoutes returns the current route generation with a reference
// taken for one stream.
func (cm *connManager) acquireRoutes() *routeGeneration { return acquire(&cm.routes) }

// filterGeneration is one connection manager's HTTP filter factories. A
// stream takes the current generation when it starts and keeps it to its
// end; its release closes the factories (closeFactories).
type filterGeneration struct {
	generation
	filterList // http_filters
	// upgrades are the upgrade_configs entries' own chains, by type
	// (config.HTTPConnectionManager.UpgradeFilters): an upgraded
	// stream of the type runs one instead of http_filters.
	upgrades map[string]*filterList
}

// filterList is one HTTP filter chain's filters: the non-router ones,
// in order, and their factories.
type filterList struct {
	configs   []*config.HTTPFilter
	factories []filter.Factory
}

func newFilterGeneration(main filterList, upgrades map[string]*filterList) *filterGeneration {
	g := &filterGeneration{filterList: main, upgrades: upgrades}
	g.start(func() {
		closeFactories(main.factories)
		for _, l := range upgrades {
			closeFactories(l.factories)
		}
	})
	return g
}

// chain is the filter chain a stream runs, as Envoy's
// createUpgradeFilterChain picks it: for an upgrade that upgrade_configs
// (the route's or the connection manager's) enabled, the connection
// manager's entry's own filters for the type, if it has some; else
// http_filters.
func (g *filterGeneration) chain(u *upgrade) *filterList {
	if u != nil && u.active != nil {
		if l := g.upgrades[u.typ]; l != nil {
			return l
		}
	}
	return &g.filterList
}

// acquireFilters returns the current generation with a reference taken
// for one stream; the caller must unref it when the stream ends.
func (cm *connManager) acquireFilters() *filterGeneration { return acquire(&cm.filters) }
