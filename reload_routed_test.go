package wasmproxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/pluginbuild"
)

// routedConfigYAML is a listener whose Wasm filter (rootstate.wasm, its
// own configuration "base") has a per-route configuration on each route
// of perRoute (prefix → configuration); every route goes to the upstream
// at port.
func routedConfigYAML(port string, perRoute [][2]string) string {
	var routes strings.Builder
	for _, r := range perRoute {
		fmt.Fprintf(&routes, `
              - match: {prefix: %q}
                route: {cluster: up}
                typed_per_filter_config:
                  state:
                    "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig
                    is_optional: true
                    config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
                      config: {configuration: {"@type": type.googleapis.com/google.protobuf.StringValue, value: %q}}`, r[0], r[1])
	}
	return fmt.Sprintf(`static_resources:
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
            - name: all
              domains: ["*"]
              routes:%s
              - match: {prefix: "/"}
                route: {cluster: up}
          http_filters:
          - name: state
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                configuration: {"@type": type.googleapis.com/google.protobuf.StringValue, value: base}
                vm_config: {runtime: envoy.wasm.runtime.v8, code: {local: {filename: ./rootstate.wasm}}}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: up
    type: STATIC
    load_assignment:
      cluster_name: up
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %s}}}
`, routes.String(), port)
}

// TestReloadKeepsUnchangedRootContexts: a reload that changes one
// route's plugin configuration and removes another's rebuilds only
// those root contexts. The unchanged ones (a route's and the filter's
// own) keep their state and are not configured again; the changed route
// gets a new root context with its new configuration; a stream that
// began before the reload ends on the root context it began on; the
// root contexts that left the config are finished (proxy_on_done) only
// after that stream, and the kept ones never.
func TestReloadKeepsUnchangedRootContexts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dirAbs, _ := filepath.Abs("testdata/rootstate")
	sdk, _ := filepath.Abs("sdk")
	wasmPath, err := pluginbuild.Cached(ctx, filepath.Join(os.TempDir(), "wasmproxy-test-plugins"), dirAbs, sdk)
	if err != nil {
		t.Fatal(err)
	}

	arrived, release := make(chan struct{}), make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/hold") {
			close(arrived)
			<-release
		}
		io.WriteString(w, "up")
	}))
	defer up.Close()
	_, upPort, _ := net.SplitHostPort(up.Listener.Addr().String())

	dir := t.TempDir()
	code, err := os.ReadFile(wasmPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rootstate.wasm"), code, 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "envoy.yaml")
	write := func(perRoute ...[2]string) {
		if err := os.WriteFile(cfgPath, []byte(routedConfigYAML(upPort, perRoute)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write([2]string{"/keep", "keep"}, [2]string{"/change", "old"}, [2]string{"/drop", "drop"})
	p, err := New(ctx, Options{
		ConfigPath:  cfgPath,
		CacheDir:    filepath.Join(os.TempDir(), "wasmproxy-test-wazero-cache"),
		Concurrency: 1, // one instance: a root context's counters see every stream
		Logs:        logging.NewRegistry(io.Discard, logging.LevelInfo),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	base := "http://" + p.Addr("main")
	client := &http.Client{Timeout: 30 * time.Second}

	// state is what the root context that served path reports.
	type state struct{ config, stream, configured, done string }
	get := func(path string) state {
		t.Helper()
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %s", path, resp.Status)
		}
		h := resp.Header
		return state{h.Get("x-config"), h.Get("x-stream"), h.Get("x-configured"), h.Get("x-done")}
	}
	check := func(when string, cases []struct {
		path string
		want state
	}) {
		t.Helper()
		for _, c := range cases {
			if got := get(c.path); got != c.want {
				t.Errorf("%s: GET %s: %+v, want %+v", when, c.path, got, c.want)
			}
		}
	}
	type tc = struct {
		path string
		want state
	}
	check("before the reload", []tc{
		{"/keep", state{"keep", "1", "1", ""}},
		{"/keep", state{"keep", "2", "1", ""}},
		{"/change", state{"old", "1", "1", ""}},
		{"/drop", state{"drop", "1", "1", ""}},
		{"/", state{"base", "1", "1", ""}},
	})

	// A stream on the configuration that changes, in flight across the
	// reload.
	held := make(chan state, 1)
	go func() {
		resp, err := client.Get(base + "/change/hold")
		if err != nil {
			held <- state{config: "error: " + err.Error()}
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		h := resp.Header
		held <- state{h.Get("x-config"), h.Get("x-stream"), h.Get("x-configured"), h.Get("x-done")}
	}()
	select {
	case <-arrived:
	case <-ctx.Done():
		t.Fatal("the held request never reached the upstream")
	}

	write([2]string{"/keep", "keep"}, [2]string{"/change", "new"})
	st, err := p.Reload(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Changed) == 0 {
		t.Fatalf("reload changed nothing: %+v", st)
	}
	check("after the reload", []tc{
		{"/keep", state{"keep", "3", "1", ""}},  // the same root context, configured once
		{"/", state{"base", "2", "1", ""}},      // the filter's own, kept too
		{"/change", state{"new", "1", "1", ""}}, // a new root context
		{"/drop", state{"base", "3", "1", ""}},  // no per-route configuration any more
	})

	close(release)
	if got, want := <-held, (state{"old", "2", "1", ""}); got != want {
		t.Errorf("the stream in flight across the reload: %+v, want %+v", got, want)
	}
	// Once that stream has ended, the old generation is released and the
	// root contexts only it used are finished.
	deadline := time.Now().Add(30 * time.Second)
	var done string
	for {
		s := get("/keep")
		if s.config != "keep" || s.configured != "1" {
			t.Fatalf("the kept root context changed: %+v", s)
		}
		if done = s.done; len(strings.Split(done, ",")) >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	got := strings.Split(done, ",")
	if len(got) != 2 || !(got[0] == "old" && got[1] == "drop" || got[0] == "drop" && got[1] == "old") {
		t.Errorf("finished root contexts: %q, want old and drop", done)
	}
}
