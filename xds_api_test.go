package wasmproxy

import (
	"crypto/tls"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/wasmproxy/wasmproxy/internal/testnet"
	"github.com/wasmproxy/wasmproxy/internal/testpki"
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
			upPort, otherPort := upstreamPort(t, "over streams of their own"), upstreamPort(t, "the second service")
			cds, _ := startControlPlane(t, "127.0.0.1:0")
			lds, _ := startControlPlane(t, "127.0.0.1:0")
			p := startXDSProxy(t, fmt.Sprintf(`node: {id: proxy-1, cluster: fleet}
dynamic_resources:
  lds_config: %s
  cds_config: %s
static_resources:
  clusters:
%s%s  - name: h1_cluster
    load_assignment:
      cluster_name: h1_cluster
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}}]}]
  - name: empty_cluster
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
`, apiSource(apiType, "lds_cluster"), apiSource(apiType, "cds_cluster"), grpcClusterYAML("cds_cluster", cds.addr), grpcClusterYAML("lds_cluster", lds.addr)))

			port := testnet.FreePort(t)
			url := fmt.Sprintf("http://127.0.0.1:%d/", port)
			edsClusterOf := func(name, service, via string) string {
				return fmt.Sprintf(`{"name": %q, "type": "EDS", "eds_cluster_config": {"eds_config": %s, "service_name": %q}}`, name, apiSource(apiType, via), service)
			}
			edsCluster := func(name, via string) string { return edsClusterOf(name, "backend-svc", via) }
			endpointsOf := func(service, port string) string {
				return fmt.Sprintf(`{"cluster_name": %q, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": %s}}}}]}]}`, service, port)
			}
			endpoints := endpointsOf("backend-svc", upPort)
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
			// connected_state as Envoy keeps it: a gauge per gRPC mux, in
			// the scope of the subscription it serves; none for ADS, which
			// is not configured.
			for name, want := range map[string]int64{
				"control_plane.connected_state":                                                    0,
				"cluster_manager.cds.control_plane.connected_state":                                1,
				"listener_manager.lds.control_plane.connected_state":                               1,
				"cluster.backend.control_plane.connected_state":                                    1,
				"http.ingress.rds.ingress-routes.control_plane.connected_state":                    1,
				"extension_config_discovery.http_filter.add-version.control_plane.connected_state": 1,
			} {
				waitGauge(t, p, name, want)
			}

			// RDS alone, on its own stream.
			lds.pushAll(t, "l2", nil, []string{listener}, []string{routes(`"direct_response": {"status": 200, "body": {"inline_string": "routes v2"}}`)}, nil, headerFilter("one"))
			waitBody(t, url, "routes v2")
			waitCounter(t, p, "http.ingress.rds.ingress-routes.update_success", 2)
			// ECDS alone, on its own stream.
			lds.pushAll(t, "l3", nil, []string{listener}, []string{routes(`"direct_response": {"status": 200, "body": {"inline_string": "routes v2"}}`)}, nil, headerFilter("two"))
			waitHeader(t, url, "x-filter-version", "two")

			// A second EDS cluster over the same source: the CDS stream's
			// response changes the names the EDS stream asks for, which
			// subscribes the new service without a response of its own
			// (with the incremental protocol the EDS stream gets none:
			// nothing it had asked for changed).
			cds.pushAll(t, "c2", []string{edsCluster("backend", "cds_cluster"), edsClusterOf("second", "second-svc", "cds_cluster")}, nil, nil,
				[]string{endpoints, endpointsOf("second-svc", otherPort)})
			waitCounter(t, p, "cluster.second.update_success", 1)
			lds.pushAll(t, "l4", nil, []string{listener}, []string{routes(`"route": {"cluster": "second"}`)}, nil, headerFilter("two"))
			waitBody(t, url, "the second service")

			// A cluster whose EDS source names a cluster the bootstrap does
			// not have, or one that cannot carry gRPC (HTTP/1.1; no
			// endpoints): NACKed naming the field; the rest keeps serving.
			for i, tc := range []struct{ via, want string }{
				{"nowhere", `unknown cluster "nowhere"`},
				{"h1_cluster", `cluster "h1_cluster" speaks HTTP/1.1; gRPC needs HTTP/2`},
				{"empty_cluster", `cluster "empty_cluster" has no endpoints`},
			} {
				cds.pushAll(t, fmt.Sprintf("bad%d", i), []string{edsCluster("backend", "cds_cluster"), edsClusterOf("second", "second-svc", "cds_cluster"), edsCluster("other", tc.via)}, nil, nil,
					[]string{endpoints, endpointsOf("second-svc", otherPort)})
				// The NACK of this version (the control plane sends a
				// NACKed version again, so the one before may be NACKed
				// again meanwhile).
				nack := cds.waitNACK(t, tc.want)
				for _, want := range []string{`xDS cluster "other"`, "eds_cluster_config.eds_config.api_config_source.grpc_services[0].envoy_grpc.cluster_name"} {
					if !strings.Contains(nack.message, want) {
						t.Errorf("NACK error_detail %q does not contain %q", nack.message, want)
					}
				}
				if nack.typeURL != resource.ClusterType || (apiType == "GRPC" && nack.version != "c2") {
					t.Errorf("NACK for %s at version %q; want the cluster type, keeping version c2", nack.typeURL, nack.version)
				}
			}
			lds.pushAll(t, "l5", nil, []string{listener}, []string{routes(`"route": {"cluster": "backend"}`)}, nil, headerFilter("two"))
			waitBody(t, url, "over streams of their own")
		})
	}
}

