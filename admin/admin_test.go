package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/stats"
)

// testProvider is a Provider with fixed answers.
type testProvider struct {
	mu        sync.Mutex
	info      ServerInfo
	listeners []ListenerInfo
	clusters  []ClusterInfo
	dump      []byte
	dumpErr   error
	ecs       []json.RawMessage // extension configs (ECDS)
	quits     int
	quit      chan struct{}
}

func (p *testProvider) ServerInfo() ServerInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.info
}
func (p *testProvider) Listeners() []ListenerInfo   { return p.listeners }
func (p *testProvider) Clusters() []ClusterInfo     { return p.clusters }
func (p *testProvider) ConfigDump() ([]byte, error) { return p.dump, p.dumpErr }
func (p *testProvider) ExtensionConfigs() ([]json.RawMessage, error) {
	return p.ecs, nil
}
func (p *testProvider) Quit() {
	p.mu.Lock()
	p.quits++
	p.mu.Unlock()
	close(p.quit)
}

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newTestProvider() *testProvider {
	return &testProvider{
		info: ServerInfo{
			Version:        "wasmproxy/0.1.0/test",
			State:          StateLive,
			StartTime:      testNow.Add(-5*time.Second - 300*time.Millisecond),
			FirstStartTime: testNow.Add(-65 * time.Second),
			Options:        CommandLineOptions{Concurrency: 2, ConfigPath: "envoy.yaml", ComponentLogLevel: "wasm:debug"},
			Node:           NodeInfo{ID: "node-1", Cluster: "edge"},
		},
		listeners: []ListenerInfo{
			{Name: "listener_0", Address: "127.0.0.1:10000"},
			{Name: "listener_v6", Address: "[::1]:10001"},
		},
		clusters: []ClusterInfo{{
			Name: "backend",
			Endpoints: []EndpointInfo{
				{Address: "10.0.0.1:8080", Healthy: true, Stats: EndpointStats{CxActive: 2, CxTotal: 5, RqTotal: 9, RqSuccess: 8, RqError: 1}},
				{Address: "10.0.0.2:8080", Hostname: "b.internal", Weight: 3},
			},
		}},
		dump: []byte(`{"static_resources":{"clusters":[{"name":"backend"}]}}`),
		quit: make(chan struct{}),
	}
}

type fixture struct {
	p    *testProvider
	logs *logging.Registry
	srv  *httptest.Server
}

func newFixture(t *testing.T, setup func(*testProvider)) *fixture {
	t.Helper()
	p := newTestProvider()
	if setup != nil {
		setup(p)
	}
	st := stats.New()
	st.Counter("cluster.backend.upstream_rq_200").Add(4)
	st.Counter("http.ingress_http.downstream_rq_2xx").Add(4)
	st.Counter("http.ingress_http.downstream_rq_5xx")
	st.Gauge("server.live").Set(1)
	st.CustomCounter("plugin_requests").Add(7)
	st.Histogram("cluster.backend.upstream_rq_time")

	logs := logging.NewRegistry(io.Discard, logging.LevelInfo)
	s := New(p, st, logs)
	s.now = func() time.Time { return testNow }
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &fixture{p: p, logs: logs, srv: srv}
}

func (f *fixture) levels() map[string]string {
	out := map[string]string{}
	for _, l := range f.logs.Levels() {
		out[l[0]] = l[1]
	}
	return out
}

const (
	textCT = "text/plain; charset=UTF-8"
	jsonCT = "application/json"
	htmlCT = "text/html; charset=UTF-8"
)

