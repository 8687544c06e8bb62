package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPerRouteFilterDisabled: typed_per_filter_config with Envoy's
// envoy.config.route.v3.FilterConfig turns a Wasm filter off for a
// virtual host or a route, a route's entry wins over its virtual host's
// (config: {} enables again), and a filter disabled by default in
// http_filters runs only where a route enables it. Whether the plugin
// ran is seen in the response: the metadata plugin adds X-Route-Name.
func TestPerRouteFilterDisabled(t *testing.T) {
	code := plugin(t, "e2e/testdata/metadata")
	const fc = `"@type": type.googleapis.com/envoy.config.route.v3.FilterConfig`
	routes := `                        - name: loud-off
                          match: {prefix: "/off"}
                          route: {cluster: backend}
                          typed_per_filter_config:
                            meta: {` + fc + `, disabled: true}
                        - name: loud
                          match: {prefix: "/"}
                          route: {cluster: backend}
                    - name: quiet
                      domains: ["quiet.example"]
                      typed_per_filter_config:
                        meta: {` + fc + `, disabled: true}
                      routes:
                        - name: quiet-on
                          match: {prefix: "/on"}
                          route: {cluster: backend}
                          typed_per_filter_config:
                            meta: {` + fc + `, config: {}}
                        - name: quiet
                          match: {prefix: "/"}
                          route: {cluster: backend}`
	for _, tt := range []struct {
		name            string
		disabledDefault bool
		cases           []struct {
			host, path string
			ran        bool
		}
	}{
		{"enabled by default", false, []struct {
			host, path string
			ran        bool
		}{
			{"", "/x", true},
			{"", "/off", false},
			{"quiet.example", "/x", false},
			{"quiet.example", "/on", true},
		}},
		{"disabled by default", true, []struct {
			host, path string
			ran        bool
		}{
			{"", "/x", false},
			{"", "/off", false},
			{"quiet.example", "/x", false},
			{"quiet.example", "/on", true},
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := startEchoUpstream(t)
			f := strings.Replace(wasmFilter("metadata", "", "", code, ""), "- name: envoy.filters.http.wasm\n", "- name: meta\n", 1)
			if tt.disabledDefault {
				f = strings.Replace(f, "- name: meta\n", "- name: meta\n                    disabled: true\n", 1)
			}
			dir, listen, admin := proxySetup(t, up.port, map[string]string{"{{FILTERS}}": f, "{{ROUTES}}": routes})
			run(t, dir, listen, admin, "-c", "envoy.yaml")
			client := &http.Client{Timeout: 30 * time.Second}
			for _, c := range tt.cases {
				req, _ := http.NewRequest("GET", "http://"+listen+c.path, nil)
				if c.host != "" {
					req.Host = c.host
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("%s%s: %s, want 200", c.host, c.path, resp.Status)
				}
				if ran := resp.Header.Get("X-Route-Name") != ""; ran != c.ran {
					t.Errorf("%s%s: plugin ran = %v, want %v (X-Route-Name %q)", c.host, c.path, ran, c.ran, resp.Header.Get("X-Route-Name"))
				}
			}
		})
	}
}

// TestPerRoutePluginConfiguration: a Wasm filter gets another plugin
// configuration on a route or virtual host (config.WasmRouteConfig,
// wrapped in an optional FilterConfig so that Envoy would load the file
// and ignore it). The seed's json-validation plugin requires other keys
// per route; the most specific configuration wins (route, then virtual
// host, then the filter's own), and the extra configurations add root
// contexts, not instances.
func TestPerRoutePluginConfiguration(t *testing.T) {
	code := plugin(t, "examples/json-validation")
	perRoute := func(keys string) string {
		return `{"@type": type.googleapis.com/envoy.config.route.v3.FilterConfig, is_optional: true, config: {` +
			`"@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm, config: {configuration: {` +
			`"@type": type.googleapis.com/google.protobuf.StringValue, value: '{"requiredKeys": ` + keys + `}'}}}}`
	}
	routes := `                        - match: {prefix: "/strict"}
                          route: {cluster: backend}
                          typed_per_filter_config:
                            jv: ` + perRoute(`["id", "token"]`) + `
                        - match: {prefix: "/"}
                          route: {cluster: backend}
                    - name: partners
                      domains: ["partners.example"]
                      typed_per_filter_config:
                        jv: ` + perRoute(`["id", "token", "partner"]`) + `
                      routes:
                        - match: {prefix: "/open"}
                          route: {cluster: backend}
                          typed_per_filter_config:
                            jv: ` + perRoute(`[]`) + `
                        - match: {prefix: "/"}
                          route: {cluster: backend}`
	up := startEchoUpstream(t)
	f := strings.Replace(wasmFilter("jv", "", "", code, `{"requiredKeys": ["id"]}`), "- name: envoy.filters.http.wasm\n", "- name: jv\n", 1)
	dir, listen, admin := proxySetup(t, up.port, map[string]string{"{{FILTERS}}": f, "{{ROUTES}}": routes})
	run(t, dir, listen, admin, "-c", "envoy.yaml", "--concurrency", "2", "--reload-poll-interval", "0")

	client := &http.Client{Timeout: 30 * time.Second}
	type check struct {
		host, path, body string
		want             int
	}
	send := func(checks ...check) {
		t.Helper()
		for _, c := range checks {
			req, _ := http.NewRequest("POST", "http://"+listen+c.path, strings.NewReader(c.body))
			req.Header.Set("Content-Type", "application/json")
			if c.host != "" {
				req.Host = c.host
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Errorf("%s%s %s: %s, want %d", c.host, c.path, c.body, resp.Status, c.want)
			}
		}
	}
	send([]check{
		{"", "/x", `{"id": 1}`, 200},                             // the filter's own: id
		{"", "/strict", `{"id": 1}`, 403},                        // the route's: id, token
		{"", "/strict", `{"id": 1, "token": 2}`, 200},            //
		{"partners.example", "/x", `{"id": 1, "token": 2}`, 403}, // the virtual host's: + partner
		{"partners.example", "/x", `{"id": 1, "token": 2, "partner": 3}`, 200},
		{"partners.example", "/open", `{}`, 200}, // the route's over its virtual host's: none
	}...)
	// Four configurations (the filter's and three per-route ones) in one
	// VM of --concurrency instances.
	if _, body := get(t, "http://"+admin+"/stats?filter=^wasm.envoy.wasm.runtime.v8.active$"); !strings.Contains(body, "wasm.envoy.wasm.runtime.v8.active: 2\n") {
		t.Errorf("instances: %q, want 2 (per-route configurations must not add instances)", body)
	}

	// A reload that changes one route's configuration: the filter is
	// rebuilt with it, the others keep theirs.
	cfg, err := os.ReadFile(filepath.Join(dir, "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(cfg), `'{"requiredKeys": ["id", "token"]}'`, `'{"requiredKeys": ["token"]}'`, 1)
	if changed == string(cfg) {
		t.Fatal("the /strict configuration is not in envoy.yaml")
	}
	if err := os.WriteFile(filepath.Join(dir, "envoy.yaml"), []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, body := postEmpty(t, "http://"+admin+"/reload"); code != 200 {
		t.Fatalf("POST /reload: %d %s", code, body)
	}
	send([]check{
		{"", "/strict", `{"token": 2}`, 200},
		{"", "/strict", `{"id": 1}`, 403},
		{"", "/x", `{"token": 2}`, 403},
		{"partners.example", "/x", `{"id": 1, "token": 2}`, 403},
		{"partners.example", "/open", `{}`, 200},
	}...)
}
