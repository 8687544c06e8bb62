package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
)

// These tests run Go SDK plugins from e2e/testdata through the real
// binary: Wasm services (bootstrap_extensions), plugin metrics with
// stats_tags, plugin log prefixes, allow_on_headers_stop_iteration,
// route/cluster metadata, and the SDK's gRPC API against grpc-go.

// proxyConfig is an Envoy bootstrap with one listener in front of cluster
// "backend". Placeholders: {{LISTEN}}, {{ADMIN}}, {{UPSTREAM}} (ports),
// {{FILTERS}} (HTTP filters before the router), {{ROUTES}} (the virtual
// host's routes), {{CLUSTERS}} (more clusters), {{TOP}} (more top-level
// fields).
const proxyConfig = `admin:
  address: {socket_address: {address: 127.0.0.1, port_value: {{ADMIN}}}}
static_resources:
  listeners:
    - name: main
      address: {socket_address: {address: 127.0.0.1, port_value: {{LISTEN}}}}
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: ingress_http
                route_config:
                  virtual_hosts:
                    - name: backend
                      domains: ["*"]
                      routes:
{{ROUTES}}
                http_filters:
{{FILTERS}}
                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
    - name: backend
      load_assignment:
        cluster_name: backend
        endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: {{UPSTREAM}}}}}}]}]
{{CLUSTERS}}
{{TOP}}
`

const defaultRoutes = `                        - match: {prefix: "/"}
                          route: {cluster: backend}`

// wasmFilter is one envoy.filters.http.wasm entry; extra holds more
// PluginConfig fields, one per line, without indentation.
func wasmFilter(name, rootID, vmID, code, configuration string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "                  - name: envoy.filters.http.wasm\n")
	fmt.Fprintf(&b, "                    typed_config:\n")
	fmt.Fprintf(&b, "                      \"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm\n")
	fmt.Fprintf(&b, "                      config:\n")
	fmt.Fprintf(&b, "                        name: %q\n", name)
	fmt.Fprintf(&b, "                        root_id: %q\n", rootID)
	if configuration != "" {
		fmt.Fprintf(&b, "                        configuration: {\"@type\": type.googleapis.com/google.protobuf.StringValue, value: %q}\n", configuration)
	}
	for _, e := range extra {
		fmt.Fprintf(&b, "                        %s\n", e)
	}
	fmt.Fprintf(&b, "                        vm_config:\n")
	fmt.Fprintf(&b, "                          vm_id: %q\n", vmID)
	fmt.Fprintf(&b, "                          code: {local: {filename: %q}}", code)
	return b.String()
}

// proxySetup writes the config into a fresh directory with free ports
// and returns it with the listener and admin addresses.
func proxySetup(t *testing.T, upstreamPort int, fill map[string]string) (dir, listen, admin string) {
	t.Helper()
	dir = t.TempDir()
	lp, ap := freePort(t), freePort(t)
	repl := []string{
		"{{LISTEN}}", strconv.Itoa(lp), "{{ADMIN}}", strconv.Itoa(ap), "{{UPSTREAM}}", strconv.Itoa(upstreamPort),
		"{{ROUTES}}", defaultRoutes, "{{FILTERS}}", "", "{{CLUSTERS}}", "", "{{TOP}}", "",
	}
	for k, v := range fill {
		for i := 0; i < len(repl); i += 2 {
			if repl[i] == k {
				repl[i+1] = v
			}
		}
	}
	cfg := strings.NewReplacer(repl...).Replace(proxyConfig)
	if err := os.WriteFile(filepath.Join(dir, "envoy.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, fmt.Sprintf("127.0.0.1:%d", lp), fmt.Sprintf("127.0.0.1:%d", ap)
}

// echoUpstream answers /ping with "pong" and anything else with the
// request body, echoing each X- request header as X-Seen-<name>. It
// records the paths it served.
type echoUpstream struct {
	port  int
	mu    sync.Mutex
	paths []string
}

func startEchoUpstream(t *testing.T) *echoUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &echoUpstream{port: ln.Addr().(*net.TCPAddr).Port}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.paths = append(u.paths, r.URL.Path)
		u.mu.Unlock()
		if r.URL.Path == "/ping" {
			io.WriteString(w, "pong")
			return
		}
		for k, vs := range r.Header {
			if strings.HasPrefix(k, "X-") {
				w.Header()["X-Seen-"+k[2:]] = vs
			}
		}
		io.Copy(w, r.Body)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return u
}

func (u *echoUpstream) served(path string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, p := range u.paths {
		if p == path {
			return true
		}
	}
	return false
}

// eventually retries check until it reports true or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, check func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := check()
		if ok {
			return
		}
		last = state
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not reached within %v; last: %s", what, timeout, last)
}

