package e2e

import (
	"net/http"
	"testing"
	"time"
)

// TestCORS: envoy.filters.http.cors through the binary with a real HTTP
// client. The virtual host's policy allows two origins (exact, and a
// suffix ignoring case) with credentials and exposed headers; a route
// overrides allow_methods with "*" and refuses to forward preflights of
// other origins; a route disables the filter. Preflights are answered by
// the proxy (the upstream never sees them), simple requests get the
// allow-origin of the request's origin, and cors.origin_valid/invalid
// count under the connection manager's prefix.
func TestCORS(t *testing.T) {
	up := startEchoUpstream(t)
	const policy = `"@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy`
	routes := `                        - name: strict
                          match: {prefix: "/strict"}
                          route: {cluster: backend}
                          typed_per_filter_config:
                            cors: {` + policy + `, allow_methods: "*", forward_not_matching_preflights: false}
                        - name: open
                          match: {prefix: "/nocors"}
                          route: {cluster: backend}
                          typed_per_filter_config:
                            cors: {"@type": type.googleapis.com/envoy.config.route.v3.FilterConfig, disabled: true}
                        - name: api
                          match: {prefix: "/"}
                          route: {cluster: backend}
                      typed_per_filter_config:
                        cors:
                          ` + policy + `
                          allow_origin_string_match: [{exact: "https://app.example"}, {suffix: ".trusted.example", ignore_case: true}]
                          allow_methods: "GET, PUT"
                          allow_headers: "x-token"
                          expose_headers: "x-total"
                          max_age: "600"
                          allow_credentials: true`
	filters := `                  - name: cors
                    typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors}`
	dir, listen, admin := proxySetup(t, up.port, map[string]string{"{{FILTERS}}": filters, "{{ROUTES}}": routes})
	run(t, dir, listen, admin, "-c", "envoy.yaml")
	client := &http.Client{Timeout: 30 * time.Second}
	do := func(method, path string, h map[string]string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+listen+path, nil)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	expect := func(what string, resp *http.Response, status int, want map[string]string) {
		t.Helper()
		if resp.StatusCode != status {
			t.Errorf("%s: status %d, want %d", what, resp.StatusCode, status)
		}
		for k, v := range want {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("%s: %s = %q, want %q", what, k, got, v)
			}
		}
	}

	// A preflight from an allowed origin is answered by the proxy.
	resp := do("OPTIONS", "/items", map[string]string{"Origin": "https://app.example", "Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "x-token"})
	expect("preflight", resp, 200, map[string]string{
		"Access-Control-Allow-Origin":      "https://app.example",
		"Access-Control-Allow-Methods":     "GET, PUT",
		"Access-Control-Allow-Headers":     "x-token",
		"Access-Control-Max-Age":           "600",
		"Access-Control-Allow-Credentials": "true",
	})
	if up.served("/items") {
		t.Error("the upstream saw the preflight")
	}
	// "*" on the route echoes the requested method; the suffix matcher
	// ignores case.
	resp = do("OPTIONS", "/strict", map[string]string{"Origin": "https://A.Trusted.Example", "Access-Control-Request-Method": "PATCH"})
	expect("preflight *", resp, 200, map[string]string{
		"Access-Control-Allow-Origin":  "https://A.Trusted.Example",
		"Access-Control-Allow-Methods": "PATCH",
		"Access-Control-Allow-Headers": "x-token", // from the virtual host
	})
	// A preflight from another origin: forwarded upstream by default, or
	// answered without allow-origin where forwarding is off.
	resp = do("OPTIONS", "/forwarded", map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "PUT"})
	expect("foreign preflight", resp, 200, map[string]string{"Access-Control-Allow-Origin": ""})
	if !up.served("/forwarded") {
		t.Error("a preflight of a foreign origin did not reach the upstream")
	}
	resp = do("OPTIONS", "/strict/x", map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "PUT"})
	expect("foreign preflight, not forwarded", resp, 200, map[string]string{"Access-Control-Allow-Origin": "", "Access-Control-Allow-Methods": "PUT"})
	if up.served("/strict/x") {
		t.Error("a preflight with forward_not_matching_preflights false reached the upstream")
	}
	// Simple requests.
	resp = do("GET", "/ping", map[string]string{"Origin": "https://app.example"})
	expect("simple", resp, 200, map[string]string{
		"Access-Control-Allow-Origin":      "https://app.example",
		"Access-Control-Allow-Credentials": "true",
		"Access-Control-Expose-Headers":    "x-total",
	})
	resp = do("GET", "/ping", map[string]string{"Origin": "https://evil.example"})
	expect("simple, foreign", resp, 200, map[string]string{"Access-Control-Allow-Origin": "", "Access-Control-Expose-Headers": ""})
	resp = do("GET", "/ping", nil)
	expect("no origin", resp, 200, map[string]string{"Access-Control-Allow-Origin": ""})
	// Disabled on a route: nothing added, nothing counted.
	resp = do("GET", "/nocors", map[string]string{"Origin": "https://app.example"})
	expect("disabled", resp, 200, map[string]string{"Access-Control-Allow-Origin": ""})

	if n := adminStat(t, admin, "http.ingress_http.cors.origin_valid"); n != 3 {
		t.Errorf("cors.origin_valid = %d, want 3", n)
	}
	if n := adminStat(t, admin, "http.ingress_http.cors.origin_invalid"); n != 3 {
		t.Errorf("cors.origin_invalid = %d, want 3", n)
	}
}

// TestCORSLegacyPolicy: the cors field of a virtual host and of a route
// action, as older Envoy configs write it, drives the CORS filter where
// no typed_per_filter_config entry is given.
func TestCORSLegacyPolicy(t *testing.T) {
	up := startEchoUpstream(t)
	routes := `                        - match: {prefix: "/admin"}
                          route:
                            cluster: backend
                            cors: {allow_origin_string_match: [{exact: "https://admin.example"}], allow_methods: "DELETE"}
                        - match: {prefix: "/"}
                          route: {cluster: backend}
                      cors:
                        allow_origin_string_match: [{exact: "https://app.example"}]
                        allow_methods: "GET, PUT"
                        max_age: "60"`
	filters := `                  - name: envoy.filters.http.cors
                    typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors}`
	dir, listen, admin := proxySetup(t, up.port, map[string]string{"{{FILTERS}}": filters, "{{ROUTES}}": routes})
	run(t, dir, listen, admin, "-c", "envoy.yaml")
	client := &http.Client{Timeout: 30 * time.Second}
	for _, c := range []struct {
		path, origin, wantOrigin, wantMethods string
	}{
		{"/items", "https://app.example", "https://app.example", "GET, PUT"},     // the virtual host's
		{"/admin/x", "https://admin.example", "https://admin.example", "DELETE"}, // the route's
		{"/admin/x", "https://app.example", "", ""},                              // the route's origins only
	} {
		req, _ := http.NewRequest("OPTIONS", "http://"+listen+c.path, nil)
		req.Header.Set("Origin", c.origin)
		req.Header.Set("Access-Control-Request-Method", "PUT")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != c.wantOrigin {
			t.Errorf("%s from %s: allow-origin %q, want %q", c.path, c.origin, got, c.wantOrigin)
		}
		if c.wantMethods != "" && resp.Header.Get("Access-Control-Allow-Methods") != c.wantMethods {
			t.Errorf("%s: allow-methods %q, want %q", c.path, resp.Header.Get("Access-Control-Allow-Methods"), c.wantMethods)
		}
	}
}
