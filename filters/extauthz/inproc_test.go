package extauthz_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"

	"github.com/wasmproxy/wasmproxy/filters/internal/inproc"
)

// holdServer allows /ok*, denies the rest, and holds /hold until the
// caller gives up, reporting both moments.
type holdServer struct {
	authv3.UnimplementedAuthorizationServer
	held, canceled chan struct{}
}

func (s *holdServer) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	path := req.GetAttributes().GetRequest().GetHttp().GetPath()
	switch {
	case path == "/hold":
		s.held <- struct{}{}
		<-ctx.Done()
		s.canceled <- struct{}{}
		return nil, ctx.Err()
	case strings.HasPrefix(path, "/ok"):
		return &authv3.CheckResponse{Status: &status.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-checked", Value: path}}},
		}}}, nil
	}
	return &authv3.CheckResponse{Status: &status.Status{Code: 7}}, nil
}

// TestInProcess runs the filter in the library proxy, so -race sees the
// filter, the engine and the callout together: concurrent checks apply
// their header changes on their own streams (the upstream echoes
// x-checked, which must name the request's own path), denials answer
// 403, a request body waits for the check, and a client that gives up while its check is in flight cancels
// the check (the server sees its context end).
func TestInProcess(t *testing.T) {
	ctx := context.Background()
	hs := &holdServer{held: make(chan struct{}, 1), canceled: make(chan struct{}, 1)}
	authz := inproc.GRPCServer(t, func(gs *grpc.Server) { authv3.RegisterAuthorizationServer(gs, hs) })
	up := inproc.Upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Header.Get("X-Checked"))
		io.Copy(w, r.Body)
	}))

	base := startProxy(t, `
              grpc_service: {envoy_grpc: {cluster_name: authz}, timeout: 600s}`, up, authz, true)
	client := &http.Client{Timeout: 60 * time.Second}

	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				path, want := fmt.Sprintf("/ok/%d/%d", w, i), 200
				if i%3 == 0 {
					path, want = fmt.Sprintf("/no/%d/%d", w, i), 403
				}
				resp, err := client.Get(base + path)
				if err != nil {
					errs <- err
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != want || want == 200 && string(b) != path {
					errs <- fmt.Errorf("%s: %d %q, want %d and x-checked %s", path, resp.StatusCode, b, want, path)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// A body (no with_request_body) is held while the check runs and
	// goes on after it.
	resp, err := client.Post(base+"/ok/post", "text/plain", strings.NewReader("and its body"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "/ok/postand its body" {
		t.Errorf("POST: %d %q, want 200 \"/ok/postand its body\"", resp.StatusCode, b)
	}

	rctx, cancel := context.WithCancel(ctx)
	req, _ := http.NewRequestWithContext(rctx, "GET", base+"/hold", nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	wait := func(ch chan struct{}, what string) {
		select {
		case <-ch:
		case <-time.After(60 * time.Second):
			t.Fatalf("timed out waiting for %s", what)
		}
	}
	wait(hs.held, "the held check")
	cancel()
	<-done
	wait(hs.canceled, "the abandoned check to be canceled")
	if resp, err := client.Get(base + "/ok/after"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("after an abandoned check: %v %v", resp, err)
	}
}

// startProxy runs the library proxy with an ext_authz filter (its
// typed_config fields after @type), an upstream cluster and an authz
// cluster (HTTP/2 when h2), and returns its base URL.
func startProxy(t testing.TB, extAuthz string, upstream, authz int, h2 bool) string {
	t.Helper()
	authzCluster := inproc.Cluster
	if h2 {
		authzCluster = inproc.H2Cluster
	}
	p := inproc.Start(t, inproc.Config(`
              routes:
              - {match: {prefix: "/off"}, route: {cluster: upstream}, typed_per_filter_config: {envoy.filters.http.ext_authz: {"@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute, disabled: true}}}
              - {match: {prefix: "/"}, route: {cluster: upstream}}`, `
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz`+extAuthz, inproc.Cluster("upstream", upstream), authzCluster("authz", authz)))
	return "http://" + p.Addr("main")
}

// TestTimeout: an HTTP authorization server that never answers is an
// error once server_uri.timeout passes: the client gets status_on_error
// and the upstream is not reached.
func TestTimeout(t *testing.T) {
	stuck := inproc.Upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	var hit atomic.Bool
	up := inproc.Upstream(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hit.Store(true) }))
	base := startProxy(t, `
              status_on_error: {code: GatewayTimeout}
              http_service: {server_uri: {uri: "http://authz", cluster: authz, timeout: 0.2s}}`,
		up, stuck, false)
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Get(base + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 504 {
		t.Errorf("status %d, want 504 (status_on_error)", resp.StatusCode)
	}
	if hit.Load() {
		t.Error("the upstream was reached after a failed check")
	}
}

// TestHTTPBody: with_request_body sends the request body to an HTTP
// authorization server (which decides on it), and the allowed request
// reaches the upstream with its body whole.
func TestHTTPBody(t *testing.T) {
	authz := inproc.Upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if string(b) != "let me in" || r.Header.Get("X-Envoy-Auth-Partial-Body") != "false" {
			w.WriteHeader(403)
			fmt.Fprintf(w, "body %q partial %q", b, r.Header.Get("X-Envoy-Auth-Partial-Body"))
		}
	}))
	up := inproc.Upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(w, r.Body) }))
	base := startProxy(t, `
              with_request_body: {max_request_bytes: 1000}
              http_service: {server_uri: {uri: "http://authz", cluster: authz, timeout: 60s}}`,
		up, authz, false)
	client := &http.Client{Timeout: 60 * time.Second}
	for body, want := range map[string]int{"let me in": 200, "stay out": 403} {
		resp, err := client.Post(base+"/x", "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || want == 200 && string(b) != body {
			t.Errorf("POST %q: %d %q, want %d", body, resp.StatusCode, b, want)
		}
	}
}