func httpGet(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// pluginLogLines returns every "wasm log" line the process printed,
// from "wasm log" on: Envoy's "[time][thread][level][wasm] wasm log ...".
func pluginLogLines(in *instance) []string {
	var out []string
	for _, line := range strings.Split(in.Logs(), "\n") {
		if _, msg, ok := strings.Cut(line, "][wasm] "); ok && strings.HasPrefix(msg, "wasm log") {
			out = append(out, msg)
		}
	}
	return out
}

// TestWasmService runs a bootstrap_extensions WasmService, singleton and
// per worker: it ticks, calls cluster "backend", drains a shared queue
// and writes shared data, which an HTTP filter of the same module and
// vm_id returns in response headers.
func TestWasmService(t *testing.T) {
	code := plugin(t, "e2e/testdata/wasmservice")
	for _, tt := range []struct {
		singleton     bool
		wantInstances string
	}{
		{true, "1"},  // one VM instance of its own
		{false, "2"}, // one per worker: --concurrency 2
	} {
		t.Run(fmt.Sprintf("singleton=%v", tt.singleton), func(t *testing.T) {
			up := startEchoUpstream(t)
			service := fmt.Sprintf(`bootstrap_extensions:
  - name: envoy.bootstrap.wasm
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.wasm.v3.WasmService
      singleton: %v
      config:
        name: background
        root_id: service
        vm_config:
          vm_id: bg
          code: {local: {filename: %q}}`, tt.singleton, code)
			dir, listen, admin := proxySetup(t, up.port, map[string]string{
				"{{FILTERS}}": wasmFilter("reader", "filter", "bg", code, ""),
				"{{TOP}}":     service,
			})
			in := run(t, dir, listen, admin, "-c", "envoy.yaml", "--concurrency", "2")

			eventually(t, 20*time.Second, "service ticks and callout", func() (bool, string) {
				resp, _ := httpGet(t, "http://"+listen+"/hello")
				ticks, _ := strconv.Atoi(resp.Header.Get("X-Svc-Ticks"))
				state := fmt.Sprintf("ticks %q callout %q", resp.Header.Get("X-Svc-Ticks"), resp.Header.Get("X-Svc-Callout"))
				return ticks >= 3 && resp.Header.Get("X-Svc-Callout") == "pong", state
			})
			resp, _ := httpGet(t, "http://"+listen+"/job-1")
			if got := resp.Header.Get("X-Svc-Instances"); got != tt.wantInstances {
				t.Errorf("service root contexts started: %q, want %s", got, tt.wantInstances)
			}
			eventually(t, 10*time.Second, "queued job drained by the service", func() (bool, string) {
				resp, _ := httpGet(t, "http://"+listen+"/hello")
				jobs := resp.Header.Get("X-Svc-Jobs")
				return strings.Contains(jobs, "/job-1"), "jobs " + jobs
			})
			if !up.served("/ping") {
				t.Error("the upstream never saw the service's callout")
			}
			lines := strings.Join(pluginLogLines(in), "\n")
			if !strings.Contains(lines, "wasm log background service bg: service started") {
				t.Errorf("no service start log line; plugin logs:\n%s", lines)
			}
		})
	}
}

// TestPluginMetricsAndStatsTags: plugin counters, gauges and histograms
// on /stats under their own names, and on /stats/prometheus without the
// envoy_ prefix, with stats_config.stats_tags applied.
func TestPluginMetricsAndStatsTags(t *testing.T) {
	code := plugin(t, "e2e/testdata/metricsplugin")
	up := startEchoUpstream(t)
	dir, listen, admin := proxySetup(t, up.port, map[string]string{
		"{{FILTERS}}": wasmFilter("metrics", "", "", code, "metrics"),
		"{{TOP}}": `stats_config:
  stats_tags:
    - tag_name: route
      regex: "^wasmcustom\\.e2eplugin\\.requests\\.((\\w+)\\.)"
    - tag_name: deployment
      fixed_value: e2e`,
	})
	run(t, dir, listen, admin, "-c", "envoy.yaml", "--concurrency", "2")

	for _, r := range []struct{ path, body string }{
		{"/cart/add", "12345"}, {"/cart/view", "123"}, {"/search", "1234567"},
	} {
		resp, err := http.Post("http://"+listen+r.path, "text/plain", strings.NewReader(r.body))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	// on_log runs after the response is sent; wait for the last sample.
	var text string
	eventually(t, 10*time.Second, "histogram samples on /stats", func() (bool, string) {
		_, text = get(t, "http://"+admin+"/stats?filter=e2eplugin")
		return strings.Contains(text, "e2eplugin.body_bytes: P0(") && strings.Contains(text, "e2eplugin.last_body_bytes: "), text
	})
	for _, want := range []string{
		"e2eplugin.requests.cart.total: 2\n",
		"e2eplugin.requests.search.total: 1\n",
		"e2eplugin.body_bytes: P0(",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/stats lacks %q:\n%s", want, text)
		}
	}
	if !regexp.MustCompile(`(?m)^e2eplugin\.last_body_bytes: (3|5|7)$`).MatchString(text) {
		t.Errorf("/stats gauge e2eplugin.last_body_bytes missing or not a body size:\n%s", text)
	}

	_, prom := get(t, "http://"+admin+"/stats/prometheus")
	for _, want := range []string{
		"# TYPE e2eplugin_requests_total counter\n",
		`e2eplugin_requests_total{deployment="e2e",route="cart"} 2` + "\n",
		`e2eplugin_requests_total{deployment="e2e",route="search"} 1` + "\n",
		"# TYPE e2eplugin_last_body_bytes gauge\n",
		"# TYPE e2eplugin_body_bytes histogram\n",
		`e2eplugin_body_bytes_bucket{deployment="e2e",le="+Inf"} 3` + "\n",
		`e2eplugin_body_bytes_sum{deployment="e2e"} 15` + "\n",
		`e2eplugin_body_bytes_count{deployment="e2e"} 3` + "\n",
		// Envoy's own stats keep the envoy_ prefix and default tags.
		`envoy_cluster_upstream_rq_total{deployment="e2e",envoy_cluster_name="backend"}`,
	} {
		if !strings.Contains(prom, want) {
			t.Errorf("/stats/prometheus lacks %q", want)
		}
	}
	for _, bad := range []string{"envoy_e2eplugin", "wasmcustom", "e2eplugin_requests_cart_total"} {
		if strings.Contains(prom, bad) {
			t.Errorf("/stats/prometheus has %q", bad)
		}
	}
	if t.Failed() {
		t.Logf("/stats/prometheus:\n%s", prom)
	}
}

// TestPluginLogPrefix: plugin log lines read "wasm log <name> <root_id>
// <vm_id>: <message>", empty parts left out, as Envoy prints them. The
// message carries the level the plugin read with the SDK's GetLogLevel
// (proxy_get_log_level, ABI 0.2.1): info, the binary's default.
func TestPluginLogPrefix(t *testing.T) {
	code := plugin(t, "e2e/testdata/metricsplugin")
	up := startEchoUpstream(t)
	filters := []string{
		wasmFilter("full", "root-a", "vm-a", code, "log-only"),
		wasmFilter("named", "", "", code, "log-only"),
		wasmFilter("", "root-only", "", code, "log-only"),
		wasmFilter("", "", "vm-only", code, "log-only"),
		wasmFilter("", "", "", code, "log-only"),
	}
	dir, listen, admin := proxySetup(t, up.port, map[string]string{"{{FILTERS}}": strings.Join(filters, "\n")})
	in := run(t, dir, listen, admin, "-c", "envoy.yaml", "--concurrency", "1", "-l", "info")
	lines := pluginLogLines(in)
	for _, want := range []string{
		"wasm log full root-a vm-a: configured log-only (log level info)",
		"wasm log named: configured log-only (log level info)",
		"wasm log root-only: configured log-only (log level info)",
		"wasm log vm-only: configured log-only (log level info)",
		"wasm log: configured log-only (log level info)",
	} {
		found := false
		for _, l := range lines {
			if l == want {
				found = true
			}
		}
		if !found {
			t.Errorf("no plugin log line %q; got:\n%s", want, strings.Join(lines, "\n"))
		}
	}
}

// TestAllowOnHeadersStopIteration: a plugin that pauses in
// on_request_headers reads the whole body and then adds and replaces
// request headers, which reach the upstream, only with
// allow_on_headers_stop_iteration; without it Envoy holds everything
// (StopAllIterationAndWatermark) and the plugin never sees the body.
func TestAllowOnHeadersStopIteration(t *testing.T) {
	code := plugin(t, "e2e/testdata/holdheaders")
	for _, tt := range []struct {
		allow bool
		body  string
		tier  string
	}{
		{true, `{"tier": "gold", "items": [1, 2, 3]}`, "gold"},
		{true, `not json`, "unknown"},
		{false, `{"tier": "gold"}`, ""},
	} {
		t.Run(fmt.Sprintf("allow=%v/%s", tt.allow, tt.tier), func(t *testing.T) {
			up := startEchoUpstream(t)
			var extra []string
			if tt.allow {
				extra = append(extra, "allow_on_headers_stop_iteration: true")
			}
			dir, listen, admin := proxySetup(t, up.port, map[string]string{
				"{{FILTERS}}": wasmFilter("hold", "", "", code, "", extra...),
			})
			run(t, dir, listen, admin, "-c", "envoy.yaml")

			client := &http.Client{Timeout: 10 * time.Second}
			if !tt.allow {
				// Nothing moves until the plugin resumes, which it never
				// does: the request stalls. A short client timeout ends it.
				client.Timeout = 1500 * time.Millisecond
			}
			req, _ := http.NewRequest("POST", "http://"+listen+"/order", strings.NewReader(tt.body))
			req.Header.Set("X-Body-Bytes", "unknown")
			resp, err := client.Do(req)
			if !tt.allow {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("request completed with %s; want it held", resp.Status)
				}
				if up.served("/order") {
					t.Error("the upstream saw the held request")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(got) != tt.body {
				t.Fatalf("got %s %q, want 200 with the body echoed", resp.Status, got)
			}
			if v := resp.Header.Get("X-Seen-Tier"); v != tt.tier {
				t.Errorf("upstream saw x-tier %q, want %q", v, tt.tier)
			}
			if v := resp.Header.Values("X-Seen-Body-Bytes"); len(v) != 1 || v[0] != strconv.Itoa(len(tt.body)) {
				t.Errorf("upstream saw x-body-bytes %q, want [%d] (replaced, not added)", v, len(tt.body))
			}
		})
	}
}

// TestRouteAndClusterMetadata: metadata.filter_metadata from the config
// of the matched route, its virtual host and cluster, and the listener,
// read by a plugin through xds.* and the pre-1.33 aliases.
func TestRouteAndClusterMetadata(t *testing.T) {
	code := plugin(t, "e2e/testdata/metadata")
	up := startEchoUpstream(t)
	routes := `                        - name: api
                          match: {prefix: "/api"}
                          route: {cluster: backend}
                          metadata:
                            filter_metadata:
                              acme: {team: payments, tier: 2, beta: true, limits: {rps: 100}}
                        - name: rest
                          match: {prefix: "/"}
                          route: {cluster: backend}`
	dir, listen, admin := proxySetup(t, up.port, map[string]string{
		"{{FILTERS}}": wasmFilter("metadata", "", "", code, ""),
		"{{ROUTES}}":  routes,
	})
	// Listener, virtual host and cluster metadata go into the file too.
	cfgPath := filepath.Join(dir, "envoy.yaml")
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "\n    - name: main\n", "\n    - name: main\n      metadata: {filter_metadata: {acme: {side: inbound}}}\n", 1)
	s = strings.Replace(s, "\n                      domains: [\"*\"]\n", "\n                      domains: [\"*\"]\n                      metadata: {filter_metadata: {acme: {zone: public}}}\n", 1)
	s = strings.Replace(s, "\n    - name: backend\n", "\n    - name: backend\n      metadata: {filter_metadata: {acme: {region: eu-west}}}\n", 1)
	if err := os.WriteFile(cfgPath, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, dir, listen, admin, "-c", "envoy.yaml")

	notFound := "error: not found" // types.ErrorStatusNotFound
	for _, tt := range []struct {
		path string
		want map[string]string
	}{
		{"/api/pay", map[string]string{
			"X-Route-Name":            "api",
			"X-Cluster-Name":          "backend",
			"X-Route-Team":            "payments",
			"X-Route-Team-Legacy":     "payments",
			"X-Route-Tier":            "2",
			"X-Route-Beta":            "true",
			"X-Route-Rps":             "100",
			"X-Route-Acme-Keys":       "beta,limits,team,tier",
			"X-Cluster-Region":        "eu-west",
			"X-Cluster-Region-Legacy": "eu-west",
			"X-Vhost-Zone":            "public",
			"X-Listener-Side":         "inbound",
			"X-Listener-Side-Legacy":  "inbound",
		}},
		{"/other", map[string]string{
			"X-Route-Name":        "rest",
			"X-Route-Team":        notFound,
			"X-Route-Team-Legacy": notFound,
			"X-Cluster-Region":    "eu-west",
			"X-Vhost-Zone":        "public",
		}},
	} {
		resp, _ := httpGet(t, "http://"+listen+tt.path)
		for h, want := range tt.want {
			if got := resp.Header.Get(h); got != want {
				t.Errorf("%s: %s = %q, want %q", tt.path, h, got, want)
			}
		}
	}
}

// watchHealth is a grpc.health.v1.Health server for the SDK's gRPC test:
// Check answers SERVING, or NotFound for "unknown"; Watch sends header
// metadata, SERVING then NOT_SERVING, a trailer, and ends with Aborted.
type watchHealth struct {
	healthpb.UnimplementedHealthServer
	mu      sync.Mutex
	callers []string // x-caller metadata of every call
}

func (s *watchHealth) record(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	s.mu.Lock()
	s.callers = append(s.callers, strings.Join(md.Get("x-caller"), ","))
	s.mu.Unlock()
}

func (s *watchHealth) Check(ctx context.Context, r *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	s.record(ctx)
	if r.Service == "unknown" {
		return nil, grpcstatus.Error(codes.NotFound, "unknown service")
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func (s *watchHealth) Watch(r *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	s.record(stream.Context())
	if err := stream.SendHeader(metadata.Pairs("x-watch", r.Service)); err != nil {
		return err
	}
	for _, st := range []healthpb.HealthCheckResponse_ServingStatus{healthpb.HealthCheckResponse_SERVING, healthpb.HealthCheckResponse_NOT_SERVING} {
		if err := stream.Send(&healthpb.HealthCheckResponse{Status: st}); err != nil {
			return err
		}
	}
	stream.SetTrailer(metadata.Pairs("x-trailer", "bye"))
	return grpcstatus.Error(codes.Aborted, "watch over")
}

// TestGoSDKGrpc: a Go plugin using the SDK's gRPC API (DispatchGrpcCall,
// OpenGrpcStream, SendGrpcStreamMessage, CloseGrpcStream, the stream
// callbacks, GetGrpcStatus) through the real proxy against grpc-go.
func TestGoSDKGrpc(t *testing.T) {
	code := plugin(t, "e2e/testdata/grpcsdk")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	health := &watchHealth{}
	healthpb.RegisterHealthServer(gs, health)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)

	up := startEchoUpstream(t)
	grpcCluster := fmt.Sprintf(`    - name: grpc
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config: {http2_protocol_options: {}}
      load_assignment:
        cluster_name: grpc
        endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %d}}}}]}]`,
		ln.Addr().(*net.TCPAddr).Port)
	dir, listen, admin := proxySetup(t, up.port, map[string]string{
		"{{FILTERS}}":  wasmFilter("grpcsdk", "", "", code, ""),
		"{{CLUSTERS}}": grpcCluster,
	})
	run(t, dir, listen, admin, "-c", "envoy.yaml")

	for _, tt := range []struct {
		path, header, want string
	}{
		{"/call/api", "X-Seen-Grpc-Result", "OK SERVING"},
		{"/call/unknown", "X-Seen-Grpc-Result", `NotFound 5 "unknown service" <nil>`},
		{"/watch/api", "X-Seen-Grpc-Events", "send-after-close(bad argument);initial(x-watch=api <nil>);" +
			"message(SERVING <nil>);message(NOT_SERVING <nil>);trailing(x-trailer=bye <nil>);close(Aborted watch over)"},
	} {
		t.Run(tt.path, func(t *testing.T) {
			resp, _ := httpGet(t, "http://"+listen+tt.path)
			if resp.StatusCode != 200 {
				t.Fatalf("status %s", resp.Status)
			}
			if got := resp.Header.Get(tt.header); got != tt.want {
				t.Errorf("%s = %q\nwant %q", tt.header, got, tt.want)
			}
		})
	}
	health.mu.Lock()
	defer health.mu.Unlock()
	if len(health.callers) != 3 || strings.Join(health.callers, " ") != "wasm wasm wasm" {
		t.Errorf("grpc-go saw x-caller metadata %q, want wasm on each of 3 calls", health.callers)
	}
}
