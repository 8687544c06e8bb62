package csrf_test

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/filters/internal/inproc"
)

// TestInProcess runs the filter in the library proxy with a real client:
// same-origin, Referer-only and additional_origins requests pass, a
// foreign or missing origin on a mutating request gets 403 "Invalid
// origin", safe methods are not checked, and a route in shadow mode only
// counts. The stats are Envoy's.
func TestInProcess(t *testing.T) {
	up := inproc.Upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "up") }))
	p := inproc.Start(t, inproc.Config(`
              routes:
              - match: {prefix: /shadow}
                route: {cluster: upstream}
                typed_per_filter_config:
                  envoy.filters.http.csrf:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.csrf.v3.CsrfPolicy
                    filter_enabled: {default_value: {numerator: 0}}
                    shadow_enabled: {default_value: {numerator: 100}}
              - match: {prefix: /}
                route: {cluster: upstream}`, `
          - name: envoy.filters.http.csrf
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.csrf.v3.CsrfPolicy
              filter_enabled: {default_value: {numerator: 100}}
              additional_origins: [{suffix: .trusted.example}]`, inproc.Cluster("upstream", up)))
	addr := p.Addr("main")
	base := "http://" + addr
	client := &http.Client{Timeout: 60 * time.Second}
	for _, c := range []struct {
		method, path, origin, referer string
		want                          int
	}{
		{"GET", "/", "https://evil.example", "", 200},
		{"POST", "/", "http://" + addr, "", 200},
		{"DELETE", "/", "https://evil.example", "", 403},
		{"POST", "/", "", "http://" + addr + "/form?x=1", 200},
		{"PUT", "/", "", "", 403},
		{"PATCH", "/", "https://app.trusted.example", "", 200},
		{"POST", "/shadow", "https://evil.example", "", 200},
	} {
		req, _ := http.NewRequest(c.method, base+c.path, nil)
		if c.origin != "" {
			req.Header.Set("Origin", c.origin)
		}
		if c.referer != "" {
			req.Header.Set("Referer", c.referer)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := "up"
		if c.want == 403 {
			want = "Invalid origin"
		}
		if resp.StatusCode != c.want || string(b) != want {
			t.Errorf("%s %s origin %q referer %q: %d %q, want %d %q", c.method, c.path, c.origin, c.referer, resp.StatusCode, b, c.want, want)
		}
	}
	for name, want := range map[string]int64{
		"http.ingress_http.csrf.request_valid":         3,
		"http.ingress_http.csrf.request_invalid":       3,
		"http.ingress_http.csrf.missing_source_origin": 1,
	} {
		if got := p.Stat(t, name); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
}
