package proxy

import (
	"net/http"
	"strings"
	"testing"
)

// TestRouteRewrites: regex_rewrite, prefix_rewrite and the host
// rewrites (literal, from a header, auto for a DNS cluster and for an
// endpoint with a hostname) change what the upstream receives, the path
// rewrites keeping the original in x-envoy-original-path, as Envoy does.
func TestRouteRewrites(t *testing.T) {
	type seenReq struct{ host, uri, original string }
	seen := make(chan seenReq, 1)
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		seen <- seenReq{r.Host, r.RequestURI, r.Header.Get("X-Envoy-Original-Path")}
	})
	_, port, _ := strings.Cut(up, ":")
	yaml := yamlListener + `
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes:
              - match: {prefix: /service/}
                route:
                  cluster: up
                  regex_rewrite:
                    pattern: {regex: "^/service/([^/]+)(/.*)$"}
                    substitution: "\\2/instance/\\1"
              - match: {prefix: /literal/}
                route: {cluster: up, prefix_rewrite: /, host_rewrite_literal: backend.internal}
              - match: {prefix: /header}
                route: {cluster: up, host_rewrite_header: x-host}
              - match: {prefix: /dns}
                route: {cluster: dns, auto_host_rewrite: true}
              - match: {prefix: /named}
                route: {cluster: named, auto_host_rewrite: true}
              - match: {prefix: /static}
                route: {cluster: up, auto_host_rewrite: true}
  clusters:
  - name: up
    load_assignment:
      cluster_name: up
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: ` + port + `}}}}]}]
  - name: dns
    type: STRICT_DNS
    dns_lookup_family: V4_ONLY
    load_assignment:
      cluster_name: dns
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: localhost, port_value: ` + port + `}}}}]}]
  - name: named
    load_assignment:
      cluster_name: named
      endpoints: [{lb_endpoints: [{endpoint: {hostname: svc.example, address: {socket_address: {address: 127.0.0.1, port_value: ` + port + `}}}}]}]
`
	f := startYAML(t, yaml, "")
	for _, tc := range []struct {
		uri, header string
		want        seenReq
	}{
		{"/service/foo/v1/api?x=1", "", seenReq{f.addr, "/v1/api/instance/foo?x=1", "/service/foo/v1/api?x=1"}},
		{"/service/nomatch", "", seenReq{f.addr, "/service/nomatch", "/service/nomatch"}},
		{"/literal/a?b", "", seenReq{"backend.internal", "/a?b", "/literal/a?b"}},
		{"/header", "chosen.example", seenReq{"chosen.example", "/header", ""}},
		{"/header", "", seenReq{f.addr, "/header", ""}},
		{"/dns", "", seenReq{"localhost", "/dns", ""}},
		{"/named", "", seenReq{"svc.example", "/named", ""}},
		{"/static", "", seenReq{f.addr, "/static", ""}}, // a STATIC endpoint has no hostname
	} {
		req, _ := http.NewRequest("GET", "http://"+f.addr+tc.uri, nil)
		if tc.header != "" {
			req.Header.Set("X-Host", tc.header)
		}
		resp, _ := do(t, req)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d", tc.uri, resp.StatusCode)
		}
		if got := <-seen; got != tc.want {
			t.Errorf("%s (x-host %q): upstream got %+v, want %+v", tc.uri, tc.header, got, tc.want)
		}
	}
}
