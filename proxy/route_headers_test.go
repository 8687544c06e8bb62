package proxy

import (
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/wasmproxy/wasmproxy/config"
)

// startYAML runs a proxy for an Envoy bootstrap written as YAML, whose
// listener is named "main"; {{UP}} in the text is replaced by up.
func startYAML(t *testing.T, yaml, up string) *fixture {
	t.Helper()
	cfg, err := config.Parse([]byte(strings.ReplaceAll(yaml, "{{UP}}", up)), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return startBootstrap(t, cfg, nil)
}

// yamlListener opens a bootstrap with one HTTP listener "main" on a free
// port; the route_config follows, indented for its place.
const yamlListener = `
static_resources:
  listeners:
  - name: main
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: in
          http_filters: [{name: envoy.filters.http.router}]
          route_config:
`

// yamlClusters are "up" (the test's upstream, {{UP}}) and "down" (a
// port nothing listens on).
const yamlClusters = `
  clusters:
  - name: up
    connect_timeout: 5s
    load_assignment:
      cluster_name: up
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: {{UPPORT}}}}}}]}]
  - name: down
    connect_timeout: 5s
    load_assignment:
      cluster_name: down
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: {{DOWNPORT}}}}}}]}]
`

func headerRouteConfig(mostSpecificWins bool) string {
	msw := "false"
	if mostSpecificWins {
		msw = "true"
	}
	return yamlListener + `
            most_specific_header_mutations_wins: ` + msw + `
            request_headers_to_add:
            - header: {key: x-order, value: rc}
            request_headers_to_remove: [x-internal]
            response_headers_to_add:
            - header: {key: x-resp-order, value: rc}
            response_headers_to_remove: [x-powered-by]
            virtual_hosts:
            - name: vh
              domains: ["*"]
              request_headers_to_add:
              - header: {key: x-order, value: vh}
                append_action: OVERWRITE_IF_EXISTS_OR_ADD
              response_headers_to_add:
              - header: {key: x-resp-order, value: vh}
                append: false
              - header: {key: x-asked-host, value: "%REQ(:AUTHORITY)%"}
              routes:
              - match: {prefix: /direct}
                direct_response: {status: 200, body: {inline_string: direct}}
              - match: {prefix: /down}
                route: {cluster: down}
              - match: {prefix: /slow}
                route: {cluster: down, timeout: 0.2s}
              - match: {prefix: /}
                route: {cluster: up}
                request_headers_to_add:
                - header: {key: x-order, value: route}
                - header: {key: x-client, value: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"}
                - header: {key: x-remote, value: "[%DOWNSTREAM_REMOTE_ADDRESS%] %REQ(:PATH)% %%"}
                - header: {key: x-default, value: proxy}
                  append_action: ADD_IF_ABSENT
                - header: {key: x-only-if-set, value: proxy}
                  append_action: OVERWRITE_IF_EXISTS
                - header: {key: x-replace-if-set, value: proxy}
                  append_action: OVERWRITE_IF_EXISTS
                - header: {key: x-kept-empty, value: "%REQ(x-absent)%"}
                  keep_empty_value: true
                - header: {key: x-dropped-empty, value: "%REQ(x-absent)%"}
                request_headers_to_remove: [x-debug]
                response_headers_to_add:
                - header: {key: x-resp-order, value: route}
                - header: {key: x-upstream-said, value: "%RESP(x-powered-by)%"}
` + yamlClusters
}

// TestRouteHeaderMutations: the request and response header mutations
// of the route, its virtual host and the route configuration reach the
// upstream and the client, in Envoy's order, with command operators
// rendered per request.
func TestRouteHeaderMutations(t *testing.T) {
	got := make(chan http.Header, 1)
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
		w.Header().Set("X-Powered-By", "php")
		w.Header().Set("X-Resp-Order", "upstream")
		w.Write([]byte("ok"))
	})
	_, port, _ := strings.Cut(up, ":")
	for _, tc := range []struct {
		mostSpecificWins bool
		reqOrder         []string // x-order at the upstream
		respOrder        []string // x-resp-order at the client
	}{
		// Route first, then the virtual host overwrites, then the route
		// configuration appends.
		{false, []string{"vh", "rc"}, []string{"vh", "rc"}},
		// Route configuration first, the virtual host overwrites, the
		// route appends.
		{true, []string{"vh", "route"}, []string{"vh", "route"}},
	} {
		f := startYAML(t, strings.NewReplacer("{{UPPORT}}", port, "{{DOWNPORT}}", "1").Replace(headerRouteConfig(tc.mostSpecificWins)), up)
		req, _ := http.NewRequest("GET", "http://"+f.addr+"/p?q=1", nil)
		req.Header.Set("X-Internal", "secret")
		req.Header.Set("X-Debug", "1")
		req.Header.Set("X-Default", "client")
		req.Header.Set("X-Replace-If-Set", "client")
		req.Header.Set("X-Order", "client")
		resp, body := do(t, req)
		seen := <-got
		if resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("most_specific=%v: %d %q", tc.mostSpecificWins, resp.StatusCode, body)
		}
		if v := seen.Values("X-Order"); !slices.Equal(v, tc.reqOrder) {
			t.Errorf("most_specific=%v: upstream x-order %q, want %q", tc.mostSpecificWins, v, tc.reqOrder)
		}
		if v := resp.Header.Values("X-Resp-Order"); !slices.Equal(v, tc.respOrder) {
			t.Errorf("most_specific=%v: client x-resp-order %q, want %q", tc.mostSpecificWins, v, tc.respOrder)
		}
		for name, want := range map[string][]string{
			"X-Internal":       nil, // removed by the route configuration
			"X-Debug":          nil, // removed by the route
			"X-Client":         {"127.0.0.1"},
			"X-Default":        {"client"}, // ADD_IF_ABSENT leaves the client's
			"X-Only-If-Set":    nil,        // OVERWRITE_IF_EXISTS adds nothing
			"X-Replace-If-Set": {"proxy"},
			"X-Kept-Empty":     {""},
			"X-Dropped-Empty":  nil,
		} {
			if v := seen.Values(name); !slices.Equal(v, want) {
				t.Errorf("upstream %s = %q, want %q", name, v, want)
			}
		}
		if v := seen.Get("X-Remote"); !strings.HasPrefix(v, "[127.0.0.1:") || !strings.HasSuffix(v, "] /p?q=1 %") {
			t.Errorf("upstream x-remote = %q", v)
		}
		if v := resp.Header.Values("X-Powered-By"); v != nil {
			t.Errorf("client x-powered-by = %q, want it removed", v)
		}
		// By default the route's value is rendered from the response
		// before the route configuration removes the header; under
		// most_specific_header_mutations_wins after, and an empty value
		// is not added.
		wantSaid := []string{"php"}
		if tc.mostSpecificWins {
			wantSaid = nil
		}
		if v := resp.Header.Values("X-Upstream-Said"); !slices.Equal(v, wantSaid) {
			t.Errorf("most_specific=%v: client x-upstream-said = %q, want %q", tc.mostSpecificWins, v, wantSaid)
		}
		if v := resp.Header.Get("X-Asked-Host"); v != f.addr {
			t.Errorf("client x-asked-host = %q, want %q", v, f.addr)
		}
	}
}

