package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
)

// overLimitFor is a rate limit service that limits requests whose
// descriptors carry tier=free.
type overLimitFor struct {
	rlsv3.UnimplementedRateLimitServiceServer
}

func (overLimitFor) ShouldRateLimit(_ context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	for _, d := range req.GetDescriptors() {
		for _, e := range d.GetEntries() {
			if e.GetKey() == "tier" && e.GetValue() == "free" {
				return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT}, nil
			}
		}
	}
	return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK}, nil
}

// TestHeaderToMetadataLuaRateLimit: three native filters through the
// binary, sharing one stream's dynamic metadata. header_to_metadata
// turns x-tier into metadata; a Lua script reads it and adds a request
// header; the global rate limit filter asks a grpc-go service, which
// limits tier=free; the route echoes the metadata back with
// %DYNAMIC_METADATA%.
func TestHeaderToMetadataLuaRateLimit(t *testing.T) {
	up := startEchoUpstream(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	rlsv3.RegisterRateLimitServiceServer(gs, overLimitFor{})
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)

	filters := `                  - name: envoy.filters.http.header_to_metadata
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.header_to_metadata.v3.Config
                      request_rules:
                        - header: x-tier
                          on_header_present: {metadata_namespace: app, key: tier}
                          on_header_missing: {metadata_namespace: app, key: tier, value: anonymous}
                  - name: envoy.filters.http.lua
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
                      default_source_code:
                        inline_string: |
                          function envoy_on_request(handle)
                            local app = handle:streamInfo():dynamicMetadata():get("app")
                            handle:headers():add("x-lua-tier", app["tier"])
                          end
                  - name: envoy.filters.http.ratelimit
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit
                      domain: e2e
                      timeout: 30s
                      rate_limit_service: {transport_api_version: V3, grpc_service: {envoy_grpc: {cluster_name: rls}}}`
	routes := `                        - match: {prefix: "/"}
                          route:
                            cluster: backend
                            rate_limits: [{actions: [{request_headers: {header_name: x-lua-tier, descriptor_key: tier}}]}]
                          response_headers_to_add:
                            - header: {key: x-md-tier, value: "%DYNAMIC_METADATA(app:tier)%"}`
	clusters := fmt.Sprintf(`    - name: rls
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config: {http2_protocol_options: {}}
      load_assignment:
        cluster_name: rls
        endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %d}}}}]}]`, ln.Addr().(*net.TCPAddr).Port)
	dir, listen, admin := proxySetup(t, up.port, map[string]string{"{{FILTERS}}": filters, "{{ROUTES}}": routes, "{{CLUSTERS}}": clusters})
	run(t, dir, listen, admin, "-c", "envoy.yaml")
	client := &http.Client{Timeout: 30 * time.Second}
	get := func(tier string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+listen+"/x", nil)
		if tier != "" {
			req.Header.Set("X-Tier", tier)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	for tier, want := range map[string]string{"gold": "gold", "": "anonymous"} {
		resp, _ := get(tier)
		if resp.StatusCode != 200 || resp.Header.Get("X-Seen-Lua-Tier") != want || resp.Header.Get("X-Md-Tier") != want {
			t.Errorf("tier %q: %s, lua saw %q, metadata %q; want 200 and %q", tier, resp.Status, resp.Header.Get("X-Seen-Lua-Tier"), resp.Header.Get("X-Md-Tier"), want)
		}
	}
	resp, _ := get("free")
	if resp.StatusCode != 429 || resp.Header.Get("X-Envoy-Ratelimited") != "true" {
		t.Errorf("tier free: %s x-envoy-ratelimited %q; want 429 true", resp.Status, resp.Header.Get("X-Envoy-Ratelimited"))
	}
	for name, want := range map[string]int{
		"cluster.backend.ratelimit.ok": 2, "cluster.backend.ratelimit.over_limit": 1, "http.ingress_http.lua.executions": 3,
	} {
		if n := adminStat(t, admin, name); n != want {
			t.Errorf("%s = %d, want %d", name, n, want)
		}
	}
}
