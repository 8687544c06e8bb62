package wasmproxy_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"

	wasmproxy "github.com/wasmproxy/wasmproxy"
	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/pluginbuild"
)

// The proxy embedded in a Go program: examples/add-header (built from
// its sources) in front of an upstream, from an Envoy config held in
// memory.
func Example() {
	ctx := context.Background()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "hello from the upstream\n")
	}))
	defer upstream.Close()
	// Compiled once per source version, like the test suites' plugins.
	src, _ := filepath.Abs("examples/add-header")
	sdk, _ := filepath.Abs("sdk")
	plugin, err := pluginbuild.Cached(ctx, filepath.Join(os.TempDir(), "wasmproxy-test-plugins"), src, sdk)
	if err != nil {
		fmt.Println(err)
		return
	}

	_, port, _ := net.SplitHostPort(upstream.Listener.Addr().String())
	cfg, err := config.Parse([]byte(`
static_resources:
  listeners:
  - name: main
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          route_config:
            virtual_hosts:
            - {name: all, domains: ["*"], routes: [{match: {prefix: "/"}, route: {cluster: upstream}}]}
          http_filters:
          - name: add-header
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                vm_config: {runtime: envoy.wasm.runtime.v8, code: {local: {filename: `+plugin+`}}}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: upstream
    type: STATIC
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: `+port+`}}}
`), "example")
	if err != nil {
		fmt.Println(err)
		return
	}

	p, err := wasmproxy.New(ctx, wasmproxy.Options{
		Bootstrap: cfg,
		CacheDir:  filepath.Join(os.TempDir(), "wasmproxy-test-wazero-cache"),
		Logs:      logging.NewRegistry(io.Discard, logging.LevelInfo),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := p.Start(); err != nil {
		fmt.Println(err)
		return
	}
	defer p.Shutdown(ctx)

	resp, err := http.Get("http://" + p.Addr("main") + "/")
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.Status, "/", resp.Header.Get("resp-header-demo"))
	fmt.Print(string(body))

	// The config and plugin again: nothing changed, nothing is swapped.
	st, err := p.Reload(ctx, "example")
	fmt.Println("reload:", st.Changed, err)
	// Output:
	// 200 OK / added by our filter
	// hello from the upstream
	// reload: [] <nil>
}