const clustersText = `backend::observability_name::backend
backend::default_priority::max_connections::1024
backend::default_priority::max_pending_requests::1024
backend::default_priority::max_requests::1024
backend::default_priority::max_retries::3
backend::high_priority::max_connections::1024
backend::high_priority::max_pending_requests::1024
backend::high_priority::max_requests::1024
backend::high_priority::max_retries::3
backend::added_via_api::false
backend::10.0.0.1:8080::cx_active::2
backend::10.0.0.1:8080::cx_connect_fail::0
backend::10.0.0.1:8080::cx_total::5
backend::10.0.0.1:8080::rq_active::0
backend::10.0.0.1:8080::rq_error::1
backend::10.0.0.1:8080::rq_success::8
backend::10.0.0.1:8080::rq_timeout::0
backend::10.0.0.1:8080::rq_total::9
backend::10.0.0.1:8080::hostname::
backend::10.0.0.1:8080::health_flags::healthy
backend::10.0.0.1:8080::weight::1
backend::10.0.0.1:8080::region::
backend::10.0.0.1:8080::zone::
backend::10.0.0.1:8080::sub_zone::
backend::10.0.0.1:8080::canary::false
backend::10.0.0.1:8080::priority::0
backend::10.0.0.1:8080::success_rate::-1
backend::10.0.0.1:8080::local_origin_success_rate::-1
backend::10.0.0.2:8080::cx_active::0
backend::10.0.0.2:8080::cx_connect_fail::0
backend::10.0.0.2:8080::cx_total::0
backend::10.0.0.2:8080::rq_active::0
backend::10.0.0.2:8080::rq_error::0
backend::10.0.0.2:8080::rq_success::0
backend::10.0.0.2:8080::rq_timeout::0
backend::10.0.0.2:8080::rq_total::0
backend::10.0.0.2:8080::hostname::b.internal
backend::10.0.0.2:8080::health_flags::/failed_active_hc
backend::10.0.0.2:8080::weight::3
backend::10.0.0.2:8080::region::
backend::10.0.0.2:8080::zone::
backend::10.0.0.2:8080::sub_zone::
backend::10.0.0.2:8080::canary::false
backend::10.0.0.2:8080::priority::0
backend::10.0.0.2:8080::success_rate::-1
backend::10.0.0.2:8080::local_origin_success_rate::-1
`

const statsText = `cluster.backend.upstream_rq_200: 4
http.ingress_http.downstream_rq_2xx: 4
http.ingress_http.downstream_rq_5xx: 0
plugin_requests: 7
server.live: 1
cluster.backend.upstream_rq_time: No recorded values
`

const activeLoggers = "active loggers:\n" +
	"  admin: info\n  config: info\n  conn_handler: info\n  http: info\n" +
	"  main: info\n  router: info\n  upstream: info\n  wasm: info\n\n"

// jsonPath digs into decoded JSON: keys for objects, ints for arrays.
func jsonPath(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("at %v: not an object: %v", p, v)
			}
			v = m[k]
		case int:
			a, ok := v.([]any)
			if !ok || k >= len(a) {
				t.Fatalf("at %v: not an array that long: %v", p, v)
			}
			v = a[k]
		}
	}
	return v
}

