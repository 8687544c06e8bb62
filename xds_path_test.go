package wasmproxy

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/internal/testnet"
	"github.com/wasmproxy/wasmproxy/logging"
)

// writeDiscoveryResponse replaces path, atomically (a rename, as Envoy
// asks of its file sources), with a DiscoveryResponse of version
// holding resources: protojson objects without their "@type", which
// typeURL gives.
func writeDiscoveryResponse(t *testing.T, path, typeURL, version string, resources ...string) {
	t.Helper()
	var typed []string
	for _, r := range resources {
		typed = append(typed, fmt.Sprintf(`{"@type": %q, %s`, typeURL, strings.TrimPrefix(strings.TrimSpace(r), "{")))
	}
	body := fmt.Sprintf(`{"version_info": %q, "resources": [%s]}`, version, strings.Join(typed, ", "))
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

const (
	clusterTypeURL  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	listenerTypeURL = "type.googleapis.com/envoy.config.listener.v3.Listener"
)

// TestXDSPathConfigSource: listeners and clusters from files (Envoy's
// path_config_source and the deprecated path), applied when the proxy
// starts and again whenever a file changes; a file that cannot be read
// is update_failure and one the proxy refuses is update_rejected, and
// neither changes what is served.
func TestXDSPathConfigSource(t *testing.T) {
	up := upstreamPort(t, "from the upstream")
	dir := t.TempDir()
	cds, lds := filepath.Join(dir, "cds.json"), filepath.Join(dir, "lds.yaml")
	port := testnet.FreePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	writeDiscoveryResponse(t, cds, clusterTypeURL, "c1", backendCluster(up, ""))
	writeDiscoveryResponse(t, lds, listenerTypeURL, "l1", ingressListener(port, `"route": {"cluster": "backend"}`))
	p := startXDSProxy(t, fmt.Sprintf(`node: {id: proxy-1, cluster: fleet}
dynamic_resources:
  cds_config: {path_config_source: {path: %s}, resource_api_version: V3}
  lds_config: {path: %s}
`, cds, lds))
	waitBody(t, url, "from the upstream")
	waitReady(t, p)

	// A changed listener file is applied; the socket stays.
	writeDiscoveryResponse(t, lds, listenerTypeURL, "l2", ingressListener(port, `"direct_response": {"status": 200, "body": {"inline_string": "version 2"}}`))
	waitBody(t, url, "version 2")
	waitCounter(t, p, "listener_manager.lds.update_success", 2)

	// A file that is not a DiscoveryResponse: update_failure, and
	// nothing changes.
	if err := os.WriteFile(lds, []byte(`{"version_info": "l3", "resourcez": []}`), 0o644); err != nil {
		t.Fatal(err)
	}
	waitCounter(t, p, "listener_manager.lds.update_failure", 1)
	// A cluster the proxy cannot run: update_rejected (a NACK), the
	// error_state in /config_dump names the field, and the last
	// accepted cluster keeps serving.
	writeDiscoveryResponse(t, lds, listenerTypeURL, "l4", ingressListener(port, `"route": {"cluster": "backend"}`))
	waitBody(t, url, "from the upstream")
	writeDiscoveryResponse(t, cds, clusterTypeURL, "c2", backendCluster(up, `"preconnect_policy": {"per_upstream_preconnect_ratio": 1.5},`))
	waitCounter(t, p, "cluster_manager.cds.update_rejected", 1)
	waitBody(t, url, "from the upstream")
	dump, _ := configDump(t, p)
	dc := dig(dump["ClustersConfigDump"], "dynamic_active_clusters", 0)
	if dig(dc, "version_info") != "c1" || !strings.Contains(fmt.Sprint(dig(dc, "error_state", "details")), "preconnect_policy") {
		t.Errorf("the cluster after a rejected file shows as %v; want version c1 active and the rejected one in error_state", dc)
	}
	if got := dig(dump["ListenersConfigDump"], "version_info"); got != "l4" {
		t.Errorf("listeners version_info %v, want l4", got)
	}
}

// TestXDSPathListenersAfterADSClusters: clusters over ADS (a real
// go-control-plane) and listeners from a file. As Envoy's listener
// manager waits for the cluster manager, the file is read only once the
// clusters arrived — read before, its listener would name an unknown
// cluster and be refused for good.
func TestXDSPathListenersAfterADSClusters(t *testing.T) {
	for _, apiType := range apiTypes {
		t.Run(apiType, func(t *testing.T) {
			up := upstreamPort(t, "from the upstream")
			cp, _ := startControlPlane(t, "127.0.0.1:0")
			lds := filepath.Join(t.TempDir(), "lds.json")
			port := testnet.FreePort(t)
			url := fmt.Sprintf("http://127.0.0.1:%d/", port)
			writeDiscoveryResponse(t, lds, listenerTypeURL, "l1", ingressListener(port, `"route": {"cluster": "backend"}`))
			cfg := strings.Replace(xdsBootstrap(cp.addr, apiType), "lds_config: {ads: {}, resource_api_version: V3}",
				fmt.Sprintf("lds_config: {path_config_source: {path: %s}}", lds), 1)
			p := startXDSProxy(t, cfg, func(o *Options) { o.PollInterval = 20 * time.Millisecond })
			if code, body := ready(p); code != 503 || body != "INITIALIZING\n" {
				t.Errorf("/ready before the clusters: %d %q, want 503 INITIALIZING", code, body)
			}
			// The poller that reads the listener file also reloads on a
			// changed bootstrap: once a reload happened, the poller has
			// passed over the listener file, which must wait.
			if err := os.WriteFile(p.opts.ConfigPath, []byte(cfg+"# changed\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			reloads := func() uint64 {
				return p.stats.Counter("server.reload.success").Value() + p.stats.Counter("server.reload.failure").Value()
			}
			for deadline := time.Now().Add(30 * time.Second); reloads() == 0 && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			if got := p.stats.Counter("listener_manager.lds.update_attempt").Value(); got != 0 {
				t.Fatalf("listener_manager.lds.update_attempt = %d: the listener file was read before the clusters arrived", got)
			}
			cp.push(t, "1", []string{backendCluster(up, "")}, nil)
			waitBody(t, url, "from the upstream")
			waitReady(t, p)
			if got := p.stats.Counter("listener_manager.lds.update_rejected").Value(); got != 0 {
				t.Errorf("listener_manager.lds.update_rejected = %d", got)
			}
		})
	}
}

// TestXDSConfigSourceRefused: the config sources not implemented are
// refused at load with the field named.
func TestXDSConfigSourceRefused(t *testing.T) {
	for _, tc := range []struct{ source, want string }{
		{`{api_config_source: {api_type: GRPC, grpc_services: [{envoy_grpc: {cluster_name: x}}]}}`, `dynamic_resources.lds_config.api_config_source.grpc_services[0].envoy_grpc.cluster_name: unknown cluster "x"`},
		{`{api_config_source: {api_type: REST, cluster_names: [x]}}`, "dynamic_resources.lds_config.api_config_source"},
		{`{api_config_source: {api_type: GRPC, grpc_services: [{google_grpc: {target_uri: x, stat_prefix: x}}]}}`, "not supported yet: dynamic_resources.lds_config.api_config_source.grpc_services[0]"},
		{`{self: {}}`, "dynamic_resources.lds_config.self"},
		{`{path_config_source: {path: /tmp/x, watched_directory: {path: /tmp}}}`, "dynamic_resources.lds_config.path_config_source.watched_directory"},
		{`{resource_api_version: V3}`, "dynamic_resources.lds_config"},
	} {
		cfgPath := filepath.Join(t.TempDir(), "envoy.yaml")
		if err := os.WriteFile(cfgPath, []byte("dynamic_resources:\n  lds_config: "+tc.source+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := New(context.Background(), Options{ConfigPath: cfgPath, Logs: logging.NewRegistry(io.Discard, logging.LevelInfo)})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("lds_config %s: error %v, want one naming %s", tc.source, err, tc.want)
		}
	}
	// A file source that does not exist is refused at start, as Envoy's
	// bootstrap check refuses it.
	cfgPath := filepath.Join(t.TempDir(), "envoy.yaml")
	if err := os.WriteFile(cfgPath, []byte("dynamic_resources:\n  cds_config: {path_config_source: {path: /nonexistent/cds.yaml}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := New(context.Background(), Options{ConfigPath: cfgPath, Logs: logging.NewRegistry(io.Discard, logging.LevelInfo)})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err == nil || !strings.Contains(err.Error(), "dynamic_resources.cds_config.path_config_source.path") {
		t.Errorf("a missing cds file: Start error %v, want one naming the field", err)
	}
}

// TestXDSPathEndpointsAndRoutes: a delivered cluster's eds_config and a
// delivered listener's rds.config_source may name files too; each is
// read when a resource names it and again when it changes, and the
// cluster and listener warm until it was read.
func TestXDSPathEndpointsAndRoutes(t *testing.T) {
	first, second := upstreamPort(t, "first upstream"), upstreamPort(t, "second upstream")
	dir := t.TempDir()
	cds, lds, eds, rds := filepath.Join(dir, "cds.yaml"), filepath.Join(dir, "lds.yaml"), filepath.Join(dir, "eds.yaml"), filepath.Join(dir, "rds.yaml")
	port := testnet.FreePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	const (
		claType   = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
		routeType = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	)
	endpoints := func(port string) string {
		return fmt.Sprintf(`{"cluster_name": "backend-svc", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": %s}}}}]}]}`, port)
	}
	routes := func(action string) string {
		return fmt.Sprintf(`{"name": "ingress-routes", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, %s}]}]}`, action)
	}
	writeDiscoveryResponse(t, eds, claType, "e1", endpoints(first))
	writeDiscoveryResponse(t, rds, routeType, "r1", routes(`"route": {"cluster": "backend"}`))
	writeDiscoveryResponse(t, cds, clusterTypeURL, "c1", fmt.Sprintf(`{"name": "backend", "type": "EDS", "eds_cluster_config": {"eds_config": {"path_config_source": {"path": %q}}, "service_name": "backend-svc"}}`, eds))
	writeDiscoveryResponse(t, lds, listenerTypeURL, "l1", fmt.Sprintf(`{"name": "ingress", "address": {"socket_address": {"address": "127.0.0.1", "port_value": %d}},
	 "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
	  "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
	  "stat_prefix": "ingress",
	  "rds": {"route_config_name": "ingress-routes", "config_source": {"path": %q}},
	  "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}`, port, rds))
	p := startXDSProxy(t, fmt.Sprintf("dynamic_resources:\n  cds_config: {path: %s}\n  lds_config: {path: %s}\n", cds, lds))
	waitBody(t, url, "first upstream")
	writeDiscoveryResponse(t, eds, claType, "e2", endpoints(second))
	waitBody(t, url, "second upstream")
	waitCounter(t, p, "cluster.backend.update_success", 2)
	writeDiscoveryResponse(t, rds, routeType, "r2", routes(`"direct_response": {"status": 200, "body": {"inline_string": "routes from a file"}}`))
	waitBody(t, url, "routes from a file")
	waitCounter(t, p, "http.ingress.rds.ingress-routes.update_success", 2)
	waitGauge(t, p, "cluster_manager.warming_clusters", 0)
	waitGauge(t, p, "listener_manager.total_listeners_warming", 0)
}
