package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/stats"
)

// versionFactory is a filter that stamps x-version on responses.
type versionFactory struct{ version string }

func (v *versionFactory) NewStreamFilter(cb filter.Callbacks) filter.StreamFilter {
	h := &hooks{encodeHeaders: func(_ filter.Callbacks, hm *filter.HeaderMap, _ bool) filter.HeadersStatus {
		hm.Add("x-version", v.version)
		return filter.HeadersContinue
	}}
	return &nativeFilter{cb: cb, hooks: h}
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
	return &versionFactory{version: f.Name}, nil
}

func (l *releasingLoader) ReleaseFilter(_ context.Context, f filter.Factory) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.released = append(l.released, f.(*versionFactory).version)
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

// TestSwapHTTPFilters: after a swap new streams run the new filters, a
// stream in flight finishes on the old ones, the old factories are
// released exactly once when it ends, the connection survives, and a
// swap whose filters fail to load changes nothing.
func TestSwapHTTPFilters(t *testing.T) {
	slow := make(chan struct{})
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-slow
		}
		io.WriteString(w, "ok")
	})
	l := &releasingLoader{}
	srv, err := New(context.Background(), swapConfig(up, "/", "v1"), Options{Logs: logging.NewRegistry(io.Discard, logging.LevelInfo), Stats: stats.New(), Loader: l})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	base := "http://" + srv.Addr("main")
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 2}}
	version := func(path string) string {
		resp, err := client.Get(base + path)
		if err != nil {
			t.Error(err)
			return ""
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.Header.Get("x-version")
	}
	if v := version("/"); v != "v1" {
		t.Fatalf("before: %q", v)
	}

	inFlight := make(chan string)
	go func() { inFlight <- version("/slow") }()
	time.Sleep(100 * time.Millisecond) // the slow stream has started on v1

	res, err := srv.SwapHTTPFilters(context.Background(), []HTTPFilterSwap{{Listener: "main", Chain: 0, Filters: filters("v2")}})
	if err != nil {
		t.Fatal(err)
	}
	if v := version("/"); v != "v2" {
		t.Fatalf("new stream after the swap: %q", v)
	}
	select {
	case <-res.Released:
		t.Fatal("v1 released while a stream still uses it")
	case <-time.After(50 * time.Millisecond):
	}
	close(slow)
	if v := <-inFlight; v != "v1" {
		t.Fatalf("in-flight stream answered by %q, want v1", v)
	}
	select {
	case <-res.Released:
	case <-time.After(5 * time.Second):
		t.Fatal("v1 never released")
	}
	if got := l.releases(); got != "v1" {
		t.Fatalf("released %q, want v1 once", got)
	}

	if _, err := srv.SwapHTTPFilters(context.Background(), []HTTPFilterSwap{{Listener: "main", Filters: filters("v3", "broken")}}); err == nil || !strings.Contains(err.Error(), `"broken" does not load`) {
		t.Fatalf("broken swap: %v", err)
	}
	if got := l.releases(); got != "v1,v3" {
		t.Fatalf("after the failed swap released %q, want v1,v3 (the half-built set)", got)
	}
	if v := version("/"); v != "v2" {
		t.Fatalf("after a failed swap: %q", v)
	}
}

// TestPlanReload: filter, route and cluster changes are planned on the
// listener kept; anything else in a listener replaces it; unchanged
// filters plan nothing.
func TestPlanReload(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, _ *http.Request) {})
	srv, err := New(context.Background(), swapConfig(up, "/", "v1"), Options{Logs: logging.NewRegistry(io.Discard, logging.LevelInfo), Loader: &releasingLoader{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	byName := func(a, b *config.HTTPFilter) bool { return a.Name == b.Name }
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
			plan, err := srv.PlanReload(tc.cfg, byName)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(plan.Summary(), ","); got != tc.want {
				t.Fatalf("plan %q, want %q", got, tc.want)
			}
		})
	}
}
