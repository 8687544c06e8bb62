package headermutation_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/filters/internal/inproc"
)

// TestInProcess runs the filter in the library proxy with a real client
// and upstream: request mutations (remove, a formatted value, appends)
// reach the upstream, response mutations (a value from the request,
// remove_on_match) reach the client, and the filter's, route's and
// virtual host's mutations apply in Envoy's order, reversed by
// most_specific_header_mutations_wins.
func TestInProcess(t *testing.T) {
	up := inproc.Upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Internal-A", "1")
		w.Header().Set("X-Internal-B", "2")
		w.Header().Set("X-Keep", "3")
		fmt.Fprintf(w, "secret=%q client=%q order=%q", r.Header.Get("X-Secret"), r.Header.Get("X-Client"), strings.Join(r.Header.Values("X-Order"), ","))
	}))
	listener := func(name, addr string, mostSpecificWins bool) string {
		return fmt.Sprintf(`
  - name: %s
    address: {socket_address: {address: %s, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: %s
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              typed_per_filter_config:
                hm:
                  "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute
                  mutations: {request_mutations: [{append: {header: {key: x-order, value: vhost}}}]}
              routes:
              - match: {prefix: /}
                route: {cluster: upstream}
                typed_per_filter_config:
                  hm:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute
                    mutations: {request_mutations: [{append: {header: {key: x-order, value: route}}}]}
          http_filters:
          - name: hm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
              most_specific_header_mutations_wins: %v
              mutations:
                request_mutations:
                - remove: x-secret
                - append: {header: {key: x-client, value: "%%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%%"}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
                - append: {header: {key: x-order, value: filter}}
                response_mutations:
                - append: {header: {key: x-resp-path, value: "%%REQ(:PATH)%%"}}
                - remove_on_match: {key_matcher: {prefix: x-internal-}}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router`, name, addr, name, mostSpecificWins)
	}
	p := inproc.Start(t, `
static_resources:
  listeners:`+listener("default", "127.0.0.1", false)+listener("reversed", "127.0.0.2", true)+`
  clusters:`+inproc.Cluster("upstream", up))
	client := &http.Client{Timeout: 60 * time.Second}
	for listener, order := range map[string]string{"default": "filter,route,vhost", "reversed": "filter,vhost,route"} {
		addr := p.Addr(listener)
		req, _ := http.NewRequest("GET", "http://"+addr+"/p?q=1", nil)
		req.Header.Set("X-Secret", "s")
		req.Header.Set("X-Client", "spoofed")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// The client's address: the kernel picks 127.0.0.1 for either listener.
		if want := fmt.Sprintf("secret=%q client=%q order=%q", "", "127.0.0.1", order); string(b) != want {
			t.Errorf("%s: upstream saw %s, want %s", listener, b, want)
		}
		if got := resp.Header.Get("X-Resp-Path"); got != "/p?q=1" {
			t.Errorf("%s: x-resp-path %q, want /p?q=1", listener, got)
		}
		if resp.Header.Get("X-Internal-A") != "" || resp.Header.Get("X-Internal-B") != "" || resp.Header.Get("X-Keep") != "3" {
			t.Errorf("%s: response headers %v, want x-internal-* removed and x-keep kept", listener, resp.Header)
		}
	}
}
