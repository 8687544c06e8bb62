package wasmproxy

import (
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/internal/testnet"
	"github.com/wasmproxy/wasmproxy/internal/testpki"
)

// configDump reads /config_dump and returns its entries by "@type"
// (without the type URL prefix), and the raw text.
func configDump(t *testing.T, p *Proxy) (map[string]map[string]any, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	p.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/config_dump", nil))
	if rec.Code != 200 {
		t.Fatalf("/config_dump: %d %s", rec.Code, rec.Body)
	}
	var dump struct {
		Configs []map[string]any `json:"configs"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &dump); err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for _, c := range dump.Configs {
		out[strings.TrimPrefix(c["@type"].(string), "type.googleapis.com/envoy.admin.v3.")] = c
	}
	return out, rec.Body.String()
}

// dig walks v by map keys and list indexes; nil when a step is missing.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

// TestXDSConfigDump: /config_dump shows what the control plane delivered
// as Envoy's does — the bootstrap without it, then dynamic_active_clusters,
// dynamic_listeners (active_state) and dynamic_route_configs, each with
// the version and time of the update that last changed it (an
// unchanged cluster keeps version 1 when the routes move to version 2)
// — and a delivered cluster's private key is redacted.
func TestXDSConfigDump(t *testing.T) {
	for _, apiType := range apiTypes {
		t.Run(apiType, func(t *testing.T) {
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
		  "rds": {"route_config_name": "ingress-routes", "config_source": {"ads": {}, "resource_api_version": "V3"}},
		  "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}`, port)
			routes := func(action string) string {
				return fmt.Sprintf(`{"name": "ingress-routes", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, %s}]}]}`, action)
			}
			ca := testpki.NewCA(t, "dump CA")
			cert := ca.Issue(t, testpki.Options{Client: true, Subject: pkix.Name{CommonName: "proxy"}})
			keyJSON, _ := json.Marshal(string(cert.KeyPEM))
			certJSON, _ := json.Marshal(string(cert.CertPEM))
			secretive := fmt.Sprintf(`{"name": "secretive", "type": "STATIC", "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
			  "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
			  "common_tls_context": {"tls_certificates": [{"certificate_chain": {"inline_string": %s}, "private_key": {"inline_string": %s}}]}}},
			  "load_assignment": {"cluster_name": "secretive", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": %s}}}}]}]}}`, certJSON, keyJSON, upPort)
			clusters := []string{backendCluster(upPort, ""), secretive}

			start := time.Now()
			cp.pushAll(t, "1", clusters, []string{listener}, []string{routes(`"route": {"cluster": "backend"}`)}, nil)
			waitBody(t, url, "from the upstream")
			dump, text := configDump(t, p)
			if strings.Contains(text, "PRIVATE KEY") {
				t.Error("/config_dump shows the delivered cluster's private key")
			}
			// The bootstrap as the file has it: the delivered resources are
			// in the dynamic sections only.
			if got := dig(dump["BootstrapConfigDump"], "bootstrap", "static_resources", "clusters"); len(got.([]any)) != 1 || dig(got, 0, "name") != "xds_cluster" {
				t.Errorf("bootstrap clusters %v, want only the file's xds_cluster", got)
			}
			if got := dig(dump["BootstrapConfigDump"], "bootstrap", "static_resources", "listeners"); got != nil {
				t.Errorf("bootstrap listeners %v, want none (the delivered one is dynamic)", got)
			}
			cds := dump["ClustersConfigDump"]
			if dig(cds, "version_info") != "1" || dig(cds, "static_clusters", 0, "cluster", "name") != "xds_cluster" {
				t.Errorf("ClustersConfigDump %v", cds)
			}
			for i, name := range []string{"backend", "secretive"} {
				if dig(cds, "dynamic_active_clusters", i, "cluster", "name") != name || dig(cds, "dynamic_active_clusters", i, "version_info") != "1" {
					t.Errorf("dynamic_active_clusters[%d] = %v, want %s at version 1", i, dig(cds, "dynamic_active_clusters", i), name)
				}
			}
			if got := dig(cds, "dynamic_active_clusters", 1, "cluster", "transport_socket", "typed_config", "common_tls_context", "tls_certificates", 0, "private_key", "inline_string"); got != "[redacted]" {
				t.Errorf("the delivered private key shows as %v, want [redacted]", got)
			}
			lds := dump["ListenersConfigDump"]
			if dig(lds, "version_info") != "1" || dig(lds, "dynamic_listeners", 0, "name") != "ingress" ||
				dig(lds, "dynamic_listeners", 0, "active_state", "version_info") != "1" ||
				dig(lds, "dynamic_listeners", 0, "active_state", "listener", "@type") != "type.googleapis.com/envoy.config.listener.v3.Listener" {
				t.Errorf("ListenersConfigDump %v", lds)
			}
			lastUpdated := func(v any) time.Time {
				s, _ := v.(string)
				ts, err := time.Parse(time.RFC3339Nano, s)
				if err != nil {
					t.Fatalf("last_updated %v: %v", v, err)
				}
				return ts
			}
			if ts := lastUpdated(dig(lds, "dynamic_listeners", 0, "active_state", "last_updated")); ts.Before(start.Add(-time.Second)) {
				t.Errorf("listener last_updated %v is before the test started (%v)", ts, start)
			}
			rds := dump["RoutesConfigDump"]
			if dig(rds, "dynamic_route_configs", 0, "version_info") != "1" || dig(rds, "dynamic_route_configs", 0, "route_config", "name") != "ingress-routes" {
				t.Errorf("RoutesConfigDump %v", rds)
			}
			routes1 := lastUpdated(dig(rds, "dynamic_route_configs", 0, "last_updated"))
			cluster1 := lastUpdated(dig(cds, "dynamic_active_clusters", 0, "last_updated"))

			// Version 2 changes only the routes.
			cp.pushAll(t, "2", clusters, []string{listener}, []string{routes(`"direct_response": {"status": 200, "body": {"inline_string": "version 2"}}`)}, nil)
			waitBody(t, url, "version 2")
			typeVersion := "1"
			if apiType == "GRPC" {
				// The state of the world sends the unchanged clusters and
				// listeners again with version 2; the incremental protocol
				// sends only the changed routes.
				waitCounter(t, p, "cluster_manager.cds.update_success", 2)
				waitCounter(t, p, "listener_manager.lds.update_success", 2)
				typeVersion = "2"
			}
			dump, _ = configDump(t, p)
			rds, cds, lds = dump["RoutesConfigDump"], dump["ClustersConfigDump"], dump["ListenersConfigDump"]
			if dig(rds, "dynamic_route_configs", 0, "version_info") != "2" || !lastUpdated(dig(rds, "dynamic_route_configs", 0, "last_updated")).After(routes1) {
				t.Errorf("the changed route configuration: %v, want version 2 updated after %v", dig(rds, "dynamic_route_configs", 0), routes1)
			}
			if dig(cds, "version_info") != typeVersion || dig(cds, "dynamic_active_clusters", 0, "version_info") != "1" ||
				!lastUpdated(dig(cds, "dynamic_active_clusters", 0, "last_updated")).Equal(cluster1) {
				t.Errorf("an unchanged cluster: %v (type version %v), want it at version 1, updated %v", dig(cds, "dynamic_active_clusters", 0), dig(cds, "version_info"), cluster1)
			}
			if dig(lds, "dynamic_listeners", 0, "active_state", "version_info") != "1" {
				t.Errorf("an unchanged listener: %v, want version 1", dig(lds, "dynamic_listeners", 0))
			}

			// Version 3 adds a listener the proxy cannot run: the update is
			// rejected, and the new listener shows only its error_state.
			bad := strings.Replace(ingressListener(testnet.FreePort(t), `"route": {"cluster": "backend"}`), `"name": "ingress",`, `"name": "bad", "use_original_dst": true,`, 1)
			cp.pushAll(t, "3", clusters, []string{bad, listener}, []string{routes(`"direct_response": {"status": 200, "body": {"inline_string": "version 2"}}`)}, nil)
			waitCounter(t, p, "listener_manager.lds.update_rejected", 1)
			dump, _ = configDump(t, p)
			lds = dump["ListenersConfigDump"]
			dl := dig(lds, "dynamic_listeners", 0)
			if dig(dl, "name") != "bad" || dig(dl, "active_state") != nil ||
				!strings.Contains(fmt.Sprint(dig(dl, "error_state", "details")), "use_original_dst") ||
				dig(dl, "error_state", "failed_configuration", "name") != "bad" {
				t.Errorf("the rejected new listener shows as %v, want only its error_state", dl)
			}
			if dig(lds, "dynamic_listeners", 1, "name") != "ingress" || dig(lds, "dynamic_listeners", 1, "active_state") == nil {
				t.Errorf("the running listener shows as %v, want it active", dig(lds, "dynamic_listeners", 1))
			}
		})
	}
}
