package istio

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/wasmproxy/wasmproxy/config"
)

// baseBootstrap has a gateway listener (HTTP, legacy filter names), a
// sidecar inbound HTTP listener on 8080 with two chains, an inbound TCP
// listener on 8083 and an outbound listener, and two clusters.
const baseBootstrap = `
static_resources:
  listeners:
  - name: gw
    address: {socket_address: {address: 127.0.0.1, port_value: 443}}
    filter_chains:
    - filters:
      - name: envoy.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: gw
          route_config:
            name: gw-routes
            virtual_hosts:
            - name: vh1
              domains: ["*"]
              routes:
              - name: r1
                match: {prefix: "/a"}
                route: {cluster: web}
              - name: r2
                match: {prefix: "/"}
                direct_response: {status: 200}
          http_filters:
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config: {name: authn, root_id: authn, vm_config: {runtime: envoy.wasm.runtime.v8, code: {local: {filename: a.wasm}}}}
          - name: envoy.router
  - name: in8080
    traffic_direction: INBOUND
    address: {socket_address: {address: 127.0.0.1, port_value: 8080}}
    filter_chains:
    - name: tls-chain
      filter_chain_match: {server_names: [a.example], transport_protocol: tls, application_protocols: [h2, http/1.1], destination_port: 8080}
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: in
          route_config: {name: in-routes}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
    - name: plain-chain
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: in
          route_config: {name: in-routes}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  - name: in8083
    traffic_direction: INBOUND
    address: {socket_address: {address: 127.0.0.1, port_value: 8083}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: echo}
  - name: out9000
    traffic_direction: OUTBOUND
    address: {socket_address: {address: 127.0.0.1, port_value: 9000}}
    filter_chains:
    - filters:
      - name: envoy.tcp_proxy
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: o, cluster: web}
  clusters:
  - name: web
    connect_timeout: 1s
  - name: outbound|80|v1|reviews.default.svc.cluster.local
    connect_timeout: 1s
`

func decodeBase(t *testing.T) *bootstrapv3.Bootstrap {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(baseBootstrap))
	if err != nil {
		t.Fatal(err)
	}
	pb := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(js, pb); err != nil {
		t.Fatal(err)
	}
	return pb
}

// summary is the shape of pb a patch can change, one line per listener
// chain, route config and cluster.
func summary(t *testing.T, pb *bootstrapv3.Bootstrap) string {
	t.Helper()
	var b strings.Builder
	for _, l := range pb.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			fmt.Fprintf(&b, "%s/%s:", l.GetName(), fc.GetName())
			for _, f := range fc.GetFilters() {
				fmt.Fprintf(&b, " %s", f.GetName())
				if f.GetTypedConfig().GetTypeUrl() == "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager" {
					h := &hcmv3.HttpConnectionManager{}
					if err := f.GetTypedConfig().UnmarshalTo(h); err != nil {
						t.Fatal(err)
					}
					var hs []string
					for _, hf := range h.GetHttpFilters() {
						hs = append(hs, hf.GetName())
					}
					fmt.Fprintf(&b, "[%s]", strings.Join(hs, ","))
					if h.GetStatPrefix() != "gw" && h.GetStatPrefix() != "in" {
						fmt.Fprintf(&b, "{stat_prefix=%s}", h.GetStatPrefix())
					}
					for _, vh := range h.GetRouteConfig().GetVirtualHosts() {
						var rs []string
						for _, r := range vh.GetRoutes() {
							rs = append(rs, r.GetName())
						}
						fmt.Fprintf(&b, " vh %s(%s)", vh.GetName(), strings.Join(rs, ","))
					}
				}
			}
			b.WriteString("\n")
		}
	}
	for _, c := range pb.GetStaticResources().GetClusters() {
		fmt.Fprintf(&b, "cluster %s %s\n", c.GetName(), c.GetConnectTimeout().AsDuration())
	}
	return b.String()
}

func loadEF(t *testing.T, doc string) ([]*EnvoyFilter, error) {
	t.Helper()
	p := writeFile(t, t.TempDir(), "ef.yaml", doc)
	r, err := LoadResources(p)
	if err != nil {
		return nil, err
	}
	return r.EnvoyFilters, nil
}

func ef(name string, patches string) string {
	return "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: " + name + ", namespace: ns}\nspec:\n  configPatches:\n" + patches
}

