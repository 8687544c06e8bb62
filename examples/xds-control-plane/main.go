// Command xds-control-plane is a small Envoy control plane for a fleet of
// wasmproxy (or Envoy) instances, built on go-control-plane's ADS server
// and snapshot cache. It serves every node that connects the same
// state: a cluster to the upstream and a listener that runs the
// json-validation plugin in front of it; POST /config rolls a new plugin
// configuration and POST /plugin a new plugin module, each as a new
// snapshot version that every connected proxy applies without a restart.
//
//	go run . -plugin ../json-validation/main.wasm
//	wasmproxy -c bootstrap.yaml --service-node proxy-1
//	curl -X POST localhost:18002/config -d '{"requiredKeys": ["id"]}'
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Fleet is the state the control plane serves: what every node gets.
type Fleet struct {
	// ListenAddr is the proxies' listener ("127.0.0.1:18000").
	ListenAddr string
	// Upstream is the application's "host:port" (an IP address).
	Upstream string
	// Plugin is the path of the json-validation module, as the proxies
	// see it (a file on each proxy's machine).
	Plugin string
	// Config is the plugin's configuration (JSON text).
	Config string
	// PortPerNode gives the k-th node to join ListenAddr's port + k, so
	// that a fleet can share one machine.
	PortPerNode bool
}

// ControlPlane serves Fleet snapshots over ADS.
type ControlPlane struct {
	cache cachev3.SnapshotCache
	grpc  *grpc.Server

	mu      sync.Mutex
	fleet   Fleet
	version int
	nodes   map[string]int // node id → join order
}

// NewControlPlane returns a control plane serving f.
func NewControlPlane(ctx context.Context, f Fleet) *ControlPlane {
	cp := &ControlPlane{fleet: f, nodes: map[string]int{}}
	cp.cache = cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
	srv := serverv3.NewServer(ctx, cp.cache, serverv3.CallbackFuncs{
		// A node gets the current snapshot when it first connects.
		StreamRequestFunc: func(_ int64, req *discoveryv3.DiscoveryRequest) error {
			if id := req.GetNode().GetId(); id != "" {
				return cp.join(id)
			}
			return nil
		},
	})
	cp.grpc = grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(cp.grpc, srv)
	return cp
}

// Serve serves ADS on ln until Stop.
func (cp *ControlPlane) Serve(ln net.Listener) error { return cp.grpc.Serve(ln) }

// Stop ends every stream.
func (cp *ControlPlane) Stop() { cp.grpc.Stop() }

func (cp *ControlPlane) join(node string) error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if _, ok := cp.nodes[node]; ok {
		return nil
	}
	cp.nodes[node] = len(cp.nodes)
	log.Printf("node %s joined; serving version %d", node, cp.version)
	return cp.set(node)
}

// Update changes the fleet's state (edit gets a copy) and pushes it to
// every node as a new version, which it returns.
func (cp *ControlPlane) Update(edit func(*Fleet)) (int, error) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	next := cp.fleet
	edit(&next)
	if _, err := snapshot(next, "check", 0); err != nil {
		return cp.version, err
	}
	cp.fleet = next
	cp.version++
	for node := range cp.nodes {
		if err := cp.set(node); err != nil {
			return cp.version, err
		}
	}
	return cp.version, nil
}

// set pushes the current state to node; cp.mu is held.
func (cp *ControlPlane) set(node string) error {
	snap, err := snapshot(cp.fleet, strconv.Itoa(cp.version), cp.nodes[node])
	if err != nil {
		return err
	}
	return cp.cache.SetSnapshot(context.Background(), node, snap)
}

