package wasmproxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	extensionservice "github.com/envoyproxy/go-control-plane/envoy/service/extension/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	secretservice "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/wasmproxy/wasmproxy/internal/testnet"
	"github.com/wasmproxy/wasmproxy/logging"
)

// controlPlane is go-control-plane's own ADS server and snapshot cache,
// as a company's control plane would run them, on loopback.
// nack is a NACK as the control plane received it, in either protocol.
type nack struct {
	typeURL, version, message string
}

type controlPlane struct {
	addr  string
	cache cachev3.SnapshotCache
	// nacks receives every request that carries an error_detail.
	nacks chan nack
	// opened has the type of every stream opened ("" for ADS); ids
	// the type of each stream open; closed counts the streams closed by
	// type.
	mu     sync.Mutex
	opened map[string]bool
	ids    map[int64]string
	closed map[string]int
}

func (cp *controlPlane) streamOpened(id int64, typeURL string) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.opened[typeURL] = true
	cp.ids[id] = typeURL
}

func (cp *controlPlane) streamClosed(id int64) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.closed[cp.ids[id]]++
}

// closedStreams is how many streams of typeURL were closed.
func (cp *controlPlane) closedStreams(typeURL string) int {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.closed[typeURL]
}

// streams are the types of the streams opened so far ("ADS" for one).
func (cp *controlPlane) streams() []string {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	var out []string
	for t := range cp.opened {
		if t == "" {
			t = "ADS"
		}
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// startControlPlane serves ADS on addr ("127.0.0.1:0" for any port),
// with the gRPC server's options (TLS credentials); stop ends it, as a
// control plane's restart would.
func startControlPlane(t *testing.T, addr string, opts ...grpc.ServerOption) (cp *controlPlane, stop func()) {
	t.Helper()
	cp = &controlPlane{cache: cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil), nacks: make(chan nack, 16), opened: map[string]bool{}, ids: map[int64]string{}, closed: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	srv := serverv3.NewServer(ctx, cp.cache, serverv3.CallbackFuncs{
		StreamOpenFunc: func(_ context.Context, id int64, typeURL string) error {
			cp.streamOpened(id, typeURL)
			return nil
		},
		DeltaStreamOpenFunc: func(_ context.Context, id int64, typeURL string) error {
			cp.streamOpened(id, typeURL)
			return nil
		},
		StreamClosedFunc:      func(id int64, _ *corev3.Node) { cp.streamClosed(id) },
		DeltaStreamClosedFunc: func(id int64, _ *corev3.Node) { cp.streamClosed(id) },
		StreamRequestFunc: func(_ int64, req *discoveryv3.DiscoveryRequest) error {
			if req.GetErrorDetail() != nil {
				cp.nacks <- nack{req.GetTypeUrl(), req.GetVersionInfo(), req.GetErrorDetail().GetMessage()}
			}
			return nil
		},
		StreamDeltaRequestFunc: func(_ int64, req *discoveryv3.DeltaDiscoveryRequest) error {
			if req.GetErrorDetail() != nil {
				cp.nacks <- nack{req.GetTypeUrl(), "", req.GetErrorDetail().GetMessage()}
			}
			return nil
		},
	})
	gs := grpc.NewServer(opts...)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, srv)
	// Each type's own service too, for api_config_source streams.
	clusterservice.RegisterClusterDiscoveryServiceServer(gs, srv)
	endpointservice.RegisterEndpointDiscoveryServiceServer(gs, srv)
	listenerservice.RegisterListenerDiscoveryServiceServer(gs, srv)
	routeservice.RegisterRouteDiscoveryServiceServer(gs, srv)
	secretservice.RegisterSecretDiscoveryServiceServer(gs, srv)
	extensionservice.RegisterExtensionConfigDiscoveryServiceServer(gs, srv)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(ln)
	stop = func() { gs.Stop(); cancel() }
	t.Cleanup(stop)
	cp.addr = ln.Addr().String()
	return cp, stop
}

// startXDSProxy writes cfg as the bootstrap file and starts a proxy
// from it, shut down when the test ends: the set-up every xDS test
// shares. with change the Options.
func startXDSProxy(t *testing.T, cfg string, with ...func(*Options)) *Proxy {
	t.Helper()
	cfgPath := filepath.Join(t.TempDir(), "envoy.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := Options{ConfigPath: cfgPath, Logs: logging.NewRegistry(io.Discard, logging.LevelInfo), CacheDir: filepath.Join(os.TempDir(), "wasmproxy-test-cache")}
	for _, w := range with {
		w(&opts)
	}
	p, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Shutdown(context.Background()) })
	return p
}

