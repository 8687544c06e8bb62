package proxy

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestWeightedClusters: each request goes to one of the route's weighted
// clusters (never to a weight of 0), carries that cluster's request
// header mutations applied before the route's, and its response carries
// that cluster's response mutations.
func TestWeightedClusters(t *testing.T) {
	seen := make(chan [2]string, 1)
	backend := func(name string) string {
		return upstream(t, func(w http.ResponseWriter, r *http.Request) {
			seen <- [2]string{name, strings.Join(r.Header.Values("X-Pick"), ",")}
			w.Write([]byte(name))
		})
	}
	addrs := map[string]string{"blue": backend("blue"), "green": backend("green"), "never": backend("never")}
	yaml := yamlListener + `
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes:
              - match: {prefix: /}
                request_headers_to_add:
                - header: {key: x-pick, value: route}
                  append_action: ADD_IF_ABSENT
                response_headers_to_add:
                - header: {key: x-resp-pick, value: route}
                route:
                  weighted_clusters:
                    clusters:
                    - name: blue
                      weight: 1
                      request_headers_to_add:
                      - header: {key: x-pick, value: blue}
                      response_headers_to_add:
                      - header: {key: x-resp-pick, value: blue}
                    - name: never
                      weight: 0
                    - name: green
                      weight: 1
                      request_headers_to_add:
                      - header: {key: x-pick, value: green}
  clusters:
`
	for _, name := range []string{"blue", "green", "never"} {
		_, port, _ := strings.Cut(addrs[name], ":")
		yaml += fmt.Sprintf(`  - name: %s
    load_assignment:
      cluster_name: %s
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %s}}}}]}]
`, name, name, port)
	}
	f := startYAML(t, yaml, "")
	counts := map[string]int{}
	// With equal weights, 200 requests all landing on one cluster has
	// odds of 2^-199.
	for i := 0; i < 200; i++ {
		req, _ := http.NewRequest("GET", "http://"+f.addr+"/", nil)
		resp, body := do(t, req)
		got := <-seen
		if resp.StatusCode != 200 || body != got[0] {
			t.Fatalf("request %d: %d %q from %s", i, resp.StatusCode, body, got[0])
		}
		counts[got[0]]++
		// The cluster's x-pick came first, so the route's ADD_IF_ABSENT
		// added nothing.
		if got[1] != got[0] {
			t.Fatalf("request %d to %s: upstream x-pick %q, want %q", i, got[0], got[1], got[0])
		}
		want := []string{"route"}
		if got[0] == "blue" {
			want = []string{"blue", "route"}
		}
		if v := resp.Header.Values("X-Resp-Pick"); !slices.Equal(v, want) {
			t.Fatalf("request %d to %s: x-resp-pick %q, want %q", i, got[0], v, want)
		}
	}
	if counts["never"] != 0 || counts["blue"] == 0 || counts["green"] == 0 {
		t.Errorf("requests per cluster: %v", counts)
	}
	t.Logf("requests per cluster: %v", counts)
}
