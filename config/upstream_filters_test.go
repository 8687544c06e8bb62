package config

import (
	"strings"
	"testing"
)

// upstreamFiltersYAML is a bootstrap whose cluster has the given
// HttpProtocolOptions.http_filters (YAML list items, indented for it).
func upstreamFiltersYAML(filters string) string {
	return `static_resources:
  listeners:
  - name: main
    address: {socket_address: {address: 127.0.0.1, port_value: 10000}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          route_config:
            virtual_hosts:
            - {name: all, domains: ["*"], routes: [{match: {prefix: "/"}, route: {cluster: up}}]}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
  - name: up
    type: STATIC
    load_assignment:
      cluster_name: up
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 8080}}}}]}]
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http_protocol_options: {}}
        http_filters:
` + filters
}

const (
	codecFilter = `        - name: envoy.filters.http.upstream_codec
          typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec}
`
	wasmFilter2 = `        - name: upstream-wasm-2
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
            config:
              name: upstream-wasm-2
              vm_config: {runtime: envoy.wasm.runtime.v8, code: {local: {inline_bytes: AGFzbQEAAAA=}}}
`
	wasmFilter = `        - name: upstream-wasm
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
            config:
              name: upstream-wasm
              vm_config: {runtime: envoy.wasm.runtime.v8, code: {local: {inline_bytes: AGFzbQEAAAA=}}}
`
)

// TestUpstreamHTTPFilters: a cluster's upstream http_filters are read
// in order without their terminal upstream_codec, and what Envoy
// refuses (no codec last, the codec elsewhere, filters that are not
// upstream filters) is refused naming the entry's path. Native filters
// (not linked into this package's tests) are tested in the module root's
// upstream_filters_test.go.
func TestUpstreamHTTPFilters(t *testing.T) {
	const path = `static_resources.clusters[0].typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].http_filters`
	tests := []struct {
		name      string
		filters   string
		wantNames []string
		wantErr   string
	}{
		{name: "two wasm filters", filters: wasmFilter + wasmFilter2 + codecFilter, wantNames: []string{"upstream-wasm", "upstream-wasm-2"}},
		{name: "codec only", filters: codecFilter},
		{name: "codec by name", filters: wasmFilter + "        - name: envoy.filters.http.upstream_codec\n", wantNames: []string{"upstream-wasm"}},
		{name: "no codec", filters: wasmFilter, wantErr: path + "[0]: the upstream HTTP filter chain must end with envoy.filters.http.upstream_codec"},
		{name: "codec not last", filters: codecFilter + wasmFilter, wantErr: path + "[0]: the terminal filter envoy.filters.http.upstream_codec must be the last"},
		{name: "router", filters: `        - name: envoy.filters.http.router
          typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
` + codecFilter, wantErr: path + "[0]: envoy.filters.http.router is not an upstream filter"},
		{name: "disabled", filters: strings.Replace(wasmFilter, "typed_config:", "disabled: true\n          typed_config:", 1) + codecFilter, wantErr: "not supported yet: " + path + "[0].disabled"},
		{name: "bad wasm config", filters: `        - name: upstream-wasm
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
            config: {name: upstream-wasm}
` + codecFilter, wantErr: path + "[0].typed_config.config.vm_config: missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Parse([]byte(upstreamFiltersYAML(tt.filters)), "envoy.yaml")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, f := range b.Clusters[0].UpstreamHTTPFilters {
				names = append(names, f.Name)
			}
			if strings.Join(names, ",") != strings.Join(tt.wantNames, ",") {
				t.Errorf("upstream filters %q, want %q", names, tt.wantNames)
			}
		})
	}
}