// upstreamPort serves body on loopback for the test; it returns the port.
func upstreamPort(t *testing.T, body string) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, body) }))
	t.Cleanup(s.Close)
	_, port, _ := net.SplitHostPort(s.Listener.Addr().String())
	return port
}

// push sets the snapshot the proxy's node gets: clusters and listeners
// given as protojson text.
func (cp *controlPlane) push(t *testing.T, version string, clusters, listeners []string) {
	t.Helper()
	cp.pushAll(t, version, clusters, listeners, nil, nil)
}

// pushAll is push with RDS route configurations and EDS load
// assignments too.
func (cp *controlPlane) pushAll(t *testing.T, version string, clusters, listeners, routes, endpoints []string, extensions ...string) {
	t.Helper()
	cp.pushResources(t, version, map[resource.Type][]string{
		resource.ClusterType: clusters, resource.ListenerType: listeners, resource.RouteType: routes,
		resource.EndpointType: endpoints, resource.ExtensionConfigType: extensions,
	})
}

// pushResources sets the snapshot the proxy's node gets: the resources
// of each type given as protojson text. Every push of the xDS tests
// comes here.
func (cp *controlPlane) pushResources(t *testing.T, version string, byType map[resource.Type][]string) {
	t.Helper()
	newMessage := map[resource.Type]func() types.Resource{
		resource.ClusterType:         func() types.Resource { return &clusterv3.Cluster{} },
		resource.ListenerType:        func() types.Resource { return &listenerv3.Listener{} },
		resource.RouteType:           func() types.Resource { return &routev3.RouteConfiguration{} },
		resource.EndpointType:        func() types.Resource { return &endpointv3.ClusterLoadAssignment{} },
		resource.ExtensionConfigType: func() types.Resource { return &corev3.TypedExtensionConfig{} },
		resource.SecretType:          func() types.Resource { return &tlsv3.Secret{} },
	}
	res := map[resource.Type][]types.Resource{}
	for typeURL, list := range byType {
		for _, js := range list {
			m := newMessage[typeURL]()
			if err := protojson.Unmarshal([]byte(js), m); err != nil {
				t.Fatalf("%s %s: %v", typeURL, js, err)
			}
			res[typeURL] = append(res[typeURL], m)
		}
	}
	snap, err := cachev3.NewSnapshot(version, res)
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.cache.SetSnapshot(context.Background(), "proxy-1", snap); err != nil {
		t.Fatal(err)
	}
}

// apiTypes are the two protocols every xDS test runs with.
var apiTypes = []string{"GRPC", "DELTA_GRPC"}

func xdsBootstrap(cpAddr, apiType string) string {
	host, port, _ := net.SplitHostPort(cpAddr)
	return fmt.Sprintf(`node: {id: proxy-1, cluster: fleet}
dynamic_resources:
  ads_config:
    api_type: %s
    transport_api_version: V3
    grpc_services: [{envoy_grpc: {cluster_name: xds_cluster}}]
  lds_config: {ads: {}, resource_api_version: V3}
  cds_config: {ads: {}, resource_api_version: V3}
static_resources:
  clusters:
  - name: xds_cluster
    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment:
      cluster_name: xds_cluster
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: %s, port_value: %s}}}}]}]
`, apiType, host, port)
}

func backendCluster(upPort, extra string) string {
	return fmt.Sprintf(`{"name": "backend", "type": "STATIC", %s "load_assignment": {"cluster_name": "backend", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": %s}}}}]}]}}`, extra, upPort)
}

func ingressListener(port int, route string) string {
	return fmt.Sprintf(`{"name": "ingress", "address": {"socket_address": {"address": "127.0.0.1", "port_value": %d}},
 "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
  "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
  "stat_prefix": "ingress",
  "route_config": {"name": "local", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, %s}]}]},
  "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}`, port, route)
}

