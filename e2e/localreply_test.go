package e2e

import (
	"net/http"
	"strings"
	"testing"
)

// TestSeedLocalReplyConfig: the seed's plugin refuses bad payloads with
// its own local responses (send_local_response, 403); a
// local_reply_config on its connection manager turns them into 422 JSON
// errors (the original status in a header) through the
// binary, as Envoy's does for a plugin's reply, while the proxied
// answer is left alone.
func TestSeedLocalReplyConfig(t *testing.T) {
	dir, listen, admin := setup(t, seedConfig, plugin(t, "examples/json-validation"), func(s string) string {
		const anchor = "                stat_prefix: ingress_http\n                codec_type: auto\n"
		if !strings.Contains(s, anchor) {
			t.Fatal("seed config changed: no connection manager anchor")
		}
		return strings.Replace(s, anchor, anchor+`                local_reply_config:
                  mappers:
                  - filter:
                      status_code_filter: {comparison: {op: EQ, value: {default_value: 403, runtime_key: unused}}}
                    status_code: 422
                    headers_to_add: [{header: {key: x-original-status, value: "%RESPONSE_CODE%"}}]
                    body_format_override:
                      json_format: {error: "%LOCAL_REPLY_BODY%", status: "%RESPONSE_CODE%"}
`, 1)
	})
	in := run(t, dir, listen, admin, "-c", "envoy.yaml")
	url := "http://" + in.listen + "/"
	resp, body := post(t, http.DefaultClient, url, "application/json", strings.NewReader(`{"id": "xxx"}`))
	if resp.StatusCode != 422 || body != `{"error":"invalid payload","status":422}`+"\n" || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("invalid payload: %d %q %q, want 422 application/json with the plugin's message", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if v := resp.Header.Get("X-Original-Status"); v != "403" {
		t.Errorf("x-original-status = %q, want the plugin's 403", v)
	}
	resp, body = post(t, http.DefaultClient, url, "application/json", strings.NewReader(`{"id": "xxx", "token": "xxx"}`))
	if resp.StatusCode != 200 || body != "hello from the server\n" {
		t.Errorf("valid payload: %d %q", resp.StatusCode, body)
	}
}
