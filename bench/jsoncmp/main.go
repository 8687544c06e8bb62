// Command jsoncmp serves the same JSON-validation logic two ways, for
// bench/jsoncmp.sh: as the Wasm plugin examples/json-validation on one
// listener and as a native Go filter (native.go, the same code and JSON
// library) on another, in one proxy in front of one upstream, so that wrk
// can compare "same logic, native vs Wasm" (DESIGN.md's 0.9× target).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/proxy"
	"github.com/wasmproxy/wasmproxy/stats"
	"github.com/wasmproxy/wasmproxy/wasm"
)

func main() {
	wasmFile := flag.String("wasm", "json-validation.wasm", "the compiled examples/json-validation")
	upstream := flag.String("upstream", "127.0.0.1:28099", "the upstream server")
	nativePort := flag.Int("native-port", 28011, "listener with the native filter")
	wasmPort := flag.Int("wasm-port", 28012, "listener with the Wasm plugin")
	cacheDir := flag.String("cache-dir", "", "wazero compilation cache")
	pprofAddr := flag.String("pprof", "", "serve net/http/pprof on this address (e.g. 127.0.0.1:6060)")
	flag.Parse()
	if *pprofAddr != "" {
		go func() { log.Println(http.ListenAndServe(*pprofAddr, nil)) }()
	}
	if err := run(*wasmFile, *upstream, *nativePort, *wasmPort, *cacheDir); err != nil {
		fmt.Fprintln(os.Stderr, "jsoncmp:", err)
		os.Exit(1)
	}
}

const pluginConfig = `{"requiredKeys": ["id", "token"]}`

func run(wasmFile, upstream string, nativePort, wasmPort int, cacheDir string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logs := logging.NewRegistry(os.Stderr, logging.LevelWarn)
	st := stats.New()
	host, err := wasm.NewHost(ctx, wasm.Options{CacheDir: cacheDir, Logs: logs, Stats: st})
	if err != nil {
		return err
	}
	defer host.Close(context.Background())

	listener := func(name string, port int, f *config.HTTPFilter) *config.Listener {
		return &config.Listener{
			Name: name, Address: fmt.Sprintf("127.0.0.1:%d", port), PerConnectionBufferLimitBytes: 1 << 20,
			FilterChains: []*config.FilterChain{{HTTP: &config.HTTPConnectionManager{
				StatPrefix: name, Codec: config.CodecAuto, MaxRequestHeadersKB: 60,
				Routes: &config.RouteConfig{Name: "local", VirtualHosts: []*config.VirtualHost{{
					Name: "all", Domains: []string{"*"},
					Routes: []*config.Route{{Match: config.RouteMatch{Prefix: "/", CaseSensitive: true}, Cluster: "web", Timeout: config.Duration(15 * time.Second)}},
				}}},
				Filters: []*config.HTTPFilter{f, {Name: "envoy.filters.http.router", Router: true}},
			}}},
		}
	}
	cfg := &config.Bootstrap{
		Listeners: []*config.Listener{
			listener("native", nativePort, &config.HTTPFilter{Name: "native.json_validation"}),
			listener("wasm", wasmPort, &config.HTTPFilter{Name: "envoy.filters.http.wasm", Wasm: &config.WasmPlugin{
				Name: "json_validation", CodeFile: wasmFile, PluginConfiguration: []byte(pluginConfig),
			}}),
		},
		Clusters: []*config.Cluster{{
			Name: "web", Type: config.ClusterStatic, LBPolicy: config.LBRoundRobin, ConnectTimeout: config.Duration(time.Second),
			Endpoints: []config.Endpoint{{Address: upstream}},
		}},
	}
	srv, err := proxy.New(ctx, cfg, proxy.Options{Logs: logs, Stats: st, Loader: loader{host}})
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	log.Printf("native filter on :%d, Wasm plugin on :%d", nativePort, wasmPort)
	<-ctx.Done()
	return srv.Shutdown(context.Background())
}

// loader gives the proxy the native filter by name and Wasm plugins
// through the host.
type loader struct{ host *wasm.Host }

func (l loader) LoadHTTPFilter(ctx context.Context, _ string, f *config.HTTPFilter) (filter.Factory, error) {
	if f.Wasm != nil {
		return l.host.LoadPlugin(ctx, f.Wasm)
	}
	if f.Name == "native.json_validation" {
		return &nativeJSONValidation{requiredKeys: []string{"id", "token"}}, nil
	}
	return nil, fmt.Errorf("unknown filter %q", f.Name)
}
