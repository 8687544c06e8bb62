package wasmproxy

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/internal/testnet"
	"github.com/wasmproxy/wasmproxy/logging"
)

// waitGauge waits, bounded, until the gauge reads want.
func waitGauge(t *testing.T, p *Proxy, name string, want int64) {
	t.Helper()
	g := p.stats.Gauge(name)
	for deadline := time.Now().Add(30 * time.Second); g.Value() != want && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if got := g.Value(); got != want {
		t.Fatalf("%s = %d, want %d", name, got, want)
	}
}

// getStatus answers the status of a GET of url, or 0 if it failed.
func getStatus(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestXDSWarming: Envoy's warming rules for EDS and RDS under a real
// go-control-plane, which answers a name only once its snapshot has it.
// At start, a cluster waits for its endpoints (the proxy INITIALIZING,
// the cluster in warming_clusters, nothing listening); later, a new
// version of a cluster or listener whose endpoints or routes have not
// arrived warms while the version before keeps serving (no 503 or 404
// in between), and a resource that never arrives stops holding its
// cluster once the eds_config's initial_fetch_timeout passed.
func TestXDSWarming(t *testing.T) {
	for _, apiType := range apiTypes {
		t.Run(apiType, func(t *testing.T) {
			first, second := upstreamPort(t, "first upstream"), upstreamPort(t, "second upstream")
			cp, _ := startControlPlane(t, "127.0.0.1:0")
			p := startXDSProxy(t, xdsBootstrap(cp.addr, apiType))
			port := testnet.FreePort(t)
			url := fmt.Sprintf("http://127.0.0.1:%d/", port)
			edsCluster := func(name, service, timeout string) string {
				return fmt.Sprintf(`{"name": %q, "type": "EDS", "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3" %s}, "service_name": %q}}`, name, timeout, service)
			}
			listener := func(routes string) string {
				return fmt.Sprintf(`{"name": "ingress", "address": {"socket_address": {"address": "127.0.0.1", "port_value": %d}},
		 "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
		  "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
		  "stat_prefix": "ingress",
		  "rds": {"route_config_name": %q, "config_source": {"ads": {}, "resource_api_version": "V3"}},
		  "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}`, port, routes)
			}
			routes := func(name, action string) string {
				return fmt.Sprintf(`{"name": %q, "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, %s}]}]}`, name, action)
			}
			endpoints := func(service, port string) string {
				return fmt.Sprintf(`{"cluster_name": %q, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": %s}}}}]}]}`, service, port)
			}
			toBackend := `"route": {"cluster": "backend"}`

			// Start: the cluster's endpoints are not there yet. It warms, the
			// proxy is not ready, and no listener is served.
			cp.pushAll(t, "1", []string{edsCluster("backend", "svc-a", "")}, []string{listener("routes-a")}, []string{routes("routes-a", toBackend)}, nil)
			waitGauge(t, p, "cluster_manager.warming_clusters", 1)
			if code, body := ready(p); code != 503 || body != "INITIALIZING\n" {
				t.Errorf("/ready while the cluster warms: %d %q, want 503 INITIALIZING", code, body)
			}
			dump, _ := configDump(t, p)
			if dig(dump["ClustersConfigDump"], "dynamic_warming_clusters", 0, "cluster", "name") != "backend" {
				t.Errorf("clusters dump while warming: %v", dump["ClustersConfigDump"])
			}
			if got := getStatus(url); got != 0 {
				t.Errorf("GET %s while its cluster warms: %d, want no listener", url, got)
			}
			cp.pushAll(t, "2", []string{edsCluster("backend", "svc-a", "")}, []string{listener("routes-a")}, []string{routes("routes-a", toBackend)}, []string{endpoints("svc-a", first)})
			waitBody(t, url, "first upstream")
			waitReady(t, p)
			waitGauge(t, p, "cluster_manager.warming_clusters", 0)
			waitGauge(t, p, "listener_manager.total_listeners_active", 1)

			// A new version of the cluster names endpoints not delivered: it
			// warms, and the version before keeps serving meanwhile.
			cp.pushAll(t, "3", []string{edsCluster("backend", "svc-b", "")}, []string{listener("routes-a")}, []string{routes("routes-a", toBackend)}, []string{endpoints("svc-a", first)})
			waitGauge(t, p, "cluster_manager.warming_clusters", 1)
			if got := getStatus(url); got != 200 {
				t.Errorf("GET while a new cluster version warms: %d, want 200 from the version before", got)
			}
			// /config_dump shows both, as Envoy's: the version serving among
			// the active clusters, the new one among the warming.
			dump, _ = configDump(t, p)
			cd := dump["ClustersConfigDump"]
			active, warming := dig(cd, "dynamic_active_clusters", 0), dig(cd, "dynamic_warming_clusters", 0)
			if dig(active, "cluster", "eds_cluster_config", "service_name") != "svc-a" || dig(warming, "cluster", "eds_cluster_config", "service_name") != "svc-b" ||
				(apiType == "GRPC" && (dig(active, "version_info") != "1" || dig(warming, "version_info") != "3")) {
				t.Errorf("clusters dump while a new version warms: active %v, warming %v; want svc-a (version 1) active and svc-b (version 3) warming", active, warming)
			}
			cp.pushAll(t, "4", []string{edsCluster("backend", "svc-b", "")}, []string{listener("routes-a")}, []string{routes("routes-a", toBackend)}, []string{endpoints("svc-b", second)})
			waitBody(t, url, "second upstream")
			waitGauge(t, p, "cluster_manager.warming_clusters", 0)

			// The same for a listener naming routes not delivered.
			cp.pushAll(t, "5", []string{edsCluster("backend", "svc-b", "")}, []string{listener("routes-b")}, []string{routes("routes-a", toBackend)}, []string{endpoints("svc-b", second)})
			waitGauge(t, p, "listener_manager.total_listeners_warming", 1)
			if got := getStatus(url); got != 200 {
				t.Errorf("GET while a new listener version warms: %d, want 200 from the version before", got)
			}
			dump, _ = configDump(t, p)
			dl := dig(dump["ListenersConfigDump"], "dynamic_listeners", 0)
			rdsName := func(state string) any {
				return dig(dl, state, "listener", "filter_chains", 0, "filters", 0, "typed_config", "rds", "route_config_name")
			}
			if rdsName("active_state") != "routes-a" || rdsName("warming_state") != "routes-b" ||
				(apiType == "GRPC" && (dig(dl, "active_state", "version_info") == "5" || dig(dl, "warming_state", "version_info") != "5")) {
				t.Errorf("listener dump while a new version warms: %v; want routes-a (an earlier version) active beside routes-b (version 5) warming", dl)
			}
			cp.pushAll(t, "6", []string{edsCluster("backend", "svc-b", "")}, []string{listener("routes-b")},
				[]string{routes("routes-b", `"direct_response": {"status": 200, "body": {"inline_string": "routes b"}}`)}, []string{endpoints("svc-b", second)})
			waitBody(t, url, "routes b")
			waitGauge(t, p, "listener_manager.total_listeners_warming", 0)

			// Endpoints that never come: the cluster warms for its
			// eds_config's initial_fetch_timeout, then serves without
			// them (503), as on Envoy.
			cp.pushAll(t, "7", []string{edsCluster("backend", "svc-b", ""), edsCluster("never", "svc-never", `, "initial_fetch_timeout": "3s"`)}, []string{listener("routes-b")},
				[]string{routes("routes-b", `"direct_response": {"status": 200, "body": {"inline_string": "routes b"}}`)}, []string{endpoints("svc-b", second)})
			waitGauge(t, p, "cluster_manager.warming_clusters", 1)
			waitGauge(t, p, "cluster_manager.warming_clusters", 0)
			waitGauge(t, p, "cluster_manager.active_clusters", 3) // xds_cluster, backend, never
		})
	}
}

// lockedBuffer is a log sink safe for the proxy's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestXDSInitialFetchInTime: a proxy initialized before
// initial_fetch_timeout neither warns that the fetch timed out nor
// counts init_fetch_timeout when the timer's time comes (it used to
// warn on every start). The time is known to have passed without a
// sleep: a cluster added afterwards waits for endpoints that never come
// for a longer timeout of its own, and stops warming only after it.
func TestXDSInitialFetchInTime(t *testing.T) {
	up := upstreamPort(t, "from the upstream")
	cp, _ := startControlPlane(t, "127.0.0.1:0")
	cfg := strings.Replace(xdsBootstrap(cp.addr, "GRPC"), "cds_config: {ads: {}, resource_api_version: V3}", "cds_config: {ads: {}, resource_api_version: V3, initial_fetch_timeout: 1s}", 1)
	cfg = strings.Replace(cfg, "lds_config: {ads: {}, resource_api_version: V3}", "lds_config: {ads: {}, resource_api_version: V3, initial_fetch_timeout: 1s}", 1)
	var logs lockedBuffer
	p := startXDSProxy(t, cfg, func(o *Options) { o.Logs = logging.NewRegistry(&logs, logging.LevelInfo) })
	port := testnet.FreePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	cp.push(t, "1", []string{backendCluster(up, "")}, []string{ingressListener(port, `"route": {"cluster": "backend"}`)})
	waitBody(t, url, "from the upstream")
	waitReady(t, p)
	never := `{"name": "never", "type": "EDS", "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3", "initial_fetch_timeout": "4s"}, "service_name": "svc-never"}}`
	cp.push(t, "2", []string{backendCluster(up, ""), never}, []string{ingressListener(port, `"route": {"cluster": "backend"}`)})
	waitGauge(t, p, "cluster_manager.warming_clusters", 1)
	waitGauge(t, p, "cluster_manager.warming_clusters", 0) // 4s after the push, 1s after start long past
	if strings.Contains(logs.String(), "timed out") {
		t.Errorf("a proxy initialized in time logged a timeout:\n%s", logs.String())
	}
	for _, c := range []string{"cluster_manager.cds.init_fetch_timeout", "listener_manager.lds.init_fetch_timeout"} {
		if got := p.stats.Counter(c).Value(); got != 0 {
			t.Errorf("%s = %d, want 0", c, got)
		}
	}
	if code, _ := ready(p); code != 200 {
		t.Errorf("/ready %d after a cluster added later warmed", code)
	}
}