// TestXDS runs the proxy from a bootstrap with only dynamic_resources
// under go-control-plane's ADS server: the listener and cluster it pushes
// serve traffic, a new version replaces the route without a restart, and
// a version the proxy cannot run is NACKed with an error naming the
// resource and field while the last good version keeps serving, and a
// restarted control plane is found again.
func TestXDS(t *testing.T) {
	for _, apiType := range apiTypes {
		t.Run(apiType, func(t *testing.T) {
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "from the upstream") }))
			defer up.Close()
			_, upPort, _ := net.SplitHostPort(up.Listener.Addr().String())
			cp, stopCP := startControlPlane(t, "127.0.0.1:0")

			p := startXDSProxy(t, xdsBootstrap(cp.addr, apiType))

			// Nothing delivered yet: INITIALIZING, /ready 503, as Envoy's init
			// manager waits for the first CDS and LDS responses.
			if code, body := ready(p); code != 503 || body != "INITIALIZING\n" {
				t.Errorf("/ready before any xDS response: %d %q, want 503 INITIALIZING", code, body)
			}
			port := testnet.FreePort(t)
			url := fmt.Sprintf("http://127.0.0.1:%d/", port)
			cp.push(t, "1", []string{backendCluster(upPort, "")}, []string{ingressListener(port, `"route": {"cluster": "backend"}`)})
			waitBody(t, url, "from the upstream")
			waitReady(t, p)

			cp.push(t, "2", []string{backendCluster(upPort, "")}, []string{ingressListener(port, `"direct_response": {"status": 200, "body": {"inline_string": "version 2"}}`)})
			waitBody(t, url, "version 2")

			cp.push(t, "3", []string{backendCluster(upPort, `"preconnect_policy": {"per_upstream_preconnect_ratio": 1.5},`)}, []string{ingressListener(port, `"direct_response": {"status": 200, "body": {"inline_string": "version 3"}}`)})
			select {
			case nack := <-cp.nacks:
				msg := nack.message
				for _, want := range []string{`xDS cluster "backend"`, "preconnect_policy", "not supported yet"} {
					if !strings.Contains(msg, want) {
						t.Errorf("NACK error_detail %q does not contain %q", msg, want)
					}
				}
				if nack.typeURL != resource.ClusterType || (apiType == "GRPC" && nack.version != "2") {
					t.Errorf("NACK for %s at version %q; want the cluster type, keeping version 2", nack.typeURL, nack.version)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("no NACK for a cluster with an unsupported field")
			}
			// The listener of version 3 is fine on its own and is applied (LDS is
			// its own type); what the rejected cluster version changed is not.
			waitBody(t, url, "version 3")
			if got := p.stats.Gauge("control_plane.connected_state").Value(); got != 1 {
				t.Errorf("control_plane.connected_state = %d, want 1", got)
			}
			// Counted once the reload's outcome is known, just after the
			// swap the traffic above saw.
			waitCounter(t, p, "cluster_manager.cds.update_rejected", 1)
			waitCounter(t, p, "listener_manager.lds.update_success", 3)
			// /config_dump keeps the accepted cluster and shows the rejected
			// version beside it (Envoy's error_state).
			dump, _ := configDump(t, p)
			dc := dig(dump["ClustersConfigDump"], "dynamic_active_clusters", 0)
			if dig(dc, "cluster", "preconnect_policy") != nil || dig(dc, "error_state", "failed_configuration", "preconnect_policy") == nil ||
				!strings.Contains(fmt.Sprint(dig(dc, "error_state", "details")), "preconnect_policy") ||
				(apiType == "GRPC" && (dig(dc, "version_info") != "1" || dig(dc, "error_state", "version_info") != "3")) {
				t.Errorf("the cluster after a rejected update shows as %v; want version 1 (unchanged since) active and version 3 in error_state", dc)
			}

			// The control plane restarts (same address, a fresh cache): the
			// proxy keeps serving meanwhile, reconnects and takes the new state.
			stopCP()
			waitBody(t, url, "version 3")
			// The broken stream is a connection failure of both subscriptions.
			waitCounter(t, p, "cluster_manager.cds.update_failure", 1)
			waitCounter(t, p, "listener_manager.lds.update_failure", 1)
			cp, _ = startControlPlane(t, cp.addr)
			cp.push(t, "4", []string{backendCluster(upPort, "")}, []string{ingressListener(port, `"route": {"cluster": "backend"}`)})
			waitBody(t, url, "from the upstream")
			if apiType == "GRPC" {
				// The state of the world sends the cluster again, accepted:
				// the error_state goes. (The incremental protocol does not
				// resend a cluster the proxy already has.)
				waitCounter(t, p, "cluster_manager.cds.update_success", 3)
				dump, _ = configDump(t, p)
				if es := dig(dump["ClustersConfigDump"], "dynamic_active_clusters", 0, "error_state"); es != nil {
					t.Errorf("error_state %v stays after an accepted update", es)
				}
			}
		})
	}
}

