package proxy

import (
	"net"
	"net/http"
	"strings"
	"testing"
)

// TestAddUserAgent: with add_user_agent, requests go upstream with this
// proxy's node.cluster in x-envoy-downstream-service-cluster (replacing a
// client's), its node.id in x-envoy-downstream-service-node, and
// node.cluster as user-agent when the client sent none or an empty one,
// as Envoy's mutateRequestHeaders; without it, nothing is added.
func TestAddUserAgent(t *testing.T) {
	seen := make(chan http.Header, 1)
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
	})
	_, port, _ := net.SplitHostPort(up)
	for _, tc := range []struct {
		name                string
		add                 bool
		node                string
		userAgent           string // "-": none sent
		wantUA, wantCluster string
		wantNode            string
	}{
		{"no user-agent", true, "node: {id: edge-1, cluster: front}\n", "-", "front", "front", "edge-1"},
		{"empty user-agent", true, "node: {id: edge-1, cluster: front}\n", "", "front", "front", "edge-1"},
		{"client's user-agent kept", true, "node: {id: edge-1, cluster: front}\n", "curl/8", "curl/8", "front", "edge-1"},
		{"no node id", true, "node: {cluster: front}\n", "curl/8", "curl/8", "front", ""},
		{"off", false, "node: {id: edge-1, cluster: front}\n", "-", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.node + yamlListener + `
            virtual_hosts: [{name: vh, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: up}}]}]
` + yamlClusters
			if tc.add {
				cfg = strings.Replace(cfg, "stat_prefix: in\n", "stat_prefix: in\n          add_user_agent: true\n", 1)
			}
			f := startYAML(t, strings.NewReplacer("{{UPPORT}}", port, "{{DOWNPORT}}", "1").Replace(cfg), up)
			req, _ := http.NewRequest("GET", "http://"+f.addr+"/", nil)
			req.Header.Set("X-Envoy-Downstream-Service-Cluster", "spoofed")
			if tc.userAgent == "-" {
				req.Header["User-Agent"] = nil // Go's client sends none then
			} else {
				req.Header.Set("User-Agent", tc.userAgent)
			}
			resp, body := do(t, req)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d %q", resp.StatusCode, body)
			}
			h := <-seen
			if got := h.Get("User-Agent"); got != tc.wantUA {
				t.Errorf("user-agent %q, want %q", got, tc.wantUA)
			}
			if tc.add {
				if got := h.Get("X-Envoy-Downstream-Service-Cluster"); got != tc.wantCluster {
					t.Errorf("x-envoy-downstream-service-cluster %q, want %q", got, tc.wantCluster)
				}
			}
			if got := h.Get("X-Envoy-Downstream-Service-Node"); got != tc.wantNode {
				t.Errorf("x-envoy-downstream-service-node %q, want %q", got, tc.wantNode)
			}
		})
	}
}
