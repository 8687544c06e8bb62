package config

import (
	"reflect"
	"testing"
)

// capability_restriction_config is accepted and its allow-list carried to
// the plugin model (Envoy's stub behaviour is the host's job).
func TestCapabilityRestrictionConfig(t *testing.T) {
	const y = `
static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: /}
                direct_response: {status: 200}
          http_filters:
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: p
                capability_restriction_config:
                  allowed_capabilities:
                    proxy_log: {}
                    fd_write: {}
                vm_config:
                  code: {local: {inline_bytes: AGFzbQEAAAA=}}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
`
	b, err := Parse([]byte(y), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	walkWasm(b, func(w *WasmPlugin) { got = w.AllowedCapabilities })
	if want := []string{"fd_write", "proxy_log"}; !reflect.DeepEqual(got, want) {
		t.Errorf("AllowedCapabilities = %v, want %v", got, want)
	}
}

// walkWasm finds every Wasm plugin of the model by reflection, so the
// test does not depend on the listener layout.
func walkWasm(v any, fn func(*WasmPlugin)) {
	var walk func(reflect.Value)
	seen := map[uintptr]bool{}
	walk = func(rv reflect.Value) {
		switch rv.Kind() {
		case reflect.Pointer:
			if rv.IsNil() || seen[rv.Pointer()] {
				return
			}
			seen[rv.Pointer()] = true
			if w, ok := rv.Interface().(*WasmPlugin); ok {
				fn(w)
				return
			}
			walk(rv.Elem())
		case reflect.Struct:
			for i := 0; i < rv.NumField(); i++ {
				if rv.Type().Field(i).IsExported() {
					walk(rv.Field(i))
				}
			}
		case reflect.Slice:
			for i := 0; i < rv.Len(); i++ {
				walk(rv.Index(i))
			}
		}
	}
	walk(reflect.ValueOf(v))
}
