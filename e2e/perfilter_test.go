package e2e

import (
	"net/http"
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
