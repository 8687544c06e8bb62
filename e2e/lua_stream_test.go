package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestLuaHTTPCallAndChunks: envoy.filters.http.lua through the binary
// asks a real HTTP service in a cluster (handle:httpCall) whether the
// caller may pass, adds the answer to the request or answers 401 from
// the script, and upper-cases the response body chunk by chunk
// (handle:bodyChunks()), its own local reply included.
func TestLuaHTTPCallAndChunks(t *testing.T) {
	up := startEchoUpstream(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	auth := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Token") != "letmein" {
			w.WriteHeader(403)
			io.WriteString(w, "bad token")
			return
		}
		io.WriteString(w, "user-7")
	})}
	go auth.Serve(ln)
	t.Cleanup(func() { auth.Close() })
	script := `
function envoy_on_request(handle)
  local token = handle:headers():get("x-token") or ""
  local h, body = handle:httpCall("auth", {[":method"] = "GET", [":path"] = "/check", [":authority"] = "auth", ["x-token"] = token}, nil, 30000)
  if h[":status"] ~= "200" then
    handle:respond({[":status"] = "401", ["x-auth"] = h[":status"]}, "auth said: " .. (body or ""))
  end
  handle:headers():add("x-user", body)
end
function envoy_on_response(handle)
  for chunk in handle:bodyChunks() do
    chunk:setBytes(string.upper(chunk:getBytes(0, chunk:length())))
  end
end
`
	filters := `                  - name: envoy.filters.http.lua
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
                      default_source_code:
                        inline_string: |
` + indent(script, "                          ")
	dir, listen, admin := proxySetup(t, up.port, map[string]string{
		"{{FILTERS}}": filters,
		"{{CLUSTERS}}": fmt.Sprintf(`    - name: auth
      load_assignment:
        cluster_name: auth
        endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %d}}}}]}]`, ln.Addr().(*net.TCPAddr).Port),
	})
	run(t, dir, listen, admin, "-c", "envoy.yaml")
	client := &http.Client{Timeout: 60 * time.Second}
	for _, tc := range []struct {
		token, status, body, seenUser, xAuth string
	}{
		{"letmein", "200", "MAKE ME LOUD", "user-7", ""},
		// The script's own reply runs through envoy_on_response too, as
		// in Envoy: upper-cased.
		{"guess", "401", "AUTH SAID: BAD TOKEN", "", "403"},
	} {
		req, _ := http.NewRequest("POST", "http://"+listen+"/echo", strings.NewReader("make me loud"))
		req.Header.Set("X-Token", tc.token)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := fmt.Sprint(resp.StatusCode); got != tc.status || string(b) != tc.body || resp.Header.Get("X-Seen-User") != tc.seenUser || resp.Header.Get("X-Auth") != tc.xAuth {
			t.Errorf("token %s: %s %q x-seen-user %q x-auth %q; want %s %q %q %q", tc.token, got, b, resp.Header.Get("X-Seen-User"), resp.Header.Get("X-Auth"), tc.status, tc.body, tc.seenUser, tc.xAuth)
		}
	}
}

// indent prefixes every line of s.
func indent(s, prefix string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimPrefix(s, "\n"), "\n") {
		b.WriteString(prefix + l + "\n")
	}
	return b.String()
}
