package e2e

import (
	"io"
	"net/http"
	"testing"
	"time"
)

// TestLocalRateLimit: envoy.filters.http.local_ratelimit through the
// binary. The filter's bucket (2 tokens, refilled hourly) limits the
// default route: the third request gets 429 local_rate_limited with
// x-envoy-ratelimited and the configured header; a route with its own
// config has its own bucket (1 token) that is not enforced, so its
// limited request reaches the upstream with the not-enforced header.
func TestLocalRateLimit(t *testing.T) {
	up := startEchoUpstream(t)
	const lrl = `"@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit`
	filters := `                  - name: envoy.filters.http.local_ratelimit
                    typed_config:
                      ` + lrl + `
                      stat_prefix: lrl
                      token_bucket: {max_tokens: 2, fill_interval: 3600s}
                      filter_enabled: {default_value: {numerator: 100, denominator: HUNDRED}}
                      filter_enforced: {default_value: {numerator: 100, denominator: HUNDRED}}
                      response_headers_to_add: [{header: {key: x-limited-by, value: lrl}}]`
	routes := `                        - name: soft
                          match: {prefix: "/soft"}
                          route: {cluster: backend}
                          typed_per_filter_config:
                            envoy.filters.http.local_ratelimit:
                              ` + lrl + `
                              stat_prefix: soft
                              token_bucket: {max_tokens: 1, fill_interval: 3600s}
                              filter_enabled: {default_value: {numerator: 100, denominator: HUNDRED}}
                              request_headers_to_add_when_not_enforced: [{header: {key: x-would-limit, value: "yes"}}]
                        - match: {prefix: "/"}
                          route: {cluster: backend}`
	dir, listen, admin := proxySetup(t, up.port, map[string]string{"{{FILTERS}}": filters, "{{ROUTES}}": routes})
	run(t, dir, listen, admin, "-c", "envoy.yaml")
	client := &http.Client{Timeout: 30 * time.Second}
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := client.Get("http://" + listen + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	for i := 1; i <= 2; i++ {
		if resp, _ := get("/ping"); resp.StatusCode != 200 {
			t.Fatalf("request %d: %s, want 200", i, resp.Status)
		}
	}
	resp, body := get("/ping")
	if resp.StatusCode != 429 || body != "local_rate_limited" || resp.Header.Get("X-Envoy-Ratelimited") != "true" || resp.Header.Get("X-Limited-By") != "lrl" {
		t.Errorf("third request: %s %q, x-envoy-ratelimited %q, x-limited-by %q; want 429 local_rate_limited, true, lrl",
			resp.Status, body, resp.Header.Get("X-Envoy-Ratelimited"), resp.Header.Get("X-Limited-By"))
	}
	if resp, _ := get("/soft/a"); resp.StatusCode != 200 || resp.Header.Get("X-Seen-Would-Limit") != "" {
		t.Errorf("soft 1: %s, x-would-limit seen %q", resp.Status, resp.Header.Get("X-Seen-Would-Limit"))
	}
	if resp, _ := get("/soft/b"); resp.StatusCode != 200 || resp.Header.Get("X-Seen-Would-Limit") != "yes" {
		t.Errorf("soft 2 (limited, not enforced): %s, x-would-limit seen %q, want 200 and yes", resp.Status, resp.Header.Get("X-Seen-Would-Limit"))
	}
	for name, want := range map[string]int{
		"lrl.http_local_rate_limit.enabled": 3, "lrl.http_local_rate_limit.ok": 2,
		"lrl.http_local_rate_limit.rate_limited": 1, "lrl.http_local_rate_limit.enforced": 1,
		"soft.http_local_rate_limit.rate_limited": 1, "soft.http_local_rate_limit.enforced": 0,
	} {
		if n := adminStat(t, admin, name); n != want {
			t.Errorf("%s = %d, want %d", name, n, want)
		}
	}
}
