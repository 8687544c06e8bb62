// Package filters is the registry of native HTTP filters: Go filters
// that run beside Wasm filters behind the same filter.Factory contract,
// configured with Envoy's own protos. Each filter lives in a subpackage
// (filters/cors, ...) that registers itself from init by its typed_config
// message and, when it takes one, its per-route message. The config
// package checks and parses through Lookup and LookupPerRoute, and the
// loader makes factories through the same entry, so a filter is known
// by one table. Package filters/all links every filter in.
package filters

import (
	"fmt"
	"log/slog"
	"sort"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/stats"
)

// Native describes one native HTTP filter.
type Native struct {
	// Name is the filter's canonical name (envoy.filters.http.cors); an
	// http_filters entry without typed_config selects the filter by it.
	Name string
	// Config is the full name of the typed_config message.
	Config protoreflect.FullName
	// Parse checks and reads a typed_config message (nil: the entry had
	// no typed_config, the filter's defaults). path is the message's
	// field path; errors name the field under it.
	Parse func(msg proto.Message, path string) (any, error)
	// PerRoute is the full name of the message the filter takes in
	// typed_per_filter_config ("" for none), read by ParsePerRoute.
	PerRoute      protoreflect.FullName
	ParsePerRoute func(msg proto.Message, path string) (any, error)
	// New makes the factory for one configured filter from what Parse
	// returned.
	New func(cfg any, env Env) (filter.Factory, error)
	// Internal marks a filter the proxy puts in a chain itself (the xDS
	// stand-ins): its typed_config message is a real Envoy message that
	// Envoy has no filter for, so it is taken only by an entry with the
	// filter's own Name; a user's entry of any other name naming that
	// message is refused as Envoy refuses it.
	Internal bool
}

// Env is what a native filter's factory gets from the proxy.
type Env struct {
	// FilterName is the http_filters entry's name: the key of its
	// per-route entries in typed_per_filter_config.
	FilterName string
	// StatPrefix is the connection manager's stat prefix as Envoy writes
	// it into filter stats: "http.<stat_prefix>.".
	StatPrefix string
	Stats      *stats.Store
	// Upstreams reaches the proxy's clusters: the same filter.Upstreams
	// the Wasm host's callouts use (HTTPCall, OpenStream). It may be
	// bound after the factory is made (the proxy exists after its
	// filters), so a filter calls it per request, not in New. Nil where
	// no proxy runs the filter.
	Upstreams filter.Upstreams
	// Log is where a filter writes what its users log (the Lua filter's
	// logInfo and script errors); nil: slog.Default().
	Log *slog.Logger
	// Server is the proxy's own state (health_check answers by it). Like
	// Upstreams it may be bound after the factory is made; nil where no
	// proxy runs the filter.
	Server ServerState
}

// ServerState is the proxy's state as native filters see it.
type ServerState interface {
	// HealthCheckFailed reports that the server fails health checks, as
	// Envoy's does while it drains.
	HealthCheckFailed() bool
}

var (
	mu       sync.RWMutex
	byConfig = map[protoreflect.FullName]*Native{}
	byRoute  = map[protoreflect.FullName]*Native{}
	byName   = map[string]*Native{}
)

// Register adds a filter; it panics on a duplicate name or message, a
// programming error.
func Register(n *Native) {
	mu.Lock()
	defer mu.Unlock()
	if n.Name == "" || n.Config == "" || n.Parse == nil || n.New == nil || (n.PerRoute != "") != (n.ParsePerRoute != nil) {
		panic(fmt.Sprintf("filters: incomplete registration of %q", n.Name))
	}
	if byName[n.Name] != nil || byConfig[n.Config] != nil || (n.PerRoute != "" && byRoute[n.PerRoute] != nil) {
		panic(fmt.Sprintf("filters: %q registered twice", n.Name))
	}
	byName[n.Name] = n
	byConfig[n.Config] = n
	if n.PerRoute != "" {
		byRoute[n.PerRoute] = n
	}
}

// Lookup returns the filter whose typed_config is the message name, or nil.
func Lookup(name protoreflect.FullName) *Native {
	mu.RLock()
	defer mu.RUnlock()
	return byConfig[name]
}

// LookupPerRoute returns the filter taking the message name in
// typed_per_filter_config, or nil.
func LookupPerRoute(name protoreflect.FullName) *Native {
	mu.RLock()
	defer mu.RUnlock()
	return byRoute[name]
}

// LookupName returns the filter of that canonical name, or nil.
func LookupName(name string) *Native {
	mu.RLock()
	defer mu.RUnlock()
	return byName[name]
}

// Names lists the registered filters, sorted.
func Names() []string {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]string, 0, len(byName))
	for n := range byName {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// PerRoute finds the per-route configs of the filter named name for the
// stream behind cb, most specific first (route, then virtual host), as
// the filter's ParsePerRoute returned them; nil entries are skipped.
// It allocates nothing.
func PerRoute(cb filter.Callbacks, name string) (route, vhost any) {
	if l := cb.Info().PerFilterConfig; l != nil {
		return l.PerFilterConfig(name)
	}
	return nil, nil
}

// NativeNetwork describes one native network filter: a Go
// filter.NetworkFactory that runs ahead of a chain's terminal filter (the
// TCP proxy or the HTTP connection manager), as the Wasm network filters
// do, configured with Envoy's own proto.
type NativeNetwork struct {
	// Name is the filter's canonical name (envoy.filters.network.rbac).
	Name string
	// Config is the full name of the typed_config message.
	Config protoreflect.FullName
	// Parse checks and reads a typed_config message (nil: the entry had
	// no typed_config). path is the message's field path.
	Parse func(msg proto.Message, path string) (any, error)
	// New makes the factory for one configured filter from what Parse
	// returned. env.FilterName is the filters entry's name; StatPrefix is
	// empty (a network filter's stats are named by its own stat_prefix).
	New func(cfg any, env Env) (filter.NetworkFactory, error)
	// Internal: as Native.Internal.
	Internal bool
}

var (
	netByConfig = map[protoreflect.FullName]*NativeNetwork{}
	netByName   = map[string]*NativeNetwork{}
)

// RegisterNetwork adds a network filter; it panics on a duplicate name
// or message, a programming error.
func RegisterNetwork(n *NativeNetwork) {
	mu.Lock()
	defer mu.Unlock()
	if n.Name == "" || n.Config == "" || n.Parse == nil || n.New == nil {
		panic(fmt.Sprintf("filters: incomplete registration of %q", n.Name))
	}
	if netByName[n.Name] != nil || netByConfig[n.Config] != nil {
		panic(fmt.Sprintf("filters: %q registered twice", n.Name))
	}
	netByName[n.Name] = n
	netByConfig[n.Config] = n
}

// LookupNetwork returns the network filter whose typed_config is the
// message name, or nil.
func LookupNetwork(name protoreflect.FullName) *NativeNetwork {
	mu.RLock()
	defer mu.RUnlock()
	return netByConfig[name]
}

// LookupNetworkName returns the network filter of that canonical name,
// or nil.
func LookupNetworkName(name string) *NativeNetwork {
	mu.RLock()
	defer mu.RUnlock()
	return netByName[name]
}
