package wasmproxy

import (
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/wasmproxy/wasmproxy/internal/testnet"
)

// grpcCluster is a static HTTP/2 cluster to a control plane at addr.
func grpcClusterYAML(name, addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	return fmt.Sprintf(`  - name: %s
    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment:
      cluster_name: %s
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: %s, port_value: %s}}}}]}]
`, name, name, host, port)
}

// apiSource is an api_config_source of apiType through cluster, as JSON.
func apiSource(apiType, cluster string) string {
	return fmt.Sprintf(`{"api_config_source": {"api_type": %q, "transport_api_version": "V3", "grpc_services": [{"envoy_grpc": {"cluster_name": %q}}]}, "resource_api_version": "V3"}`, apiType, cluster)
}

// TestXDSAPIConfigSource: lds_config and cds_config each with an
// api_config_source of its own, to two control planes (go-control-plane
// servers) behind two clusters; the delivered cluster's EDS and the
// listener's RDS name api_config_sources too. The proxy opens one
// stream per type on each (never ADS), serves what they deliver, takes
// an RDS update on its own stream, and NACKs a cluster whose EDS source
// names no static cluster, naming the field.
func TestXDSAPIConfigSource(t *testing.T) {
	for _, apiType := range apiTypes {
		t.Run(apiType, func(t *testing.T) {
			upPort := upstreamPort(t, "over streams of their own")
			cds, _ := startControlPlane(t, "127.0.0.1:0")
			lds, _ := startControlPlane(t, "127.0.0.1:0")
			p := startXDSProxy(t, fmt.Sprintf(`node: {id: proxy-1, cluster: fleet}
dynamic_resources:
  lds_config: %s
  cds_config: %s
static_resources:
  clusters:
%s%s`, apiSource(apiType, "lds_cluster"), apiSource(apiType, "cds_cluster"), grpcClusterYAML("cds_cluster", cds.addr), grpcClusterYAML("lds_cluster", lds.addr)))

			port := testnet.FreePort(t)
			url := fmt.Sprintf("http://127.0.0.1:%d/", port)
			edsCluster := func(name, via string) string {
				return fmt.Sprintf(`{"name": %q, "type": "EDS", "eds_cluster_config": {"eds_config": %s, "service_name": "backend-svc"}}`, name, apiSource(apiType, via))
			}
			endpoints := fmt.Sprintf(`{"cluster_name": "backend-svc", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": %s}}}}]}]}`, upPort)
			listener := fmt.Sprintf(`{"name": "ingress", "address": {"socket_address": {"address": "127.0.0.1", "port_value": %d}},
		 "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
		  "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
		  "stat_prefix": "ingress",
		  "rds": {"route_config_name": "ingress-routes", "config_source": %s},
		  "http_filters": [
		   {"name": "add-version", "config_discovery": {"config_source": %s, "type_urls": ["type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation"]}},
		   {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}`, port, apiSource(apiType, "lds_cluster"), apiSource(apiType, "lds_cluster"))
			headerFilter := func(value string) string {
				return fmt.Sprintf(`{"name": "add-version", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
		 "mutations": {"response_mutations": [{"append": {"header": {"key": "x-filter-version", "value": %q}}}]}}}`, value)
			}
			routes := func(action string) string {
				return fmt.Sprintf(`{"name": "ingress-routes", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, %s}]}]}`, action)
			}
			cds.pushAll(t, "c1", []string{edsCluster("backend", "cds_cluster")}, nil, nil, []string{endpoints})
			lds.pushAll(t, "l1", nil, []string{listener}, []string{routes(`"route": {"cluster": "backend"}`)}, nil, headerFilter("one"))
			waitBody(t, url, "over streams of their own")
			if got := headerOf(t, url, "x-filter-version"); got != "one" {
				t.Errorf("x-filter-version = %q, want the ECDS config's", got)
			}
			waitReady(t, p)
			if got, want := cds.streams(), []string{resource.ClusterType, resource.EndpointType}; !slices.Equal(got, want) {
				t.Errorf("streams opened on the CDS control plane: %v, want %v", got, want)
			}
			if got, want := lds.streams(), []string{resource.ExtensionConfigType, resource.ListenerType, resource.RouteType}; !slices.Equal(got, want) {
				t.Errorf("streams opened on the LDS control plane: %v, want %v", got, want)
			}
			if got := p.stats.Gauge("control_plane.connected_state").Value(); got != 1 {
				t.Errorf("control_plane.connected_state = %d, want 1", got)
			}

			// RDS alone, on its own stream.
			lds.pushAll(t, "l2", nil, []string{listener}, []string{routes(`"direct_response": {"status": 200, "body": {"inline_string": "routes v2"}}`)}, nil, headerFilter("one"))
			waitBody(t, url, "routes v2")
			waitCounter(t, p, "http.ingress.rds.ingress-routes.update_success", 2)
			// ECDS alone, on its own stream.
			lds.pushAll(t, "l3", nil, []string{listener}, []string{routes(`"direct_response": {"status": 200, "body": {"inline_string": "routes v2"}}`)}, nil, headerFilter("two"))
			waitHeader(t, url, "x-filter-version", "two")

			// A cluster whose EDS source names a cluster the bootstrap does
			// not have: NACKed naming the field; the rest keeps serving.
			cds.pushAll(t, "c2", []string{edsCluster("backend", "cds_cluster"), edsCluster("other", "nowhere")}, nil, nil, []string{endpoints})
			select {
			case nack := <-cds.nacks:
				for _, want := range []string{`xDS cluster "other"`, "eds_cluster_config.eds_config.api_config_source.grpc_services[0].envoy_grpc.cluster_name", `unknown cluster "nowhere"`} {
					if !strings.Contains(nack.message, want) {
						t.Errorf("NACK error_detail %q does not contain %q", nack.message, want)
					}
				}
				if nack.typeURL != resource.ClusterType || (apiType == "GRPC" && nack.version != "c1") {
					t.Errorf("NACK for %s at version %q; want the cluster type, keeping version c1", nack.typeURL, nack.version)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("no NACK for a cluster whose eds_config names an unknown cluster")
			}
			waitCounter(t, p, "cluster_manager.cds.update_rejected", 1)
			lds.pushAll(t, "l4", nil, []string{listener}, []string{routes(`"route": {"cluster": "backend"}`)}, nil, headerFilter("two"))
			waitBody(t, url, "over streams of their own")
		})
	}
}

// headerOf is a response header of GET url.
func headerOf(t *testing.T, url, name string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.Header.Get(name)
}

// waitHeader waits, bounded, until GET url answers with header name
// set to want.
func waitHeader(t *testing.T, url, name, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if last = resp.Header.Get(name); last == want {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never answered with %s: %q; last %q", url, name, want, last)
}