func TestEndpoints(t *testing.T) {
	tests := []struct {
		name     string
		method   string
		path     string
		setup    func(*testProvider)
		status   int
		ct       string
		body     string   // exact, when set
		contains []string // substrings, when set
		check    func(t *testing.T, f *fixture, body string)
	}{
		{
			name: "index", method: "GET", path: "/", status: 200, ct: htmlCT,
			contains: []string{`<a href="/stats">/stats</a>`, `<form action="/quitquitquit" method="post">`, `<code>filter</code>`},
		},
		{
			name: "help", method: "GET", path: "/help", status: 200, ct: textCT,
			contains: []string{"admin commands are:\n", "  /logging (POST): ", "      usedonly: ", "  /ready: "},
		},
		{
			name: "unknown path", method: "GET", path: "/nope", status: 404, ct: textCT,
			contains: []string{"invalid path. admin commands are:\n", "  /server_info: "},
		},
		{name: "ready when live", method: "GET", path: "/ready", status: 200, ct: textCT, body: "LIVE\n"},
		{
			name: "ready when draining", method: "GET", path: "/ready", status: 503, ct: textCT, body: "DRAINING\n",
			setup: func(p *testProvider) { p.info.State = StateDraining },
		},
		{
			name: "ready when initializing", method: "GET", path: "/ready", status: 503, ct: textCT, body: "PRE_INITIALIZING\n",
			setup: func(p *testProvider) { p.info.State = StatePreInitializing },
		},
		{
			name: "server_info", method: "GET", path: "/server_info", status: 200, ct: jsonCT,
			check: func(t *testing.T, _ *fixture, body string) {
				var v any
				if err := json.Unmarshal([]byte(body), &v); err != nil {
					t.Fatal(err)
				}
				for _, c := range []struct {
					path []any
					want any
				}{
					{[]any{"version"}, "wasmproxy/0.1.0/test"},
					{[]any{"state"}, "LIVE"},
					{[]any{"uptime_current_epoch"}, "5s"},
					{[]any{"uptime_all_epochs"}, "65s"},
					{[]any{"hot_restart_version"}, ""},
					{[]any{"command_line_options", "concurrency"}, 2.0},
					{[]any{"command_line_options", "base_id"}, "0"},
					{[]any{"command_line_options", "config_path"}, "envoy.yaml"},
					{[]any{"command_line_options", "component_log_level"}, "wasm:debug"},
					{[]any{"command_line_options", "log_level"}, "info"},
					{[]any{"command_line_options", "drain_time"}, "600s"},
					{[]any{"command_line_options", "mode"}, "Serve"},
					{[]any{"node", "id"}, "node-1"},
					{[]any{"node", "cluster"}, "edge"},
					{[]any{"node", "user_agent_name"}, "wasmproxy"},
				} {
					if got := jsonPath(t, v, c.path...); got != c.want {
						t.Errorf("%v = %#v, want %#v", c.path, got, c.want)
					}
				}
				if !strings.HasPrefix(body, "{\n \"version\": ") {
					t.Errorf("not pretty-printed with one-space indent:\n%s", body)
				}
			},
		},
		{
			name: "listeners text", method: "GET", path: "/listeners", status: 200, ct: textCT,
			body: "listener_0::127.0.0.1:10000\nlistener_v6::[::1]:10001\n",
		},
		{
			name: "listeners json", method: "GET", path: "/listeners?format=json", status: 200, ct: jsonCT,
			body: `{
 "listener_statuses": [
  {
   "name": "listener_0",
   "local_address": {
    "socket_address": {
     "address": "127.0.0.1",
     "port_value": 10000
    }
   }
  },
  {
   "name": "listener_v6",
   "local_address": {
    "socket_address": {
     "address": "::1",
     "port_value": 10001
    }
   }
  }
 ]
}
`,
		},
		{
			name: "no listeners json", method: "GET", path: "/listeners?format=json", status: 200, ct: jsonCT, body: "{}\n",
			setup: func(p *testProvider) { p.listeners = nil },
		},
		{name: "clusters text", method: "GET", path: "/clusters", status: 200, ct: textCT, body: clustersText},
		{
			name: "clusters json", method: "GET", path: "/clusters?format=json", status: 200, ct: jsonCT,
			check: func(t *testing.T, _ *fixture, body string) {
				var v any
				if err := json.Unmarshal([]byte(body), &v); err != nil {
					t.Fatal(err)
				}
				cs := []any{"cluster_statuses", 0}
				host := func(i int, rest ...any) []any {
					return append(append(append([]any{}, cs...), "host_statuses", i), rest...)
				}
				for _, c := range []struct {
					path []any
					want any
				}{
					{append(cs, "name"), "backend"},
					{append(cs, "observability_name"), "backend"},
					{append(cs, "circuit_breakers", "thresholds", 0, "max_connections"), 1024.0},
					{append(cs, "circuit_breakers", "thresholds", 1, "priority"), "HIGH"},
					{append(cs, "circuit_breakers", "thresholds", 1, "max_retries"), 3.0},
					{host(0, "address", "socket_address", "address"), "10.0.0.1"},
					{host(0, "address", "socket_address", "port_value"), 8080.0},
					{host(0, "stats", 1, "name"), "cx_total"},
					{host(0, "stats", 1, "value"), "5"},
					{host(0, "stats", 0, "value"), nil}, // zero counters carry no value
					{host(0, "stats", 6, "name"), "cx_active"},
					{host(0, "stats", 6, "type"), "GAUGE"},
					{host(0, "health_status", "eds_health_status"), "HEALTHY"},
					{host(0, "health_status", "failed_active_health_check"), nil},
					{host(0, "weight"), 1.0},
					{host(1, "health_status", "failed_active_health_check"), true},
					{host(1, "hostname"), "b.internal"},
					{host(1, "weight"), 3.0},
				} {
					if got := jsonPath(t, v, c.path...); got != c.want {
						t.Errorf("%v = %#v, want %#v", c.path, got, c.want)
					}
				}
			},
		},
		{
			name: "config_dump", method: "GET", path: "/config_dump", status: 200, ct: jsonCT,
			body: `{
 "configs": [
  {
   "@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
   "bootstrap": {
    "static_resources": {
     "clusters": [
      {
       "name": "backend"
      }
     ]
    }
   }
  }
 ]
}
`,
		},
		{
			// WasmPlugins inserted by the proxy show as ECDS filters, an
			// Any each, where istioctl proxy-config ecds reads them.
			name: "config_dump with extension configs", method: "GET", path: "/config_dump", status: 200, ct: jsonCT,
			setup: func(p *testProvider) {
				p.ecs = []json.RawMessage{json.RawMessage(`{"name":"ns.plugin","typedConfig":{"@type":"type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"}}`)}
			},
			check: func(t *testing.T, _ *fixture, body string) {
				var v any
				if err := json.Unmarshal([]byte(body), &v); err != nil {
					t.Fatal(err)
				}
				for _, c := range []struct {
					path []any
					want any
				}{
					{[]any{"configs", 1, "@type"}, "type.googleapis.com/envoy.admin.v3.EcdsConfigDump"},
					{[]any{"configs", 1, "ecds_filters", 0, "ecds_filter", "@type"}, "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"},
					{[]any{"configs", 1, "ecds_filters", 0, "ecds_filter", "name"}, "ns.plugin"},
					{[]any{"configs", 1, "ecds_filters", 0, "ecds_filter", "typed_config", "@type"}, "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"},
				} {
					if got := jsonPath(t, v, c.path...); got != c.want {
						t.Errorf("%v = %#v, want %#v", c.path, got, c.want)
					}
				}
			},
		},
		{
			name: "config_dump error", method: "GET", path: "/config_dump", status: 500, ct: textCT,
			setup:    func(p *testProvider) { p.dumpErr = errors.New("no config loaded") },
			contains: []string{"no config loaded"},
		},
		{name: "stats text", method: "GET", path: "/stats", status: 200, ct: textCT, body: statsText},
		{
			name: "stats filter", method: "GET", path: "/stats?filter=%5Ehttp%5C.", status: 200, ct: textCT,
			body: "http.ingress_http.downstream_rq_2xx: 4\nhttp.ingress_http.downstream_rq_5xx: 0\n",
		},
		{
			name: "stats usedonly", method: "GET", path: "/stats?usedonly", status: 200, ct: textCT,
			body: "cluster.backend.upstream_rq_200: 4\nhttp.ingress_http.downstream_rq_2xx: 4\nplugin_requests: 7\nserver.live: 1\n",
		},
		{
			name: "stats bad filter", method: "GET", path: "/stats?filter=(", status: 400, ct: textCT,
			contains: []string{"Invalid re2 regex"},
		},
		{
			name: "stats json", method: "GET", path: "/stats?format=json&filter=server", status: 200, ct: jsonCT,
			body: `{"stats":[{"name":"server.live","value":1}]}`,
		},
		{
			name: "stats prometheus format", method: "GET", path: "/stats?format=prometheus&usedonly", status: 200, ct: textCT,
			contains: []string{
				"# TYPE envoy_cluster_upstream_rq counter\n" +
					`envoy_cluster_upstream_rq{envoy_response_code="200",envoy_cluster_name="backend"} 4` + "\n",
				"# TYPE plugin_requests counter\nplugin_requests{} 7\n",
			},
			check: func(t *testing.T, _ *fixture, body string) {
				if strings.Contains(body, "upstream_rq_time") || strings.Contains(body, `code_class="5"`) {
					t.Errorf("usedonly kept unused stats:\n%s", body)
				}
			},
		},
		{
			name: "stats unknown format", method: "GET", path: "/stats?format=xml", status: 400, ct: textCT,
			contains: []string{"usage: /stats?format="},
		},
		{
			name: "stats/prometheus", method: "GET", path: "/stats/prometheus", status: 200, ct: textCT,
			contains: []string{
				`envoy_http_downstream_rq_xx{envoy_response_code_class="2",envoy_http_conn_manager_prefix="ingress_http"} 4`,
				"# TYPE envoy_server_live gauge\nenvoy_server_live{} 1\n",
				"# TYPE envoy_cluster_upstream_rq_time histogram\n",
				`envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="backend",le="+Inf"} 0`,
			},
		},
		{
			name: "stats/prometheus filter", method: "GET", path: "/stats/prometheus?filter=server", status: 200, ct: textCT,
			body: "# TYPE envoy_server_live gauge\nenvoy_server_live{} 1\n\n",
		},

		// Mutating endpoints refuse GET and change nothing.
		{
			name: "GET logging refused", method: "GET", path: "/logging?wasm=debug", status: 405, ct: textCT,
			body: "Method GET not allowed, POST required.",
			check: func(t *testing.T, f *fixture, _ string) {
				if got := f.levels()["wasm"]; got != "info" {
					t.Errorf("wasm level changed by GET: %s", got)
				}
			},
		},
		{
			name: "GET quitquitquit refused", method: "GET", path: "/quitquitquit", status: 405, ct: textCT,
			body: "Method GET not allowed, POST required.",
			check: func(t *testing.T, f *fixture, _ string) {
				time.Sleep(50 * time.Millisecond)
				f.p.mu.Lock()
				defer f.p.mu.Unlock()
				if f.p.quits != 0 {
					t.Error("GET /quitquitquit called Quit")
				}
			},
		},
		{
			name: "PUT logging refused", method: "PUT", path: "/logging?level=off", status: 405, ct: textCT,
			body: "Method PUT not allowed, POST required.",
			check: func(t *testing.T, f *fixture, _ string) {
				if got := f.levels()["main"]; got != "info" {
					t.Errorf("main level changed by PUT: %s", got)
				}
			},
		},

		// POST /logging.
		{name: "logging list", method: "POST", path: "/logging", status: 200, ct: textCT, body: activeLoggers},
		{
			name: "logging one logger", method: "POST", path: "/logging?wasm=debug", status: 200, ct: textCT,
			contains: []string{"  wasm: debug\n", "  http: info\n"},
			check: func(t *testing.T, f *fixture, _ string) {
				lv := f.levels()
				if lv["wasm"] != "debug" || lv["http"] != "info" {
					t.Errorf("levels = %v, want wasm debug and the rest info", lv)
				}
			},
		},
		{
			name: "logging all", method: "POST", path: "/logging?level=warning", status: 200, ct: textCT,
			check: func(t *testing.T, f *fixture, _ string) {
				for name, l := range f.levels() {
					if l != "warning" {
						t.Errorf("%s = %s, want warning", name, l)
					}
				}
			},
		},
		{
			name: "logging paths", method: "POST", path: "/logging?paths=wasm:debug,http:error", status: 200, ct: textCT,
			check: func(t *testing.T, f *fixture, _ string) {
				lv := f.levels()
				if lv["wasm"] != "debug" || lv["http"] != "error" || lv["main"] != "info" {
					t.Errorf("levels = %v", lv)
				}
			},
		},
		{
			name: "logging unknown logger", method: "POST", path: "/logging?nosuch=debug", status: 400, ct: textCT,
			contains: []string{"error: unknown logger name \"nosuch\"\n", "usage: /logging", activeLoggers},
		},
		{
			name: "logging bad level", method: "POST", path: "/logging?wasm=loud", status: 400, ct: textCT,
			contains: []string{"unknown logger level \"loud\""},
			check: func(t *testing.T, f *fixture, _ string) {
				if got := f.levels()["wasm"]; got != "info" {
					t.Errorf("wasm = %s after a bad request", got)
				}
			},
		},
		{
			name: "logging paths with one unknown changes nothing", method: "POST", path: "/logging?paths=wasm:debug,nosuch:info", status: 400, ct: textCT,
			contains: []string{"unknown logger name \"nosuch\""},
			check: func(t *testing.T, f *fixture, _ string) {
				if got := f.levels()["wasm"]; got != "info" {
					t.Errorf("wasm = %s after a rejected paths request", got)
				}
			},
		},
		{
			name: "logging two parameters", method: "POST", path: "/logging?wasm=debug&http=debug", status: 400, ct: textCT,
			contains: []string{"invalid number of parameters"},
		},

		// POST /quitquitquit.
		{
			name: "quitquitquit", method: "POST", path: "/quitquitquit", status: 200, ct: textCT, body: "OK\n",
			check: func(t *testing.T, f *fixture, _ string) {
				select {
				case <-f.p.quit:
				case <-time.After(30 * time.Second):
					t.Fatal("Quit was not called")
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.setup)
			req, err := http.NewRequest(tt.method, f.srv.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := f.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			body := string(raw)
			if resp.StatusCode != tt.status {
				t.Errorf("status = %d, want %d; body:\n%s", resp.StatusCode, tt.status, body)
			}
			if got := resp.Header.Get("Content-Type"); got != tt.ct {
				t.Errorf("content-type = %q, want %q", got, tt.ct)
			}
			if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("x-content-type-options = %q", got)
			}
			if tt.body != "" && body != tt.body {
				t.Errorf("body:\n%s\nwant:\n%s", body, tt.body)
			}
			for _, s := range tt.contains {
				if !strings.Contains(body, s) {
					t.Errorf("body does not contain %q:\n%s", s, body)
				}
			}
			if tt.check != nil {
				tt.check(t, f, body)
			}
		})
	}
}

