package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestNativeFiltersBesideWasm: rbac, fault, buffer, csrf and
// header_mutation on one connection manager in front of the seed's
// json-validation plugin, through the binary. A denied path gets rbac's
// 403 before the plugin sees it; a header abort answers from the fault
// filter; a foreign origin gets csrf's 403; a valid JSON body, buffered
// whole, passes the plugin and reaches the upstream with the mutated
// headers; an invalid one is the plugin's 403.
func TestNativeFiltersBesideWasm(t *testing.T) {
	up := startEchoUpstream(t)
	code := plugin(t, "examples/json-validation")
	filters := `                  - name: envoy.filters.http.rbac
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
                      rules:
                        action: DENY
                        policies:
                          forbidden: {permissions: [{url_path: {path: {prefix: /forbidden}}}], principals: [{any: true}]}
                  - name: envoy.filters.http.fault
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
                      abort: {header_abort: {}, percentage: {numerator: 100}}
                  - name: envoy.filters.http.csrf
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.csrf.v3.CsrfPolicy
                      filter_enabled: {default_value: {numerator: 100}}
                      additional_origins: [{exact: app.example}]
                  - name: envoy.filters.http.buffer
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer
                      max_request_bytes: 65536
                  - name: envoy.filters.http.header_mutation
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
                      mutations:
                        request_mutations: [{append: {header: {key: x-mutated, value: "%REQ(:METHOD)%"}}}]
` + wasmFilter("json", "", "", code, `{ "requiredKeys": ["id"] }`)
	dir, listen, admin := proxySetup(t, up.port, map[string]string{"{{FILTERS}}": filters})
	run(t, dir, listen, admin, "-c", "envoy.yaml")
	client := &http.Client{Timeout: 30 * time.Second}
	post := func(path, body string, headers ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+listen+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if resp, b := post("/forbidden", `{"id": 1}`); resp.StatusCode != 403 || b != "RBAC: access denied" {
		t.Errorf("rbac: %d %q", resp.StatusCode, b)
	}
	if resp, b := post("/x", `{"id": 1}`, "x-envoy-fault-abort-request", "503"); resp.StatusCode != 503 || b != "fault filter abort" {
		t.Errorf("fault: %d %q", resp.StatusCode, b)
	}
	if resp, b := post("/x", `{"id": 1}`, "Origin", "https://evil.example"); resp.StatusCode != 403 || b != "Invalid origin" {
		t.Errorf("csrf: %d %q", resp.StatusCode, b)
	}
	resp, b := post("/x", `{"id": 1}`, "Origin", "https://app.example")
	if resp.StatusCode != 200 || b != `{"id": 1}` || resp.Header.Get("X-Seen-Mutated") != "POST" {
		t.Errorf("valid: %d %q x-seen-mutated %q, want 200, the body, POST", resp.StatusCode, b, resp.Header.Get("X-Seen-Mutated"))
	}
	if resp, _ := post("/x", `{"other": 1}`, "Origin", "https://app.example"); resp.StatusCode != 403 {
		t.Errorf("plugin: %d, want its 403", resp.StatusCode)
	}
	for name, want := range map[string]int{
		"http.ingress_http.rbac.denied": 1, "http.ingress_http.fault.aborts_injected": 1, "http.ingress_http.csrf.request_invalid": 1,
	} {
		if n := adminStat(t, admin, name); n != want {
			t.Errorf("%s = %d, want %d", name, n, want)
		}
	}
}
