package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/logging"
)

// versionFactory is a filter that stamps x-version on responses; its
// loader records when the server closes it.
type versionFactory struct {
	version string
	loader  *releasingLoader
}

func (v *versionFactory) NewStreamFilter(cb filter.Callbacks) filter.StreamFilter {
	h := &hooks{encodeHeaders: func(_ filter.Callbacks, hm *filter.HeaderMap, _ bool) filter.HeadersStatus {
		hm.Add("x-version", v.version)
		return filter.HeadersContinue
	}}
	return &nativeFilter{cb: cb, hooks: h}
}

// Close records the release (io.Closer: how the server releases a
// factory it replaced).
func (v *versionFactory) Close() error {
	v.loader.mu.Lock()
	defer v.loader.mu.Unlock()
	v.loader.released = append(v.loader.released, v.version)
	return nil
}

// releasingLoader builds versionFactory filters named "v…" and records
// every release.
type releasingLoader struct {
	mu       sync.Mutex
	released []string
}

func (l *releasingLoader) LoadHTTPFilter(_ context.Context, _ string, f *config.HTTPFilter) (filter.Factory, error) {
	if !strings.HasPrefix(f.Name, "v") {
		return nil, fmt.Errorf("filter %q does not load", f.Name)
	}
	return &versionFactory{version: f.Name, loader: l}, nil
}

func (l *releasingLoader) releases() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.released, ",")
}

func filters(names ...string) []*config.HTTPFilter {
	var out []*config.HTTPFilter
	for _, n := range names {
		out = append(out, &config.HTTPFilter{Name: n})
	}
	return out
}

func swapConfig(upstreamAddr, prefix string, names ...string) *config.Bootstrap {
	return &config.Bootstrap{
		Listeners: []*config.Listener{{
			Name: "main", Address: "127.0.0.1:0", PerConnectionBufferLimitBytes: 1 << 20,
			FilterChains: []*config.FilterChain{{HTTP: &config.HTTPConnectionManager{
				StatPrefix: "ingress_http", Codec: config.CodecAuto, MaxRequestHeadersKB: 60,
				Routes: &config.RouteConfig{Name: "local", VirtualHosts: []*config.VirtualHost{
					{Name: "vh", Domains: []string{"*"}, Routes: []*config.Route{prefixRoute(prefix, "up")}},
				}},
				Filters: append(filters(names...), &config.HTTPFilter{Name: "router", Router: true}),
			}}},
		}},
		Clusters: []*config.Cluster{staticCluster("up", upstreamAddr)},
	}
}

// TestPlanReload: filter, route and cluster changes are planned on the
// listener kept; anything else in a listener replaces it; unchanged
// filters plan nothing. Diff plans from the running model.
func TestPlanReload(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, _ *http.Request) {})
	srv, err := New(context.Background(), swapConfig(up, "/", "v1"), Options{Logs: logging.NewRegistry(io.Discard, logging.LevelInfo), Loader: &releasingLoader{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	moved := swapConfig(up, "/", "v1")
	moved.Listeners[0].PerConnectionBufferLimitBytes = 1024
	added := swapConfig(up, "/", "v1")
	added.Listeners = append(added.Listeners, &config.Listener{Name: "extra", Address: "127.0.0.1:0", FilterChains: added.Listeners[0].FilterChains})
	added.Clusters = append(added.Clusters, staticCluster("more", up))
	tests := []struct {
		name string
		cfg  *config.Bootstrap
		want string
	}{
		{"unchanged", swapConfig(up, "/", "v1"), ""},
		{"filter changed", swapConfig(up, "/", "v2"), "main/0"},
		{"filter added", swapConfig(up, "/", "v1", "v2"), "main/0"},
		{"route changed", swapConfig(up, "/api", "v1"), "routes main/0"},
		{"cluster changed", swapConfig("127.0.0.1:1", "/", "v1"), "cluster~ up"},
		{"listener changed", moved, "listener~ main"},
		{"listener and cluster added", added, "cluster+ more,listener+ extra"},
		{"everything removed", &config.Bootstrap{}, "cluster- up,listener- main"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := Diff(srv.cfg, tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(plan.Summary(), ","); got != tc.want {
				t.Fatalf("plan %q, want %q", got, tc.want)
			}
		})
	}
}

// TestDiffComparesCode: Diff is a pure function of two models; a
// plugin's code is compared by its digest when it has one (a rebuilt
// module on an HTTP filter swaps the filters, on a network filter
// replaces the listener) and its bytes are then never compared; without
// a digest the plugin is compared as written.
func TestDiffComparesCode(t *testing.T) {
	plugin := func(code, digest string) *config.WasmPlugin {
		return &config.WasmPlugin{Name: "p", CodeFile: "/plugins/p.wasm", Code: []byte(code), CodeDigest: digest}
	}
	model := func(http, network *config.WasmPlugin) *config.Bootstrap {
		cfg := swapConfig("127.0.0.1:1", "/", "v1")
		hcm := cfg.Listeners[0].FilterChains[0].HTTP
		hcm.Filters = append([]*config.HTTPFilter{{Name: "wasm", Wasm: http}}, hcm.Filters...)
		cfg.Listeners = append(cfg.Listeners, &config.Listener{Name: "tcp", Address: "127.0.0.1:0", FilterChains: []*config.FilterChain{{
			NetworkFilters: []*config.NetworkFilter{{Name: "net", Wasm: network}},
			TCPProxy:       &config.TCPProxy{StatPrefix: "tcp", Cluster: "up"},
		}}})
		return cfg
	}
	running := model(plugin("one", "d1"), plugin("one", "d1"))
	tests := []struct {
		name string
		next *config.Bootstrap
		want string
	}{
		{"same digests", model(plugin("one", "d1"), plugin("one", "d1")), ""},
		{"same digests, bytes not compared", model(plugin("other", "d1"), plugin("other", "d1")), ""},
		{"HTTP plugin rebuilt", model(plugin("two", "d2"), plugin("one", "d1")), "main/0"},
		{"network plugin rebuilt", model(plugin("one", "d1"), plugin("two", "d2")), "listener~ tcp"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := json.Marshal(running)
			plan, err := Diff(running, tc.next)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(plan.Summary(), ","); got != tc.want {
				t.Fatalf("plan %q, want %q", got, tc.want)
			}
			if after, _ := json.Marshal(running); string(after) != string(before) {
				t.Fatal("Diff changed the running model")
			}
		})
	}
	t.Run("no digests: compared as written", func(t *testing.T) {
		plan, err := Diff(model(plugin("one", ""), plugin("one", "")), model(plugin("two", ""), plugin("two", "")))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(plan.Summary(), ","); got != "main/0,listener~ tcp" {
			t.Fatalf("plan %q", got)
		}
	})
}

// TestReloadAfterShutdown: once Shutdown has begun, Reload refuses with
// ErrShuttingDown, which the Proxy tells apart from a failed reload.
func TestReloadAfterShutdown(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, _ *http.Request) {})
	srv, err := New(context.Background(), swapConfig(up, "/", "v1"), Options{Logs: logging.NewRegistry(io.Discard, logging.LevelInfo), Loader: &releasingLoader{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Reload(context.Background(), swapConfig(up, "/", "v2")); !errors.Is(err, ErrShuttingDown) {
		t.Errorf("Reload after Shutdown: %v, want ErrShuttingDown", err)
	}
}