func TestQuitCalledOnce(t *testing.T) {
	f := newFixture(t, nil)
	for range 3 {
		resp, err := f.srv.Client().Post(f.srv.URL+"/quitquitquit", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	<-f.p.quit // a second Quit would panic on the closed channel
	time.Sleep(50 * time.Millisecond)
	f.p.mu.Lock()
	defer f.p.mu.Unlock()
	if f.p.quits != 1 {
		t.Errorf("Quit called %d times, want 1", f.p.quits)
	}
}

func TestServeAndShutdown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(newTestProvider(), nil, logging.NewRegistry(io.Discard, logging.LevelInfo))
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()

	resp, err := http.Get("http://" + l.Addr().String() + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "LIVE\n" {
		t.Errorf("GET /ready = %d %q", resp.StatusCode, body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve returned %v after Shutdown, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return after Shutdown")
	}
}

func TestProtoDuration(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{0, "0s"}, {5 * time.Second, "5s"}, {1500 * time.Millisecond, "1.500s"},
		{time.Second + time.Microsecond, "1.000001s"}, {time.Nanosecond, "0.000000001s"}, {-2 * time.Second, "-2s"},
	}
	for _, tt := range tests {
		if got := protoDuration(tt.in); got != tt.want {
			t.Errorf("protoDuration(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestReloadHistoryBounded: the history keeps the newest
// ReloadHistoryLen attempts, newest first, and adding one never changes
// a history already handed out.
func TestReloadHistoryBounded(t *testing.T) {
	var h []ReloadRecord
	var handedOut []ReloadRecord
	for i := range ReloadHistoryLen + 5 {
		h = WithRecord(h, ReloadRecord{Trigger: strconv.Itoa(i)})
		if i == 3 {
			handedOut = h
		}
	}
	if len(h) != ReloadHistoryLen {
		t.Fatalf("%d records, want %d", len(h), ReloadHistoryLen)
	}
	if h[0].Trigger != strconv.Itoa(ReloadHistoryLen+4) || h[len(h)-1].Trigger != "5" {
		t.Fatalf("history runs from %s to %s, want %d (newest) to 5", h[0].Trigger, h[len(h)-1].Trigger, ReloadHistoryLen+4)
	}
	if len(handedOut) != 4 || handedOut[0].Trigger != "3" || handedOut[3].Trigger != "0" {
		t.Fatalf("a history handed out changed afterwards: %+v", handedOut)
	}
}

// TestHealthFlags: Envoy's health_flags string joins each failing flag.
func TestHealthFlags(t *testing.T) {
	for _, tc := range []struct {
		e    EndpointInfo
		want string
	}{
		{EndpointInfo{Healthy: true}, "healthy"},
		{EndpointInfo{}, "/failed_active_hc"},
		{EndpointInfo{Healthy: true, FailedOutlierCheck: true}, "/failed_outlier_check"},
		{EndpointInfo{FailedOutlierCheck: true}, "/failed_active_hc/failed_outlier_check"},
		{EndpointInfo{Healthy: true, FailedEDSHealth: true}, "/failed_eds_health"},
	} {
		if got := tc.e.healthFlags(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.e, got, tc.want)
		}
	}
}