// TestEnvoyFilterGolden applies one EnvoyFilter per case to the base
// bootstrap and compares the result's shape with istiod's outcome for
// the same patch, including the patches that must match nothing.
func TestEnvoyFilterGolden(t *testing.T) {
	base := summary(t, decodeBase(t))
	const wasmValue = `{name: x, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm, config: {vm_config: {code: {local: {filename: x.wasm}}}}}}`
	const netValue = `{name: nf, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm, config: {vm_config: {code: {local: {filename: n.wasm}}}}}}`
	cases := []struct {
		name    string
		patches string
		// changes are "old line" → "new line" replacements of the base
		// summary; none means the patch matches nothing.
		changes []string
		version string
	}{
		{name: "HTTP_FILTER INSERT_BEFORE without subFilter inserts first (gateway)", patches: `
  - applyTo: HTTP_FILTER
    match: {context: GATEWAY}
    patch: {operation: INSERT_BEFORE, value: ` + wasmValue + `}`,
			changes: []string{"[envoy.filters.http.wasm,envoy.router]", "[x,envoy.filters.http.wasm,envoy.router]"}},
		{name: "HTTP_FILTER INSERT_BEFORE legacy router name matches canonical", patches: `
  - applyTo: HTTP_FILTER
    match: {context: SIDECAR_INBOUND, listener: {portNumber: 8080, filterChain: {filter: {name: envoy.http_connection_manager, subFilter: {name: envoy.router}}}}}
    patch: {operation: INSERT_BEFORE, value: ` + wasmValue + `}`,
			changes: []string{"in8080/tls-chain: envoy.filters.network.http_connection_manager[envoy.filters.http.router]", "in8080/tls-chain: envoy.filters.network.http_connection_manager[x,envoy.filters.http.router]",
				"in8080/plain-chain: envoy.filters.network.http_connection_manager[envoy.filters.http.router]", "in8080/plain-chain: envoy.filters.network.http_connection_manager[x,envoy.filters.http.router]"}},
		{name: "HTTP_FILTER canonical subFilter matches a legacy name in the bootstrap", patches: `
  - applyTo: HTTP_FILTER
    match: {context: GATEWAY, listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager, subFilter: {name: envoy.filters.http.router}}}}}
    patch: {operation: INSERT_AFTER, value: ` + wasmValue + `}`,
			changes: []string{"[envoy.filters.http.wasm,envoy.router]", "[envoy.filters.http.wasm,envoy.router,x]"}},
		{name: "HTTP_FILTER INSERT_AFTER without subFilter appends", patches: `
  - applyTo: HTTP_FILTER
    match: {context: GATEWAY}
    patch: {operation: INSERT_AFTER, value: ` + wasmValue + `}`,
			changes: []string{"[envoy.filters.http.wasm,envoy.router]", "[envoy.filters.http.wasm,envoy.router,x]"}},
		{name: "HTTP_FILTER INSERT_FIRST", patches: `
  - applyTo: HTTP_FILTER
    match: {context: GATEWAY, listener: {filterChain: {filter: {name: envoy.http_connection_manager, subFilter: {name: envoy.router}}}}}
    patch: {operation: INSERT_FIRST, value: ` + wasmValue + `}`,
			changes: []string{"[envoy.filters.http.wasm,envoy.router]", "[x,envoy.filters.http.wasm,envoy.router]"}},
		{name: "HTTP_FILTER ADD appends", patches: `
  - applyTo: HTTP_FILTER
    match: {context: GATEWAY}
    patch: {operation: ADD, value: ` + wasmValue + `}`,
			changes: []string{"[envoy.filters.http.wasm,envoy.router]", "[envoy.filters.http.wasm,envoy.router,x]"}},
		{name: "HTTP_FILTER REPLACE", patches: `
  - applyTo: HTTP_FILTER
    match: {context: GATEWAY, listener: {filterChain: {filter: {name: envoy.http_connection_manager, subFilter: {name: envoy.filters.http.wasm}}}}}
    patch: {operation: REPLACE, value: ` + wasmValue + `}`,
			changes: []string{"[envoy.filters.http.wasm,envoy.router]", "[x,envoy.router]"}},
		{name: "HTTP_FILTER REMOVE", patches: `
  - applyTo: HTTP_FILTER
    match: {context: GATEWAY, listener: {filterChain: {filter: {name: envoy.http_connection_manager, subFilter: {name: envoy.filters.http.wasm}}}}}
    patch: {operation: REMOVE}`,
			changes: []string{"[envoy.filters.http.wasm,envoy.router]", "[envoy.router]"}},
		{name: "HTTP_FILTER MERGE renames inside the matching filter", patches: `
  - applyTo: HTTP_FILTER
    match: {context: GATEWAY, listener: {filterChain: {filter: {name: envoy.http_connection_manager, subFilter: {name: envoy.filters.http.wasm}}}}}
    patch: {operation: MERGE, value: {name: renamed}}`,
			changes: []string{"[envoy.filters.http.wasm,envoy.router]", "[renamed,envoy.router]"}},
		{name: "HTTP_FILTER: context SIDECAR_OUTBOUND matches no HTTP listener", patches: `
  - applyTo: HTTP_FILTER
    match: {context: SIDECAR_OUTBOUND}
    patch: {operation: INSERT_FIRST, value: ` + wasmValue + `}`},
		{name: "HTTP_FILTER: subFilter naming no filter inserts nothing", patches: `
  - applyTo: HTTP_FILTER
    match: {context: GATEWAY, listener: {filterChain: {filter: {name: envoy.http_connection_manager, subFilter: {name: envoy.filters.http.lua}}}}}
    patch: {operation: INSERT_BEFORE, value: ` + wasmValue + `}`},
		{name: "HTTP_FILTER: filter.name tcp_proxy is no HTTP connection manager", patches: `
  - applyTo: HTTP_FILTER
    match: {listener: {filterChain: {filter: {name: envoy.tcp_proxy}}}}
    patch: {operation: ADD, value: ` + wasmValue + `}`},
		{name: "listener.portNumber", patches: `
  - applyTo: HTTP_FILTER
    match: {listener: {portNumber: 443}}
    patch: {operation: INSERT_FIRST, value: ` + wasmValue + `}`,
			changes: []string{"[envoy.filters.http.wasm,envoy.router]", "[x,envoy.filters.http.wasm,envoy.router]"}},
		{name: "listener.portNumber matching no listener", patches: `
  - applyTo: HTTP_FILTER
    match: {listener: {portNumber: 444}}
    patch: {operation: INSERT_FIRST, value: ` + wasmValue + `}`},
		{name: "listener.name", patches: `
  - applyTo: NETWORK_FILTER
    match: {listener: {name: out9000}}
    patch: {operation: INSERT_FIRST, value: ` + netValue + `}`,
			changes: []string{"out9000/: envoy.tcp_proxy", "out9000/: nf envoy.tcp_proxy"}},
		{name: "listener.name matching no listener", patches: `
  - applyTo: NETWORK_FILTER
    match: {listener: {name: nope}}
    patch: {operation: INSERT_FIRST, value: ` + netValue + `}`},
		{name: "filterChain.name", patches: `
  - applyTo: HTTP_FILTER
    match: {listener: {filterChain: {name: plain-chain}}}
    patch: {operation: INSERT_FIRST, value: ` + wasmValue + `}`,
			changes: []string{"in8080/plain-chain: envoy.filters.network.http_connection_manager[envoy", "in8080/plain-chain: envoy.filters.network.http_connection_manager[x,envoy"}},
		{name: "filterChain.sni", patches: `
  - applyTo: HTTP_FILTER
    match: {listener: {filterChain: {sni: a.example}}}
    patch: {operation: INSERT_FIRST, value: ` + wasmValue + `}`,
			changes: []string{"in8080/tls-chain: envoy.filters.network.http_connection_manager[envoy", "in8080/tls-chain: envoy.filters.network.http_connection_manager[x,envoy"}},
		{name: "filterChain.sni matching no chain", patches: `
  - applyTo: HTTP_FILTER
    match: {listener: {filterChain: {sni: b.example}}}
    patch: {operation: INSERT_FIRST, value: ` + wasmValue + `}`},
		{name: "filterChain.transportProtocol", patches: `
  - applyTo: HTTP_FILTER
    match: {listener: {filterChain: {transportProtocol: tls}}}
    patch: {operation: INSERT_FIRST, value: ` + wasmValue + `}`,
			changes: []string{"in8080/tls-chain: envoy.filters.network.http_connection_manager[envoy", "in8080/tls-chain: envoy.filters.network.http_connection_manager[x,envoy"}},
		{name: "filterChain.transportProtocol matching no chain", patches: `
  - applyTo: HTTP_FILTER
    match: {listener: {filterChain: {transportProtocol: raw_buffer}}}
    patch: {operation: INSERT_FIRST, value: ` + wasmValue + `}`},
		{name: "filterChain.applicationProtocols (all must be there)", patches: `
  - applyTo: HTTP_FILTER
    match: {listener: {filterChain: {applicationProtocols: "h2,http/1.1"}}}
    patch: {operation: INSERT_FIRST, value: ` + wasmValue + `}`,
			changes: []string{"in8080/tls-chain: envoy.filters.network.http_connection_manager[envoy", "in8080/tls-chain: envoy.filters.network.http_connection_manager[x,envoy"}},
		{name: "filterChain.applicationProtocols with one missing", patches: `
  - applyTo: HTTP_FILTER
    match: {listener: {filterChain: {applicationProtocols: "h2,h3"}}}
    patch: {operation: INSERT_FIRST, value: ` + wasmValue + `}`},
		{name: "filterChain.destinationPort", patches: `
  - applyTo: HTTP_FILTER
    match: {listener: {filterChain: {destinationPort: 8080}}}
    patch: {operation: INSERT_FIRST, value: ` + wasmValue + `}`,
			changes: []string{"in8080/tls-chain: envoy.filters.network.http_connection_manager[envoy", "in8080/tls-chain: envoy.filters.network.http_connection_manager[x,envoy"}},
		{name: "filterChain.destinationPort matching no chain", patches: `
  - applyTo: HTTP_FILTER
    match: {listener: {filterChain: {destinationPort: 8081}}}
    patch: {operation: INSERT_FIRST, value: ` + wasmValue + `}`},
		{name: "NETWORK_FILTER INSERT_BEFORE envoy.tcp_proxy (legacy) in SIDECAR_INBOUND", patches: `
  - applyTo: NETWORK_FILTER
    match: {context: SIDECAR_INBOUND, listener: {portNumber: 8083, filterChain: {filter: {name: envoy.tcp_proxy}}}}
    patch: {operation: INSERT_BEFORE, value: ` + netValue + `}`,
			changes: []string{"in8083/: envoy.filters.network.tcp_proxy", "in8083/: nf envoy.filters.network.tcp_proxy"}},
		{name: "NETWORK_FILTER INSERT_AFTER", patches: `
  - applyTo: NETWORK_FILTER
    match: {context: SIDECAR_INBOUND, listener: {portNumber: 8083, filterChain: {filter: {name: envoy.filters.network.tcp_proxy}}}}
    patch: {operation: INSERT_AFTER, value: ` + netValue + `}`,
			changes: []string{"in8083/: envoy.filters.network.tcp_proxy", "in8083/: envoy.filters.network.tcp_proxy nf"}},
		{name: "NETWORK_FILTER ADD", patches: `
  - applyTo: NETWORK_FILTER
    match: {context: SIDECAR_OUTBOUND}
    patch: {operation: ADD, value: ` + netValue + `}`,
			changes: []string{"out9000/: envoy.tcp_proxy", "out9000/: envoy.tcp_proxy nf"}},
		{name: "NETWORK_FILTER REPLACE", patches: `
  - applyTo: NETWORK_FILTER
    match: {context: SIDECAR_OUTBOUND, listener: {filterChain: {filter: {name: envoy.filters.network.tcp_proxy}}}}
    patch: {operation: REPLACE, value: ` + netValue + `}`,
			changes: []string{"out9000/: envoy.tcp_proxy", "out9000/: nf"}},
		{name: "NETWORK_FILTER REMOVE", patches: `
  - applyTo: NETWORK_FILTER
    match: {context: SIDECAR_INBOUND, listener: {portNumber: 8083, filterChain: {filter: {name: envoy.tcp_proxy}}}}
    patch: {operation: REMOVE}`,
			changes: []string{"in8083/: envoy.filters.network.tcp_proxy", "in8083/:"}},
		{name: "NETWORK_FILTER MERGE into the HTTP connection manager's typed config", patches: `
  - applyTo: NETWORK_FILTER
    match: {context: GATEWAY, listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager}}}}
    patch: {operation: MERGE, value: {typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager, stat_prefix: merged}}}`,
			changes: []string{"envoy.router] vh", "envoy.router]{stat_prefix=merged} vh"}},
		{name: "NETWORK_FILTER: context GATEWAY matches no TCP listener", patches: `
  - applyTo: NETWORK_FILTER
    match: {context: GATEWAY, listener: {filterChain: {filter: {name: envoy.tcp_proxy}}}}
    patch: {operation: INSERT_BEFORE, value: ` + netValue + `}`},
		{name: "FILTER_CHAIN REMOVE", patches: `
  - applyTo: FILTER_CHAIN
    match: {listener: {portNumber: 8080, filterChain: {name: tls-chain}}}
    patch: {operation: REMOVE}`,
			changes: []string{"in8080/tls-chain: envoy.filters.network.http_connection_manager[envoy.filters.http.router]\n", ""}},
		{name: "FILTER_CHAIN ADD", patches: `
  - applyTo: FILTER_CHAIN
    match: {context: SIDECAR_OUTBOUND}
    patch: {operation: ADD, value: {name: added, filters: [` + netValue + `]}}`,
			changes: []string{"out9000/: envoy.tcp_proxy\n", "out9000/: envoy.tcp_proxy\nout9000/added: nf\n"}},
		{name: "FILTER_CHAIN MERGE", patches: `
  - applyTo: FILTER_CHAIN
    match: {context: SIDECAR_OUTBOUND}
    patch: {operation: MERGE, value: {name: merged}}`,
			changes: []string{"out9000/:", "out9000/merged:"}},
		{name: "LISTENER REMOVE", patches: `
  - applyTo: LISTENER
    match: {listener: {name: out9000}}
    patch: {operation: REMOVE}`,
			changes: []string{"out9000/: envoy.tcp_proxy\n", ""}},
		{name: "LISTENER MERGE", patches: `
  - applyTo: LISTENER
    match: {context: SIDECAR_OUTBOUND}
    patch: {operation: MERGE, value: {name: renamed}}`,
			changes: []string{"out9000/:", "renamed/:"}},
		{name: "LISTENER ADD", patches: `
  - applyTo: LISTENER
    patch: {operation: ADD, value: {name: new, address: {socket_address: {address: 127.0.0.1, port_value: 7000}}, filter_chains: [{filters: [` + netValue + `]}]}}`,
			changes: []string{"out9000/: envoy.tcp_proxy\n", "out9000/: envoy.tcp_proxy\nnew/: nf\n"}},
		{name: "ROUTE_CONFIGURATION MERGE by name", patches: `
  - applyTo: ROUTE_CONFIGURATION
    match: {routeConfiguration: {name: gw-routes}}
    patch: {operation: MERGE, value: {virtual_hosts: [{name: vh2, domains: [b]}]}}`,
			changes: []string{"vh vh1(r1,r2)", "vh vh1(r1,r2) vh vh2()"}},
		{name: "ROUTE_CONFIGURATION: portNumber matching no listener", patches: `
  - applyTo: ROUTE_CONFIGURATION
    match: {routeConfiguration: {portNumber: 81}}
    patch: {operation: MERGE, value: {name: x}}`},
		{name: "VIRTUAL_HOST ADD", patches: `
  - applyTo: VIRTUAL_HOST
    match: {context: GATEWAY}
    patch: {operation: ADD, value: {name: vh2, domains: [b]}}`,
			changes: []string{"vh vh1(r1,r2)", "vh vh1(r1,r2) vh vh2()"}},
		{name: "VIRTUAL_HOST REMOVE", patches: `
  - applyTo: VIRTUAL_HOST
    match: {routeConfiguration: {vhost: {name: vh1}}}
    patch: {operation: REMOVE}`,
			changes: []string{" vh vh1(r1,r2)", ""}},
		{name: "HTTP_ROUTE INSERT_BEFORE a named route", patches: `
  - applyTo: HTTP_ROUTE
    match: {routeConfiguration: {vhost: {name: vh1, route: {name: r2}}}}
    patch: {operation: INSERT_BEFORE, value: {name: r0, match: {prefix: /z}, direct_response: {status: 204}}}`,
			changes: []string{"vh1(r1,r2)", "vh1(r1,r0,r2)"}},
		{name: "HTTP_ROUTE INSERT_FIRST", patches: `
  - applyTo: HTTP_ROUTE
    match: {routeConfiguration: {vhost: {name: vh1}}}
    patch: {operation: INSERT_FIRST, value: {name: r0, match: {prefix: /z}, direct_response: {status: 204}}}`,
			changes: []string{"vh1(r1,r2)", "vh1(r0,r1,r2)"}},
		{name: "HTTP_ROUTE REMOVE by action", patches: `
  - applyTo: HTTP_ROUTE
    match: {routeConfiguration: {vhost: {route: {action: DIRECT_RESPONSE}}}}
    patch: {operation: REMOVE}`,
			changes: []string{"vh1(r1,r2)", "vh1(r1)"}},
		{name: "HTTP_ROUTE MERGE", patches: `
  - applyTo: HTTP_ROUTE
    match: {routeConfiguration: {vhost: {route: {name: r1}}}}
    patch: {operation: MERGE, value: {name: r1b}}`,
			changes: []string{"vh1(r1,r2)", "vh1(r1b,r2)"}},
		{name: "HTTP_ROUTE: vhost.name matching no virtual host", patches: `
  - applyTo: HTTP_ROUTE
    match: {routeConfiguration: {vhost: {name: nope}}}
    patch: {operation: INSERT_FIRST, value: {name: r0, match: {prefix: /z}, direct_response: {status: 204}}}`},
		{name: "CLUSTER MERGE by name", patches: `
  - applyTo: CLUSTER
    match: {cluster: {name: web}}
    patch: {operation: MERGE, value: {connect_timeout: 3s}}`,
			changes: []string{"cluster web 1s", "cluster web 3s"}},
		{name: "CLUSTER MERGE by service, port and subset", patches: `
  - applyTo: CLUSTER
    match: {cluster: {service: reviews.default.svc.cluster.local, portNumber: 80, subset: v1}}
    patch: {operation: MERGE, value: {connect_timeout: 2s}}`,
			changes: []string{"reviews.default.svc.cluster.local 1s", "reviews.default.svc.cluster.local 2s"}},
		{name: "CLUSTER REMOVE", patches: `
  - applyTo: CLUSTER
    match: {cluster: {name: web}}
    patch: {operation: REMOVE}`,
			changes: []string{"cluster web 1s\n", ""}},
		{name: "CLUSTER ADD", patches: `
  - applyTo: CLUSTER
    patch: {operation: ADD, value: {name: added, connect_timeout: 4s}}`,
			changes: []string{"svc.cluster.local 1s\n", "svc.cluster.local 1s\ncluster added 4s\n"}},
		{name: "CLUSTER: name matching no cluster", patches: `
  - applyTo: CLUSTER
    match: {cluster: {name: nope}}
    patch: {operation: REMOVE}`},
		{name: "BOOTSTRAP MERGE", patches: `
  - applyTo: BOOTSTRAP
    patch: {operation: MERGE, value: {static_resources: {clusters: [{name: from-bootstrap, connect_timeout: 5s}]}}}`,
			changes: []string{"svc.cluster.local 1s\n", "svc.cluster.local 1s\ncluster from-bootstrap 5s\n"}},
		{name: "proxyVersion matching the declared version", version: "1.5.2", patches: `
  - applyTo: CLUSTER
    match: {proxy: {proxyVersion: '^1\.5.*'}, cluster: {name: web}}
    patch: {operation: REMOVE}`,
			changes: []string{"cluster web 1s\n", ""}},
		{name: "proxyVersion not matching the declared version", patches: `
  - applyTo: CLUSTER
    match: {proxy: {proxyVersion: '^1\.5.*'}, cluster: {name: web}}
    patch: {operation: REMOVE}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			filters, err := loadEF(t, ef("f", tc.patches))
			if err != nil {
				t.Fatal(err)
			}
			pb := decodeBase(t)
			v := tc.version
			if v == "" {
				v = DefaultIstioVersion
			}
			patches, err := ApplyEnvoyFilters(pb, filters, v)
			if err != nil {
				t.Fatal(err)
			}
			want := base
			for i := 0; i+1 < len(tc.changes); i += 2 {
				if !strings.Contains(want, tc.changes[i]) {
					t.Fatalf("base summary has no %q:\n%s", tc.changes[i], base)
				}
				want = strings.Replace(want, tc.changes[i], tc.changes[i+1], -1)
			}
			if got := summary(t, pb); got != want {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
			applied := len(patches[0].Applied) > 0
			if applied != (len(tc.changes) > 0) {
				t.Errorf("Applied %q, Misses %q", patches[0].Applied, patches[0].Misses)
			}
			if !applied && len(patches[0].Misses) == 0 {
				t.Errorf("a patch that matched nothing says no why")
			}
		})
	}
}

// TestEnvoyFilterOrder: patches apply by priority, then the root
// namespace's first, then creation time, then the order read; each INSERT_FIRST puts its filter ahead of the
// earlier ones.
func TestEnvoyFilterOrder(t *testing.T) {
	mk := func(name, extra string) string {
		return "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: " + name + ", namespace: ns" + extra + "}\nspec:\n" +
			"  priority: PRIO\n  configPatches:\n  - applyTo: NETWORK_FILTER\n    match: {context: SIDECAR_OUTBOUND}\n    patch: {operation: INSERT_FIRST, value: {name: " + name + "}}\n"
	}
	doc := strings.Replace(mk("late", ", creationTimestamp: '2024-01-02T00:00:00Z'"), "PRIO", "0", 1) + "---\n" +
		strings.Replace(mk("early", ", creationTimestamp: '2024-01-01T00:00:00Z'"), "PRIO", "0", 1) + "---\n" +
		strings.Replace(strings.Replace(mk("root", ", creationTimestamp: '2024-01-03T00:00:00Z'"), "PRIO", "0", 1), "namespace: ns", "namespace: istio-system", 1) + "---\n" +
		strings.Replace(mk("first", ""), "PRIO", "-5", 1)
	filters, err := loadEF(t, doc)
	if err != nil {
		t.Fatal(err)
	}
	pb := decodeBase(t)
	if _, err := ApplyEnvoyFilters(pb, filters, DefaultIstioVersion); err != nil {
		t.Fatal(err)
	}
	if got := summary(t, pb); !strings.Contains(got, "out9000/: late early root first envoy.tcp_proxy") {
		t.Errorf("order: %s", got)
	}
}

// TestEnvoyFilterLegacyConfig: the second seed's legacy value (filter
// name and a config struct, camelCase or snake_case) becomes the typed
// Wasm config.
func TestEnvoyFilterLegacyConfig(t *testing.T) {
	for _, keys := range [][2]string{{"rootId", "vmConfig"}, {"root_id", "vm_config"}} {
		doc := ef("legacy", `
  - applyTo: NETWORK_FILTER
    match: {context: SIDECAR_INBOUND, listener: {portNumber: 8083, filterChain: {filter: {name: envoy.tcp_proxy}}}}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.network.wasm
        config:
          config:
            name: example-filter
            `+keys[0]+`: my_root_id
            `+keys[1]+`: {vmId: example-filter, runtime: envoy.wasm.runtime.v8, allow_precompiled: true, code: {local: {filename: f.wasm}}}
`)
		filters, err := loadEF(t, doc)
		if err != nil {
			t.Fatal(err)
		}
		pb := decodeBase(t)
		if _, err := ApplyEnvoyFilters(pb, filters, DefaultIstioVersion); err != nil {
			t.Fatal(err)
		}
		f := pb.GetStaticResources().GetListeners()[2].GetFilterChains()[0].GetFilters()[0]
		js, _ := protojson.Marshal(f)
		for _, want := range []string{`"@type":"type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm"`, `"rootId":"my_root_id"`, `"vmId":"example-filter"`, `"allowPrecompiled":true`, `"filename":"f.wasm"`} {
			if !strings.Contains(strings.ReplaceAll(string(js), " ", ""), want) {
				t.Errorf("%v: %s lacks %s", keys, js, want)
			}
		}
	}
}

// TestEnvoyFilterErrors: bad resources are refused with the file, the
// resource, the patch index and the field.
func TestEnvoyFilterErrors(t *testing.T) {
	for _, tc := range []struct{ patches, want string }{
		{`
  - applyTo: HTTP_FILTER
    patch: {operation: INSERT_FIRST, value: {name: x, no_such_field: 1}}`, `EnvoyFilter ns/bad: spec.configPatches[0].patch.value: unknown field "no_such_field"`},
		{`
  - applyTo: CLUSTER
    patch: {operation: MERGE, value: {connect_timeout: 1s}}
  - applyTo: EXTENSION_CONFIG
    patch: {operation: ADD, value: {name: x}}`, `spec.configPatches[1].applyTo: EXTENSION_CONFIG`},
		{`
  - applyTo: CLUSTER
    patch: {operation: INSERT_BEFORE, value: {name: x}}`, `spec.configPatches[0].patch.operation: INSERT_BEFORE does not apply to CLUSTER`},
		{`
  - applyTo: HTTP_FILTER
    patch: {operation: REPLACE, value: {name: x}}`, `spec.configPatches[0].match.listener.filterChain.filter.name: REPLACE needs`},
		{`
  - applyTo: HTTP_FILTER
    patch: {operation: INSERT_FIRST}`, `spec.configPatches[0].patch.value: missing`},
		{`
  - applyTo: HTTP_FILTER
    match: {proxy: {proxyVersion: '('}}
    patch: {operation: REMOVE}`, `spec.configPatches[0].match.proxy.proxyVersion`},
		{`
  - applyTo: HTTP_FILTER
    patch: {operation: ADD, value: {name: envoy.filters.http.lua, config: {}}}`, `spec.configPatches[0].patch.value.config: no typed config known for filter "envoy.filters.http.lua"`},
		{`
  - applyTo: HTTP_FILTER
    match: {cluster: {name: x}}
    patch: {operation: REMOVE}`, `spec.configPatches[0].match.listener`},
	} {
		_, err := loadEF(t, ef("bad", tc.patches))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), filepath.Join("", "ef.yaml")) {
			t.Errorf("error %v, want one naming ef.yaml and %q", err, tc.want)
		}
	}
}

// TestWasmPluginModeFromTrafficDirection: a WasmPlugin's match.mode is
// matched against the listener's traffic_direction as istiod matches it
// against the listener class: SERVER selects sidecar inbound listeners,
// CLIENT outbound and gateway ones, CLIENT_AND_SERVER all.
func TestWasmPluginModeFromTrafficDirection(t *testing.T) {
	for _, tc := range []struct {
		mode             string
		in, out, gateway bool
	}{
		{"SERVER", true, false, false},
		{"CLIENT", false, true, true},
		{"CLIENT_AND_SERVER", true, true, true},
	} {
		doc := seedPlugin + "  match:\n  - mode: " + tc.mode + "\n"
		plugins, err := Load(writeFile(t, t.TempDir(), "p.yaml", doc))
		if err != nil {
			t.Fatal(err)
		}
		p := plugins[0]
		if got := [3]bool{p.Matches(80, "INBOUND"), p.Matches(80, "OUTBOUND"), p.Matches(80, "")}; got != [3]bool{tc.in, tc.out, tc.gateway} {
			t.Errorf("mode %s: inbound/outbound/gateway %v, want %v", tc.mode, got, [3]bool{tc.in, tc.out, tc.gateway})
		}
	}
}

// TestEnvoyFilterPatchedConfigIsBuilt: patches run inside config's
// pipeline (config.ParsePatched), so a patched filter is built like one
// in the file (here a udpa TypedStruct value, as the first seed's Docker
// config writes it), and a patch that breaks the config is refused by
// the config's own checks.
func TestEnvoyFilterPatchedConfigIsBuilt(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "examples", "istio", "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	parse := func(patches string) (*config.Bootstrap, error) {
		filters, err := loadEF(t, ef("p", patches))
		if err != nil {
			t.Fatal(err)
		}
		return config.ParsePatched(data, "envoy.yaml", func(pb *bootstrapv3.Bootstrap) error {
			_, err := ApplyEnvoyFilters(pb, filters, DefaultIstioVersion)
			return err
		})
	}
	b, err := parse(`
  - applyTo: HTTP_FILTER
    match: {context: GATEWAY}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.wasm
        typed_config:
          "@type": type.googleapis.com/udpa.type.v1.TypedStruct
          type_url: type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
          value:
            config:
              vm_config: {runtime: envoy.wasm.runtime.v8, code: {local: {filename: ./x.wasm}}}
`)
	if err != nil {
		t.Fatal(err)
	}
	if w := b.Listeners[0].FilterChains[0].HTTP.Filters[0].Wasm; w == nil || w.CodeFile != "./x.wasm" {
		t.Fatalf("gateway's first HTTP filter: %+v", b.Listeners[0].FilterChains[0].HTTP.Filters[0])
	}
	if !strings.Contains(string(b.RawJSON), "./x.wasm") {
		t.Errorf("the dump is not the patched config")
	}
	_, err = parse(`
  - applyTo: NETWORK_FILTER
    match: {context: SIDECAR_INBOUND, listener: {portNumber: 8083, filterChain: {filter: {name: envoy.tcp_proxy}}}}
    patch: {operation: REMOVE}
`)
	if err == nil || !strings.Contains(err.Error(), "envoy.yaml") || !strings.Contains(err.Error(), "static_resources.listeners[2]") {
		t.Errorf("a chain left without its tcp_proxy: %v", err)
	}
}

// TestLoadResourcesMixed: WasmPlugins and EnvoyFilters are read from the
// same file and directory; other kinds are skipped; a named file with
// neither is refused.
func TestLoadResourcesMixed(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "a.yaml", seedPlugin+"---\n"+ef("one", `
  - applyTo: CLUSTER
    patch: {operation: REMOVE}
`)+"---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\n")
	writeFile(t, dir, "b.json", `{"apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter", "metadata": {"name": "two"}, "spec": {"configPatches": [{"applyTo": "CLUSTER", "patch": {"operation": "REMOVE"}}]}}`)
	r, err := LoadResources(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Plugins) != 1 || len(r.EnvoyFilters) != 2 || r.EnvoyFilters[0].FullName() != "ns/one" || r.EnvoyFilters[1].FullName() != "default/two" {
		t.Fatalf("plugins %d, filters %+v", len(r.Plugins), r.EnvoyFilters)
	}
	other := writeFile(t, t.TempDir(), "c.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n")
	if _, err := LoadResources(other); err == nil || !strings.Contains(err.Error(), "no extensions.istio.io/v1alpha1 WasmPlugin nor networking.istio.io/v1alpha3 EnvoyFilter") {
		t.Errorf("a file with neither: %v", err)
	}
}

// TestWasmPluginPerRouteConfigFromEnvoyFilter: a WasmPlugin gets another
// configuration on a virtual host through an EnvoyFilter VIRTUAL_HOST
// MERGE of typed_per_filter_config under the plugin's filter name
// (<namespace>.<name>), the Istio side of per-route plugin
// configuration (docs/decisions.md §31): the plugin's filter, inserted
// after the config is built, is loaded with that configuration too.
func TestWasmPluginPerRouteConfigFromEnvoyFilter(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "examples", "istio", "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	filters, err := loadEF(t, ef("per-route", `
  - applyTo: VIRTUAL_HOST
    match: {context: GATEWAY, routeConfiguration: {vhost: {name: gateway}}}
    patch:
      operation: MERGE
      value:
        typed_per_filter_config:
          istio-system.json-validation:
            "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig
            is_optional: true
            config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: '{"requiredKeys": ["id"]}'
`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := config.ParsePatched(data, "envoy.yaml", func(pb *bootstrapv3.Bootstrap) error {
		_, err := ApplyEnvoyFilters(pb, filters, DefaultIstioVersion)
		return err
	})
	if err != nil {
		t.Fatalf("a route patch naming a WasmPlugin's filter: %v", err)
	}
	plugins, err := Load(writeFile(t, t.TempDir(), "plugin.yaml", seedPlugin))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(b, plugins); err != nil {
		t.Fatal(err)
	}
	var got *config.WasmPlugin
	for _, l := range b.Listeners {
		for _, c := range l.FilterChains {
			if c.HTTP == nil {
				continue
			}
			for _, f := range c.HTTP.Filters {
				if f.Name == "istio-system.json-validation" && l.Name == "gateway" {
					got = f.Wasm
				}
			}
			if l.Name == "gateway" {
				if left := config.UnattachedWasmRouteConfigs(c.HTTP); len(left) != 0 {
					t.Errorf("entries left unattached on the gateway: %v", left)
				}
			}
		}
	}
	if got == nil {
		t.Fatal("the WasmPlugin is not in the gateway's chain")
	}
	if len(got.RouteConfigurations) != 1 || string(got.RouteConfigurations[0]) != `{"requiredKeys": ["id"]}` {
		t.Errorf("the plugin's per-route configurations: %q, want the virtual host's", got.RouteConfigurations)
	}
}