// waitNACK waits, bounded, for a NACK whose error_detail contains want,
// passing over others.
func (cp *controlPlane) waitNACK(t *testing.T, want string) nack {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case n := <-cp.nacks:
			if strings.Contains(n.message, want) {
				return n
			}
		case <-timeout:
			t.Fatalf("no NACK containing %q", want)
		}
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

// TestXDSSecretsOverAPIConfigSource: listeners and clusters over ADS,
// the listener's certificate from a second control plane that serves
// only secrets (sds_config: api_config_source), on a stream of the
// SecretDiscoveryService; a real TLS client sees it, and the rotated one
// on its next connection.
func TestXDSSecretsOverAPIConfigSource(t *testing.T) {
	for _, apiType := range apiTypes {
		t.Run(apiType, func(t *testing.T) {
			ca := testpki.NewCA(t, "sds CA")
			first := ca.Issue(t, testpki.Options{Subject: pkix.Name{CommonName: "first"}, DNSNames: []string{"ingress.local"}})
			second := ca.Issue(t, testpki.Options{Subject: pkix.Name{CommonName: "second"}, DNSNames: []string{"ingress.local"}})
			ads, _ := startControlPlane(t, "127.0.0.1:0")
			sds, _ := startControlPlane(t, "127.0.0.1:0")
			p := startXDSProxy(t, xdsBootstrap(ads.addr, apiType)+grpcClusterYAML("sds_cluster", sds.addr))
			port := testnet.FreePort(t)
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			listener := tlsListener(port, fmt.Sprintf(`"common_tls_context": {"tls_certificate_sds_secret_configs": [{"name": "ingress-cert", "sds_config": %s}]}`, apiSource(apiType, "sds_cluster")))
			client := &tls.Config{RootCAs: ca.Pool(), ServerName: "ingress.local"}
			ads.push(t, "1", []string{backendCluster("1", "")}, []string{listener})
			sds.pushSecretsOnly(t, "s1", certSecret("ingress-cert", first))
			waitServedCert(t, addr, client, first)
			waitReady(t, p)
			sds.pushSecretsOnly(t, "s2", certSecret("ingress-cert", second))
			waitServedCert(t, addr, client, second)
			waitCounter(t, p, "sds.ingress-cert.update_success", 2)
			waitGauge(t, p, "sds.ingress-cert.control_plane.connected_state", 1)
			waitGauge(t, p, "control_plane.connected_state", 1) // ADS
			if got, want := sds.streams(), []string{resource.SecretType}; !slices.Equal(got, want) {
				t.Errorf("streams opened on the SDS control plane: %v, want %v", got, want)
			}
			if got := ads.streams(); !slices.Equal(got, []string{"ADS"}) {
				t.Errorf("streams opened on the ADS control plane: %v, want ADS only", got)
			}
			// Nothing names the secret any more: its stream is closed.
			ads.push(t, "2", []string{backendCluster("1", "")}, []string{ingressListener(port, `"direct_response": {"status": 200, "body": {"inline_string": "plaintext"}}`)})
			waitBody(t, "http://"+addr+"/", "plaintext")
			deadline := time.Now().Add(30 * time.Second)
			for sds.closedStreams(resource.SecretType) == 0 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if sds.closedStreams(resource.SecretType) == 0 {
				t.Error("the SDS stream stays open with no secret named")
			}
			// Its subscription is gone, and its gauge with it.
			waitGauge(t, p, "sds.ingress-cert.control_plane.connected_state", 0)
			waitGauge(t, p, "control_plane.connected_state", 1)
		})
	}
}
