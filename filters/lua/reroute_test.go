package lua_test

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/filters/internal/inproc"
)

// TestRequestHeaderEditReroutes: a script that edits the request
// headers clears the route cache, as Envoy's Lua filter does, so the
// request goes where the edited headers route it; a script that only
// reads them leaves the route matched before the filters.
func TestRequestHeaderEditReroutes(t *testing.T) {
	up := inproc.Upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "upstream "+r.URL.Path)
	}))
	p := inproc.Start(t, inproc.Config(`
              routes:
              - match: {prefix: "/", headers: [{name: x-tier, string_match: {exact: gold}}]}
                direct_response: {status: 200, body: {inline_string: "gold route"}}
              - match: {prefix: "/"}
                route: {cluster: upstream}`, `
          - name: envoy.filters.http.lua
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
              default_source_code:
                inline_string: |
                  function envoy_on_request(handle)
                    local h = handle:headers()
                    if h:get(":path") == "/vip" then
                      h:add("x-tier", "gold")
                    end
                    h:get("x-tier")
                  end`, inproc.Cluster("upstream", up)))
	client := &http.Client{Timeout: 60 * time.Second}
	for path, want := range map[string]string{"/vip": "gold route", "/plain": "upstream /plain"} {
		resp, err := client.Get("http://" + p.Addr("main") + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != want {
			t.Errorf("%s: %d %q, want %q", path, resp.StatusCode, b, want)
		}
	}
}