// waitBody polls url until it answers 200 with body want: an xDS update
// is applied asynchronously, and the test waits for its effect, bounded.
func waitBody(t *testing.T, url, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && string(b) == want {
				return
			}
			last = fmt.Sprintf("%d %q", resp.StatusCode, b)
		} else {
			last = err.Error()
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never answered %q; last: %s", url, want, last)
}

// TestXDSRoutesAndEndpoints: a listener whose routes come over RDS and a
// cluster whose endpoints come over EDS, each updated on its own.
func TestXDSRoutesAndEndpoints(t *testing.T) {
	for _, apiType := range apiTypes {
		t.Run(apiType, func(t *testing.T) {
			first, second := upstreamPort(t, "first upstream"), upstreamPort(t, "second upstream")
			cp, _ := startControlPlane(t, "127.0.0.1:0")
			p := startXDSProxy(t, xdsBootstrap(cp.addr, apiType))

			port := testnet.FreePort(t)
			url := fmt.Sprintf("http://127.0.0.1:%d/", port)
			edsCluster := `{"name": "backend", "type": "EDS", "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3"}, "service_name": "backend-svc"}}`
			listener := fmt.Sprintf(`{"name": "ingress", "address": {"socket_address": {"address": "127.0.0.1", "port_value": %d}},
		 "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
		  "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
		  "stat_prefix": "ingress",
		  "rds": {"route_config_name": "ingress-routes", "config_source": {"ads": {}, "resource_api_version": "V3"}},
		  "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}`, port)
			routes := func(action string) string {
				return fmt.Sprintf(`{"name": "ingress-routes", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, %s}]}]}`, action)
			}
			endpoints := func(port string) string {
				return fmt.Sprintf(`{"cluster_name": "backend-svc", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": %s}}}}]}]}`, port)
			}
			toBackend := `"route": {"cluster": "backend"}`

			cp.pushAll(t, "1", []string{edsCluster}, []string{listener}, []string{routes(toBackend)}, []string{endpoints(first)})
			waitBody(t, url, "first upstream")
			// EDS alone: the cluster's endpoints move.
			cp.pushAll(t, "2", []string{edsCluster}, []string{listener}, []string{routes(toBackend)}, []string{endpoints(second)})
			waitBody(t, url, "second upstream")
			// RDS alone: the listener's routes change, its socket stays.
			cp.pushAll(t, "3", []string{edsCluster}, []string{listener}, []string{routes(`"direct_response": {"status": 200, "body": {"inline_string": "from RDS"}}`)}, []string{endpoints(second)})
			waitBody(t, url, "from RDS")

			// The RDS and EDS subscriptions are counted as Envoy names them:
			// per connection manager and route configuration, per cluster.
			// Versions 1 and 3 changed the routes, 1 and 2 the endpoints.
			waitCounter(t, p, "http.ingress.rds.ingress-routes.config_reload", 2)
			waitCounter(t, p, "http.ingress.rds.ingress-routes.update_success", 2)
			waitCounter(t, p, "cluster.backend.update_success", 2)
			if apiType == "GRPC" {
				waitCounter(t, p, "cluster_manager.cds.update_success", 3)
				if got, want := p.stats.Gauge("cluster_manager.cds.version").Value(), versionHash("3"); got != want {
					t.Errorf("cluster_manager.cds.version = %d, want the hash of version 3 (%d)", got, want)
				}
			}
			if got := p.stats.Gauge("listener_manager.lds.update_time").Value(); got <= 0 {
				t.Errorf("listener_manager.lds.update_time = %d, want the time of the last update", got)
			}
			stats := adminGet(t, p, "/stats")
			for _, want := range []string{"control_plane.connected_state: 1", "http.ingress.rds.ingress-routes.config_reload: 2", "cluster_manager.cds.update_attempt: ", "listener_manager.lds.version: "} {
				if !strings.Contains(stats, want) {
					t.Errorf("/stats lacks %q", want)
				}
			}
			prom := adminGet(t, p, "/stats/prometheus")
			for _, want := range []string{
				`envoy_http_rds_config_reload{envoy_http_conn_manager_prefix="ingress",envoy_rds_route_config="ingress-routes"} 2`,
				`envoy_cluster_update_success{envoy_cluster_name="backend"} `,
				"envoy_control_plane_connected_state{} 1",
				"envoy_cluster_manager_cds_update_success{} ",
			} {
				if !strings.Contains(prom, want) {
					t.Errorf("/stats/prometheus lacks %q", want)
				}
			}
		})
	}
}

