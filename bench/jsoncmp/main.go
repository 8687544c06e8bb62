// Command jsoncmp serves the same JSON-validation logic two ways, for
// bench/jsoncmp.sh: as the Wasm plugin examples/json-validation on one
// listener and as a native Go filter (native.go, the same code and JSON
// library) on another, in one proxy in front of one upstream, so that wrk
// can compare "same logic, native vs Wasm" (the 0.9× target of docs/perf.md).
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

	wasmproxy "github.com/wasmproxy/wasmproxy"
	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/logging"
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
	// The library runs both: the Wasm plugin through its loader, the
	// native filter by name (Options.Filters).
	p, err := wasmproxy.New(ctx, wasmproxy.Options{
		Bootstrap: cfg,
		CacheDir:  cacheDir,
		Logs:      logging.NewRegistry(os.Stderr, logging.LevelWarn),
		Filters:   map[string]filter.Factory{"native.json_validation": &nativeJSONValidation{requiredKeys: []string{"id", "token"}}},
	})
	if err != nil {
		return err
	}
	if err := p.Start(); err != nil {
		return err
	}
	log.Printf("native filter on :%d, Wasm plugin on :%d", nativePort, wasmPort)
	<-ctx.Done()
	return p.Shutdown(context.Background())
}
