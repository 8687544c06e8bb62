package lua_test

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/filters/internal/inproc"
)

// BenchmarkHeadersScript: one GET through the library proxy whose Lua
// filter edits request and response headers (the common script), over
// a kept-alive connection to a real upstream.
func BenchmarkHeadersScript(b *testing.B) {
	up := inproc.Upstream(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	p := inproc.Start(b, inproc.Config(`
              routes: [{match: {prefix: /}, route: {cluster: upstream}}]`, `
          - name: envoy.filters.http.lua
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
              default_source_code:
                inline_string: |
                  function envoy_on_request(h) h:headers():add("x-req", h:headers():get(":path")) end
                  function envoy_on_response(h) h:headers():add("x-resp", "1") end`, inproc.Cluster("upstream", up)))
	client := &http.Client{Timeout: 60 * time.Second}
	url := "http://" + p.Addr("main") + "/bench"
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.Header.Get("X-Resp") != "1" {
			b.Fatal("the response script did not run")
		}
	}
}