// adminGet reads an admin endpoint; it must answer 200.
func adminGet(t *testing.T, p *Proxy, path string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	p.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	if rec.Code != 200 {
		t.Fatalf("%s: %d %s", path, rec.Code, rec.Body)
	}
	return rec.Body.String()
}

func ready(p *Proxy) (int, string) {
	rec := httptest.NewRecorder()
	p.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/ready", nil))
	return rec.Code, rec.Body.String()
}

// waitReady waits, bounded, until /ready answers 200.
func waitReady(t *testing.T, p *Proxy) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if code, _ := ready(p); code == 200 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	code, body := ready(p)
	t.Fatalf("/ready never 200; last %d %q", code, body)
}

// TestXDSInitialFetchTimeout: a control plane that never answers holds
// the proxy INITIALIZING only for initial_fetch_timeout.
func TestXDSInitialFetchTimeout(t *testing.T) {
	for _, apiType := range apiTypes {
		t.Run(apiType, func(t *testing.T) {
			cp, _ := startControlPlane(t, "127.0.0.1:0") // no snapshot for the node: no response
			cfg := strings.Replace(xdsBootstrap(cp.addr, apiType), "cds_config: {ads: {}, resource_api_version: V3}", "cds_config: {ads: {}, resource_api_version: V3, initial_fetch_timeout: 3s}", 1)
			cfg = strings.Replace(cfg, "lds_config: {ads: {}, resource_api_version: V3}", "lds_config: {ads: {}, resource_api_version: V3, initial_fetch_timeout: 1s}", 1)
			cfgPath := filepath.Join(t.TempDir(), "envoy.yaml")
			if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			p, err := New(context.Background(), Options{ConfigPath: cfgPath, Logs: logging.NewRegistry(io.Discard, logging.LevelInfo), CacheDir: filepath.Join(os.TempDir(), "wasmproxy-test-cache")})
			if err != nil {
				t.Fatal(err)
			}
			if got := p.applied.Load().ADS.InitialFetchTimeout.D(); got != 3*time.Second {
				t.Errorf("initial fetch timeout %v, want the larger of the two, 3s", got)
			}
			if err := p.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Shutdown(context.Background()) })
			if code, body := ready(p); code != 503 || body != "INITIALIZING\n" {
				t.Errorf("/ready at start: %d %q, want 503 INITIALIZING", code, body)
			}
			waitReady(t, p)
			waitCounter(t, p, "cluster_manager.cds.init_fetch_timeout", 1)
			waitCounter(t, p, "listener_manager.lds.init_fetch_timeout", 1)
		})
	}
}

