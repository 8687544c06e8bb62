package wasmproxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/wasmproxy/wasmproxy/logging"
)

// TestClustersHostCxTotal: /clusters' per-host cx_total counts the
// connections made to the host, so it agrees with the cluster's
// upstream_cx_total in /stats (it was always 0). The upstream closes
// every connection, so each request dials anew.
func TestClustersHostCxTotal(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "up")
	}))
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
	if err := os.WriteFile(cfgPath, []byte(configYAML("/", upPort)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p, err := New(ctx, Options{ConfigPath: cfgPath, Logs: logging.NewRegistry(io.Discard, logging.LevelInfo)})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(ctx)
	admin := httptest.NewServer(p.AdminHandler())
	defer admin.Close()

	get := func(url string) string {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %s %s", url, resp.Status, b)
		}
		return string(b)
	}
	const requests = 3
	for range requests {
		get("http://" + p.Addr("main") + "/x")
	}
	stats := get(admin.URL + "/stats?filter=^cluster.up.upstream_cx_total$")
	m := regexp.MustCompile(`cluster\.up\.upstream_cx_total: (\d+)`).FindStringSubmatch(stats)
	if m == nil || m[1] == "0" {
		t.Fatalf("/stats: %q", stats)
	}
	clusters := get(admin.URL + "/clusters")
	want := fmt.Sprintf("up::127.0.0.1:%s::cx_total::%s\n", upPort, m[1])
	if !regexp.MustCompile(regexp.QuoteMeta(want)).MatchString(clusters) {
		t.Errorf("/clusters lacks %q (upstream_cx_total is %s):\n%s", want, m[1], clusters)
	}
}

// TestClustersCircuitBreakerThresholds: /clusters prints the cluster's
// configured DEFAULT thresholds, as Envoy prints them from the
// cluster's circuit breakers (they showed Envoy's defaults whatever the
// config said); an unset threshold and the HIGH priority keep the
// defaults. The JSON form carries the same values.
func TestClustersCircuitBreakerThresholds(t *testing.T) {
	cfg := `static_resources:
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
            - {name: all, domains: ["*"], routes: [{match: {prefix: "/"}, route: {cluster: limited}}]}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: limited
    circuit_breakers:
      thresholds:
      - {max_connections: 7, max_pending_requests: 11, max_retries: 2}
    load_assignment:
      cluster_name: limited
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 9}}}
  - name: plain
    load_assignment:
      cluster_name: plain
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 9}}}
`
	p := startXDSProxy(t, cfg) // xds_test.go: the shared start from a config
	text := adminGet(t, p, "/clusters")
	for _, want := range []string{
		"limited::default_priority::max_connections::7\n",
		"limited::default_priority::max_pending_requests::11\n",
		"limited::default_priority::max_requests::1024\n",
		"limited::default_priority::max_retries::2\n",
		"limited::high_priority::max_connections::1024\n",
		"limited::high_priority::max_retries::3\n",
		"plain::default_priority::max_connections::1024\n",
		"plain::default_priority::max_retries::3\n",
	} {
		if !regexp.MustCompile(regexp.QuoteMeta(want)).MatchString(text) {
			t.Errorf("/clusters lacks %q:\n%s", want, text)
		}
	}
	var doc struct {
		ClusterStatuses []struct {
			Name            string `json:"name"`
			CircuitBreakers struct {
				Thresholds []map[string]any `json:"thresholds"`
			} `json:"circuit_breakers"`
		} `json:"cluster_statuses"`
	}
	js := adminGet(t, p, "/clusters?format=json")
	if err := json.Unmarshal([]byte(js), &doc); err != nil {
		t.Fatal(err, js)
	}
	got := ""
	for _, c := range doc.ClusterStatuses {
		if c.Name == "limited" && len(c.CircuitBreakers.Thresholds) > 0 {
			b, _ := json.Marshal(c.CircuitBreakers.Thresholds[0])
			got = string(b)
		}
	}
	if want := `{"max_connections":7,"max_pending_requests":11,"max_requests":1024,"max_retries":2}`; got != want {
		t.Errorf("/clusters?format=json: limited's DEFAULT thresholds %s, want %s:\n%s", got, want, js)
	}
}
