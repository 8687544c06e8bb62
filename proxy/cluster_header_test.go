package proxy

import (
	"net/http"
	"strings"
	"testing"
)

// TestClusterHeader: a route's cluster_header sends the request to the
// cluster its header names; without the header, or naming no cluster,
// the router answers 503 cluster_not_found, as Envoy.
func TestClusterHeader(t *testing.T) {
	a := upstream(t, func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("a")) })
	b := upstream(t, func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("b")) })
	_, aPort, _ := strings.Cut(a, ":")
	_, bPort, _ := strings.Cut(b, ":")
	yaml := yamlListener + `
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes:
              - match: {prefix: /}
                route: {cluster_header: X-Route-To}
  clusters:
  - name: a
    load_assignment:
      cluster_name: a
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: ` + aPort + `}}}}]}]
  - name: b
    load_assignment:
      cluster_name: b
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: ` + bPort + `}}}}]}]
`
	f := startYAML(t, yaml, "")
	for _, tc := range []struct {
		header     string
		wantStatus int
		wantBody   string
	}{
		{"a", 200, "a"},
		{"b", 200, "b"},
		{"", 503, ""},
		{"c", 503, ""},
	} {
		req, _ := http.NewRequest("GET", "http://"+f.addr+"/x", nil)
		if tc.header != "" {
			req.Header.Set("X-Route-To", tc.header)
		}
		resp, body := do(t, req)
		if resp.StatusCode != tc.wantStatus || (tc.wantBody != "" && body != tc.wantBody) {
			t.Errorf("x-route-to %q: %d %q, want %d %q", tc.header, resp.StatusCode, body, tc.wantStatus, tc.wantBody)
		}
	}
	if n := f.st.Counter("cluster.a.upstream_rq_total").Value(); n != 1 {
		t.Errorf("cluster a: %d requests, want 1", n)
	}
}