// TestRouteHeaderMutationsOnRouterReplies: replies the router makes for a
// route — a direct response, a 503 for an upstream that refuses the
// connection, a 504 for one that does not answer in time — carry the route's response header mutations, as Envoy's
// router adds them to its local replies.
func TestRouteHeaderMutationsOnRouterReplies(t *testing.T) {
	down := refusedAddr(t) // nothing listens there
	_, downPort, _ := strings.Cut(down, ":")
	// silent accepts connections and never answers.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	_, silentPort, _ := strings.Cut(silent.Addr().String(), ":")
	f := startYAML(t, strings.NewReplacer("{{UPPORT}}", downPort, "{{DOWNPORT}}", downPort).Replace(headerRouteConfig(false)), "")
	slow := startYAML(t, strings.NewReplacer("{{UPPORT}}", downPort, "{{DOWNPORT}}", silentPort).Replace(headerRouteConfig(false)), "")
	for _, tc := range []struct {
		f      *fixture
		path   string
		status int
		body   string
	}{
		{f, "/direct", 200, "direct"},
		{f, "/down", 503, "upstream connect error"},
		{slow, "/slow", 504, "upstream request timeout"},
	} {
		f := tc.f
		req, _ := http.NewRequest("GET", "http://"+f.addr+tc.path, nil)
		resp, body := do(t, req)
		if resp.StatusCode != tc.status || !strings.HasPrefix(body, tc.body) {
			t.Fatalf("%s: %d %q", tc.path, resp.StatusCode, body)
		}
		if v := resp.Header.Values("X-Resp-Order"); !slices.Equal(v, []string{"vh", "rc"}) {
			t.Errorf("%s: x-resp-order %q, want [vh rc]", tc.path, v)
		}
		if v := resp.Header.Get("X-Asked-Host"); v != f.addr {
			t.Errorf("%s: x-asked-host %q, want %q", tc.path, v, f.addr)
		}
	}
}