// TestXDSExtensionConfig: an HTTP filter whose config comes over ECDS,
// as istiod ships a WasmPlugin. Until the config arrives the listener
// warms (is not served); then the plugin runs; a new config replaces it.
func TestXDSExtensionConfig(t *testing.T) {
	for _, apiType := range apiTypes {
		t.Run(apiType, func(t *testing.T) {
			plugin := addHeader(t)
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "from the upstream") }))
			defer up.Close()
			_, upPort, _ := net.SplitHostPort(up.Listener.Addr().String())
			cp, _ := startControlPlane(t, "127.0.0.1:0")
			p := startXDSProxy(t, xdsBootstrap(cp.addr, apiType))

			port := testnet.FreePort(t)
			url := fmt.Sprintf("http://127.0.0.1:%d/", port)
			listener := fmt.Sprintf(`{"name": "ingress", "address": {"socket_address": {"address": "127.0.0.1", "port_value": %d}},
		 "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
		  "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
		  "stat_prefix": "ingress",
		  "route_config": {"name": "local", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]}]},
		  "http_filters": [
		   {"name": "istio-system.add-header", "config_discovery": {"config_source": {"ads": {}, "resource_api_version": "V3"}, "type_urls": ["type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"]}},
		   {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}`, port)
			extension := func(vmID string) string {
				return fmt.Sprintf(`{"name": "istio-system.add-header", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
		  "config": {"name": "add-header", "vm_config": {"vm_id": %q, "runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": %q}}}}}}`, vmID, plugin)
			}

			// The listener without its filter's config: applied, but warming:
			// not served, and the proxy not ready (it waits for ECDS).
			cp.pushAll(t, "1", []string{backendCluster(upPort, "")}, []string{listener}, nil, nil)
			deadline := time.Now().Add(30 * time.Second)
			for p.stats.Counter("listener_manager.lds.update_success").Value() == 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if resp, err := http.Get(url); err == nil {
				resp.Body.Close()
				t.Fatalf("the listener serves (%d) before its ECDS filter config arrived", resp.StatusCode)
			}
			if code, body := ready(p); code != 503 {
				t.Errorf("/ready while the listener's filter config is missing: %d %q, want 503", code, body)
			}
			// /config_dump shows it warming, as Envoy's does.
			dump, _ := configDump(t, p)
			if dl := dig(dump["ListenersConfigDump"], "dynamic_listeners", 0); dig(dl, "warming_state", "version_info") != "1" || dig(dl, "active_state") != nil {
				t.Errorf("the listener waiting for its ECDS config shows as %v, want warming_state at version 1", dl)
			}
			// The config arrives: the plugin runs on the listener.
			cp.pushAll(t, "2", []string{backendCluster(upPort, "")}, []string{listener}, nil, nil, extension("v1"))
			waitBody(t, url, "from the upstream")
			waitReady(t, p)
			resp, err := http.Get(url)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get("resp-header-demo"); got != "added by our filter" {
				t.Errorf("resp-header-demo = %q, want the ECDS-delivered plugin's header", got)
			}
			// The update's versions are recorded once its reload has
			// returned, which may be after the listener serves (the
			// reload's sweep for poisoned instances waits for the plugin's pool).
			ecdsDumped := func() (map[string]map[string]any, any) {
				dump, _ := configDump(t, p)
				return dump, dig(dump["EcdsConfigDump"], "ecds_filters", 0)
			}
			dump, ef := ecdsDumped()
			for deadline := time.Now().Add(30 * time.Second); dig(ef, "version_info") != "2" && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
				dump, ef = ecdsDumped()
			}
			if dl := dig(dump["ListenersConfigDump"], "dynamic_listeners", 0); dig(dl, "active_state", "version_info") != "1" || dig(dl, "warming_state") != nil {
				t.Errorf("the listener with its ECDS config shows as %v, want active_state", dl)
			}
			if dig(ef, "version_info") != "2" || dig(ef, "ecds_filter", "name") != "istio-system.add-header" {
				t.Errorf("EcdsConfigDump entry %v, want istio-system.add-header at version 2", ef)
			}
			// A new config of the same filter (another vm_id) is swapped in.
			generation := p.ReloadStatus().Generation
			cp.pushAll(t, "3", []string{backendCluster(upPort, "")}, []string{listener}, nil, nil, extension("v2"))
			ecds := p.stats.Counter("extension_config_discovery.http_filter.istio-system.add-header.config_reload")
			deadline = time.Now().Add(30 * time.Second)
			for ecds.Value() < 2 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if got := ecds.Value(); got < 2 {
				t.Fatalf("extension_config_discovery.http_filter.istio-system.add-header.config_reload = %d: the new ECDS config was never applied", got)
			}
			if st := p.ReloadStatus(); st.Generation == generation {
				t.Errorf("the new ECDS config changed nothing: %+v", st)
			}
			waitBody(t, url, "from the upstream")
		})
	}
}

// waitCounter waits, bounded, until the named counter reaches at least
// want.
func waitCounter(t *testing.T, p *Proxy, name string, want uint64) {
	t.Helper()
	c := p.stats.Counter(name)
	deadline := time.Now().Add(30 * time.Second)
	for c.Value() < want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := c.Value(); got < want {
		t.Fatalf("%s = %d, want at least %d", name, got, want)
	}
}
