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
	"sync"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/pluginbuild"
)

// addHeader is examples/add-header, compiled once per source version
// into the cache the other suites share.
func addHeader(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// Absolute paths: the cache key is the other suites'.
	dir, _ := filepath.Abs("examples/add-header")
	sdk, _ := filepath.Abs("sdk")
	p, err := pluginbuild.Cached(ctx, filepath.Join(os.TempDir(), "wasmproxy-test-plugins"), dir, sdk)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// configYAML is a listener running main.wasm (beside the config) and
// routing to the upstream at upstreamPort by prefix, then by "/".
func configYAML(prefix, upstreamPort string) string {
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
            - {name: all, domains: ["*"], routes: [{match: {prefix: %q}, route: {cluster: up}}, {match: {prefix: "/"}, route: {cluster: up}}]}
          http_filters:
          - name: add-header
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                vm_config: {runtime: envoy.wasm.runtime.v8, code: {local: {filename: ./main.wasm}}}
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
`, prefix, upstreamPort)
}

// TestReloadWhileReading reloads, again and again with a change each
// time, while the file poller, the admin API and traffic read the
// running state, so that -race sees every reader against the writer.
// The poller's file list was once read from the server's connection
// managers without the lock a reload writes them under.
func TestReloadWhileReading(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "up") }))
	defer up.Close()
	_, upPort, _ := net.SplitHostPort(up.Listener.Addr().String())
	dir := t.TempDir()
	code, err := os.ReadFile(addHeader(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.wasm"), code, 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "envoy.yaml")
	write := func(prefix string) {
		if err := os.WriteFile(cfgPath, []byte(configYAML(prefix, upPort)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("/")
	ctx := context.Background()
	p, err := New(ctx, Options{
		ConfigPath:   cfgPath,
		CacheDir:     filepath.Join(os.TempDir(), "wasmproxy-test-wazero-cache"),
		Concurrency:  2,
		PollInterval: time.Millisecond, // the poller runs all along
		Logs:         logging.NewRegistry(io.Discard, logging.LevelInfo),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(ctx)
	admin := httptest.NewServer(p.AdminHandler())
	defer admin.Close()
	listener := "http://" + p.Addr("main")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var readErrs sync.Map
	reader := func(name string, read func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := read(); err != nil {
					readErrs.Store(name, err)
				}
			}
		}()
	}
	get := func(url string) (*http.Response, string, error) {
		resp, err := http.Get(url)
		if err != nil {
			return nil, "", err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b), nil
	}
	reader("poller", func() error { p.filesChanged(ctx); return nil })
	for _, path := range []string{"/config_dump", "/listeners", "/clusters", "/reload_status", "/server_info"} {
		reader(path, func() error {
			resp, _, err := get(admin.URL + path)
			if err == nil && resp.StatusCode != 200 {
				err = fmt.Errorf("%s: %s", path, resp.Status)
			}
			return err
		})
	}
	reader("traffic", func() error {
		resp, _, err := get(listener + "/x")
		if err == nil && resp.StatusCode == 200 && resp.Header.Get("resp-header-demo") == "" {
			err = fmt.Errorf("the plugin did not run: %v", resp.Header)
		}
		return err
	})

	const reloads = 10
	last := ""
	for i := range reloads {
		last = fmt.Sprintf("/%d", i)
		write(last)
		var err error
		if i%2 == 0 {
			_, err = p.Reload(ctx, "test")
		} else {
			var resp *http.Response
			var body string
			if resp, err = http.Post(admin.URL+"/reload", "", nil); err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if body = string(b); resp.StatusCode != 200 {
					err = fmt.Errorf("POST /reload: %s %s", resp.Status, body)
				}
			}
		}
		if err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
	}
	close(stop)
	wg.Wait()
	readErrs.Range(func(k, v any) bool {
		t.Errorf("%s: %v", k, v)
		return true
	})

	// The last config runs, through the plugin.
	resp, body, err := get(listener + last + "/y")
	if err != nil || resp.StatusCode != 200 || body != "up" || resp.Header.Get("resp-header-demo") == "" {
		t.Fatalf("after the reloads: %v %v %q", resp, err, body)
	}
	if _, dump, _ := get(admin.URL + "/config_dump"); !strings.Contains(dump, `"`+last+`"`) {
		t.Fatalf("/config_dump is not the last config:\n%s", dump)
	}
}

// TestShutdownEndsReloads: after Shutdown a reload fails at once, saying
// so, and Shutdown again returns the first result.
func TestShutdownEndsReloads(t *testing.T) {
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
            - {name: all, domains: ["*"], routes: [{match: {prefix: "/"}, direct_response: {status: 200}}]}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
`), "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p, err := New(ctx, Options{Bootstrap: cfg, PollInterval: time.Millisecond, Logs: logging.NewRegistry(io.Discard, logging.LevelInfo)})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	if st, err := p.Reload(ctx, "test"); err != nil || len(st.Changed) != 0 || st.Trigger != "test" {
		t.Fatalf("reload of the same model: %+v %v", st, err)
	}
	first := p.Shutdown(ctx)
	if _, err := p.Reload(ctx, "late"); err == nil || !strings.Contains(err.Error(), "shut down") {
		t.Fatalf("reload after Shutdown: %v", err)
	}
	if again := p.Shutdown(ctx); again != first {
		t.Fatalf("Shutdown again: %v, first %v", again, first)
	}
	if _, err := New(ctx, Options{}); err == nil || !strings.Contains(err.Error(), "exactly one of ConfigPath and Bootstrap") {
		t.Fatalf("New without a config: %v", err)
	}
}
