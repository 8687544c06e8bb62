package extauthz_test

import (
	"context"
	"io"
	"net/http"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"

	"github.com/wasmproxy/wasmproxy/filters/internal/inproc"
)

type allowAll struct {
	authv3.UnimplementedAuthorizationServer
}

func (allowAll) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{Status: &status.Status{}}, nil
}

// BenchmarkRequest is one GET through the in-process proxy: on a route
// where ext_authz is disabled (the baseline), and checked by a gRPC and
// by an HTTP authorization server on loopback. The difference is the
// cost of a check: a callout round trip on the proxy's cluster.
func BenchmarkRequest(b *testing.B) {
	grpcAuthz := inproc.GRPCServer(b, func(gs *grpc.Server) { authv3.RegisterAuthorizationServer(gs, allowAll{}) })
	httpAuthz := inproc.Upstream(b, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	up := inproc.Upstream(b, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	grpcBase := startProxy(b, `
              grpc_service: {envoy_grpc: {cluster_name: authz}, timeout: 60s}`, up, grpcAuthz, true)
	httpBase := startProxy(b, `
              http_service: {server_uri: {uri: "http://authz", cluster: authz, timeout: 60s}}`, up, httpAuthz, false)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	for _, c := range []struct{ name, url string }{
		{"disabled", grpcBase + "/off"}, {"grpc", grpcBase + "/x"}, {"http", httpBase + "/x"},
	} {
		b.Run(c.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				resp, err := client.Get(c.url)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}