// snapshot is f as xDS resources for the k-th node: the "app" cluster
// and the "ingress" listener (HTTP connection manager: json-validation,
// then the router).
func snapshot(f Fleet, version string, k int) (*cachev3.Snapshot, error) {
	upHost, upPort, err := splitHostPort(f.Upstream)
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	lnHost, lnPort, err := splitHostPort(f.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("listen address: %w", err)
	}
	if f.PortPerNode {
		lnPort += uint32(k)
	}
	cluster := &clusterv3.Cluster{
		Name:                 "app",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: "app",
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(upHost, upPort)}},
			}}}},
		},
	}
	pluginConfig, err := anypb.New(wrapperspb.String(f.Config))
	if err != nil {
		return nil, err
	}
	wasm, err := anypb.New(&wasmfilterv3.Wasm{Config: &wasmv3.PluginConfig{
		Name:          "json-validation",
		Configuration: pluginConfig,
		Vm: &wasmv3.PluginConfig_VmConfig{VmConfig: &wasmv3.VmConfig{
			Runtime: "envoy.wasm.runtime.v8",
			Code: &corev3.AsyncDataSource{Specifier: &corev3.AsyncDataSource_Local{Local: &corev3.DataSource{
				Specifier: &corev3.DataSource_Filename{Filename: f.Plugin},
			}}},
		}},
	}})
	if err != nil {
		return nil, err
	}
	router, err := anypb.New(&routerv3.Router{})
	if err != nil {
		return nil, err
	}
	hcm, err := anypb.New(&hcmv3.HttpConnectionManager{
		StatPrefix: "ingress",
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: "ingress",
			VirtualHosts: []*routev3.VirtualHost{{
				Name: "app", Domains: []string{"*"},
				Routes: []*routev3.Route{{
					Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "app"}}},
				}},
			}},
		}},
		HttpFilters: []*hcmv3.HttpFilter{
			{Name: "json-validation", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: wasm}},
			{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router}},
		},
	})
	if err != nil {
		return nil, err
	}
	listener := &listenerv3.Listener{
		Name:    "ingress",
		Address: socketAddress(lnHost, lnPort),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name:       "envoy.filters.network.http_connection_manager",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm},
		}}}},
	}
	return cachev3.NewSnapshot(version, map[resource.Type][]types.Resource{
		resource.ClusterType:  {cluster},
		resource.ListenerType: {listener},
	})
}

func socketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func splitHostPort(addr string) (string, uint32, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", port, err)
	}
	return host, uint32(n), nil
}

// Handler is the control plane's own HTTP API: POST /config with the
// plugin's new configuration as the body; POST /plugin?path=FILE with a
// new module (a path the proxies can read).
func (cp *ControlPlane) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /config", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		cp.answer(w, func(f *Fleet) { f.Config = string(body) })
	})
	mux.HandleFunc("POST /plugin", func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.Query().Get("path")
		if path == "" {
			http.Error(w, "missing ?path= (the plugin module's path on the proxies)", http.StatusBadRequest)
			return
		}
		cp.answer(w, func(f *Fleet) { f.Plugin = path })
	})
	return mux
}

func (cp *ControlPlane) answer(w http.ResponseWriter, edit func(*Fleet)) {
	v, err := cp.Update(edit)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprintf(w, "version %d\n", v)
}

func main() {
	xdsAddr := flag.String("xds", "127.0.0.1:18001", "where the proxies' ADS cluster connects (gRPC, plaintext HTTP/2)")
	httpAddr := flag.String("http", "127.0.0.1:18002", "this control plane's HTTP API (POST /config, POST /plugin)")
	listen := flag.String("listen", "127.0.0.1:18000", "the listener address the proxies get")
	upstream := flag.String("upstream", "127.0.0.1:8099", "the application behind the proxies")
	plugin := flag.String("plugin", "../json-validation/main.wasm", "the json-validation module's path, as the proxies see it")
	config := flag.String("config", `{"requiredKeys": ["id", "token"]}`, "the plugin's initial configuration")
	perNode := flag.Bool("port-per-node", false, "give the k-th proxy to join the -listen port + k (a fleet on one machine)")
	fleet := flag.Int("bench-fleet", 0, "instead of serving: run N wasmproxy processes (-wasmproxy) under this control plane and measure a rollout (bench/fleet.sh)")
	binary := flag.String("wasmproxy", "wasmproxy", "the wasmproxy binary -bench-fleet starts")
	flag.Parse()
	if *fleet > 0 {
		if err := benchFleet(*fleet, *binary, *plugin); err != nil {
			log.Fatal(err)
		}
		return
	}
	abs, err := filepath.Abs(*plugin)
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cp := NewControlPlane(ctx, Fleet{ListenAddr: *listen, Upstream: *upstream, Plugin: abs, Config: *config, PortPerNode: *perNode})
	if _, err := snapshot(cp.fleet, "0", 0); err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", *xdsAddr)
	if err != nil {
		log.Fatalf("-xds %s: %v", *xdsAddr, err)
	}
	go func() {
		if err := cp.Serve(ln); err != nil {
			log.Print(err)
		}
	}()
	hs := &http.Server{Addr: *httpAddr, Handler: cp.Handler()}
	go func() {
		if err := hs.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Fatalf("-http %s: %v", *httpAddr, err)
		}
	}()
	log.Printf("ADS on %s, API on %s", *xdsAddr, *httpAddr)
	<-ctx.Done()
	_ = hs.Shutdown(context.Background())
	cp.Stop()
}
