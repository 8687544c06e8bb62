package proxy

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestURITemplateRoutes: routes matched by path_match_policy's
// uri_template matcher, and path_rewrite_policy's rewriter building the
// upstream path from the matched variables (query kept, the original
// in x-envoy-original-path), through real sockets. A path no template
// matches falls through to the next route.
func TestURITemplateRoutes(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Seen-Uri", r.RequestURI)
		w.Header().Set("X-Seen-Original", r.Header.Get("X-Envoy-Original-Path"))
	})
	_, port, _ := strings.Cut(up, ":")
	const matcher = `
                    name: envoy.path.match.uri_template.uri_template_matcher
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig`
	const rewriter = `
                    name: envoy.path.rewrite.uri_template.uri_template_rewriter
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.path.rewrite.uri_template.v3.UriTemplateRewriteConfig`
	yaml := yamlListener + `
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes:
              - name: books
                match:
                  path_match_policy:` + matcher + `
                      path_template: "/shelves/{shelf}/books/{book=**}"
                route:
                  cluster: up
                  path_rewrite_policy:` + rewriter + `
                      path_template_rewrite: "/v2/books/{book}/on/{shelf}"
              - name: playlist
                match:
                  path_match_policy:` + matcher + `
                      path_template: "/videos/*/{file}.m3u8"
                route:
                  cluster: up
                  path_rewrite_policy:` + rewriter + `
                      path_template_rewrite: "/hls/{file}"
              - name: rest
                match: {prefix: /}
                direct_response: {status: 404, body: {inline_string: "no template"}}
  clusters:
  - name: up
    load_assignment:
      cluster_name: up
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: ` + port + `}}}}]}]
`
	f := startYAML(t, yaml, "")
	for _, tc := range []struct {
		uri               string
		status            int
		seenURI, original string
	}{
		{"/shelves/s1/books/b/2?x=1", 200, "/v2/books/b/2/on/s1?x=1", "/shelves/s1/books/b/2?x=1"},
		{"/shelves/s1/books/", 200, "/v2/books//on/s1", "/shelves/s1/books/"},
		{"/videos/cat/intro.m3u8", 200, "/hls/intro", "/videos/cat/intro.m3u8"},
		// Templates are case-sensitive, "*" is one segment, and a
		// variable is never empty.
		{"/Shelves/s1/books/b", 404, "", ""},
		{"/videos/a/b/intro.m3u8", 404, "", ""},
		{"/videos/a/.m3u8", 404, "", ""},
		{"/shelves/s1", 404, "", ""},
	} {
		resp, err := http.Get("http://" + f.addr + tc.uri)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d (%q), want %d", tc.uri, resp.StatusCode, body, tc.status)
			continue
		}
		if tc.status != 200 {
			if string(body) != "no template" {
				t.Errorf("%s: body %q, want the fall-through route's", tc.uri, body)
			}
			continue
		}
		if got := resp.Header.Get("X-Seen-Uri"); got != tc.seenURI {
			t.Errorf("%s: upstream saw %q, want %q", tc.uri, got, tc.seenURI)
		}
		if got := resp.Header.Get("X-Seen-Original"); got != tc.original {
			t.Errorf("%s: x-envoy-original-path %q, want %q", tc.uri, got, tc.original)
		}
	}
}
