package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

const extAuthzType = `"@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz`
const extAuthzPerRoute = `"@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute`

// authzServer is a real envoy.service.auth.v3 Authorization server: it
// denies paths under /deny (401, a header and a body) and allows the
// rest, setting x-user-id upstream and x-authz on the response. It
// records the requests it saw.
type authzServer struct {
	authv3.UnimplementedAuthorizationServer
	mu   sync.Mutex
	seen []*authv3.CheckRequest
	md   metadata.MD // of the last call
}

func (a *authzServer) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	a.mu.Lock()
	a.seen = append(a.seen, req)
	a.md = md
	a.mu.Unlock()
	if strings.HasPrefix(req.GetAttributes().GetRequest().GetHttp().GetPath(), "/deny") {
		return &authv3.CheckResponse{
			Status: &status.Status{Code: 7},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status:  &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized},
				Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-why", Value: "nope"}}},
				Body:    "go away",
			}},
		}, nil
	}
	return &authv3.CheckResponse{
		Status: &status.Status{Code: 0},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers:              []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-user-id", Value: "alice"}}},
			HeadersToRemove:      []string{"x-secret"},
			ResponseHeadersToAdd: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-authz", Value: "ok"}}},
		}},
	}, nil
}

func (a *authzServer) last(t *testing.T) *authv3.CheckRequest {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.seen) == 0 {
		t.Fatal("the authorization server saw no request")
	}
	return a.seen[len(a.seen)-1]
}

func (a *authzServer) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.seen)
}

func startAuthzServer(t *testing.T) (*authzServer, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	a := &authzServer{}
	authv3.RegisterAuthorizationServer(gs, a)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	return a, ln.Addr().(*net.TCPAddr).Port
}

// authzCluster is a cluster named authz at port, over HTTP/2 when h2.
func authzCluster(port int, h2 bool) string {
	opts := ""
	if h2 {
		opts = `      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config: {http2_protocol_options: {}}
`
	}
	return fmt.Sprintf(`    - name: authz
%s      load_assignment:
        cluster_name: authz
        endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %d}}}}]}]`, opts, port)
}

type reply struct {
	status int
	header http.Header
	body   string
}

func send(t *testing.T, method, url, body string, hdr map[string]string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(b)}
}

// TestExtAuthzGRPC: envoy.filters.http.ext_authz against a real gRPC
// Authorization server, through the binary. Allowed requests reach the
// upstream with the server's headers set (and x-secret removed) and the
// client gets its response header; a denied one gets the server's 401,
// header and body; a route with disabled: true is not checked; a route's
// context_extensions, initial_metadata and the request body (with_request_body) reach the
// server; a body over max_request_bytes gets 413. The stats count it.
func TestExtAuthzGRPC(t *testing.T) {
	authz, port := startAuthzServer(t)
	up := startEchoUpstream(t)
	filters := `                  - name: envoy.filters.http.ext_authz
                    typed_config:
                      ` + extAuthzType + `
                      grpc_service: {envoy_grpc: {cluster_name: authz}, timeout: 20s, initial_metadata: [{key: x-tenant, value: t1}]}
                      with_request_body: {max_request_bytes: 64}`
	routes := `                        - match: {prefix: "/open"}
                          route: {cluster: backend}
                          typed_per_filter_config:
                            envoy.filters.http.ext_authz:
                              ` + extAuthzPerRoute + `
                              disabled: true
                        - match: {prefix: "/ctx"}
                          route: {cluster: backend}
                          typed_per_filter_config:
                            envoy.filters.http.ext_authz:
                              ` + extAuthzPerRoute + `
                              check_settings: {context_extensions: {tier: gold}}
                        - match: {prefix: "/"}
                          route: {cluster: backend}`
	dir, listen, admin := proxySetup(t, up.port, map[string]string{
		"{{FILTERS}}": filters, "{{ROUTES}}": routes, "{{CLUSTERS}}": authzCluster(port, true),
	})
	run(t, dir, listen, admin, "-c", "envoy.yaml")
	base := "http://" + listen

	r := send(t, "GET", base+"/hello", "", map[string]string{"X-Secret": "s3", "X-Keep": "k"})
	if r.status != 200 || r.header.Get("X-Seen-User-Id") != "alice" || r.header.Get("X-Authz") != "ok" ||
		r.header.Get("X-Seen-Secret") != "" || r.header.Get("X-Seen-Keep") != "k" {
		t.Errorf("allowed: %d, x-seen-user-id %q, x-authz %q, x-seen-secret %q, x-seen-keep %q; want 200, alice, ok, removed, k",
			r.status, r.header.Get("X-Seen-User-Id"), r.header.Get("X-Authz"), r.header.Get("X-Seen-Secret"), r.header.Get("X-Seen-Keep"))
	}
	if h := authz.last(t).GetAttributes().GetRequest().GetHttp(); h.GetMethod() != "GET" || h.GetPath() != "/hello" || h.GetHeaders()["x-secret"] != "s3" {
		t.Errorf("check request: method %q path %q headers %v", h.GetMethod(), h.GetPath(), h.GetHeaders())
	}
	authz.mu.Lock()
	md := authz.md
	authz.mu.Unlock()
	if got := md.Get("x-tenant"); len(got) != 1 || got[0] != "t1" {
		t.Errorf("initial_metadata x-tenant %v, want [t1]", got)
	}
	if a := authz.last(t).GetAttributes(); a.GetSource().GetAddress().GetSocketAddress().GetAddress() != "127.0.0.1" ||
		a.GetDestination().GetAddress().GetSocketAddress().GetPortValue() == 0 || a.GetRequest().GetHttp().GetProtocol() != "HTTP/1.1" ||
		a.GetRequest().GetTime() == nil {
		t.Errorf("check request source %v, destination %v, protocol %q, time %v", a.GetSource(), a.GetDestination(), a.GetRequest().GetHttp().GetProtocol(), a.GetRequest().GetTime())
	}

	r = send(t, "GET", base+"/deny/x", "", nil)
	if r.status != 401 || r.body != "go away" || r.header.Get("X-Why") != "nope" {
		t.Errorf("denied: %d %q x-why %q; want 401 \"go away\" nope", r.status, r.body, r.header.Get("X-Why"))
	}
	if up.served("/deny/x") {
		t.Error("a denied request reached the upstream")
	}

	before := authz.count()
	if r = send(t, "GET", base+"/open/x", "", nil); r.status != 200 {
		t.Errorf("disabled route: %d, want 200", r.status)
	}
	if authz.count() != before {
		t.Error("a route with ext_authz disabled was checked")
	}

	send(t, "GET", base+"/ctx/a", "", nil)
	if ext := authz.last(t).GetAttributes().GetContextExtensions(); ext["tier"] != "gold" {
		t.Errorf("context_extensions %v, want tier=gold", ext)
	}

	if r = send(t, "POST", base+"/echo", "hello body", nil); r.status != 200 || r.body != "hello body" {
		t.Errorf("POST with body: %d %q", r.status, r.body)
	}
	if h := authz.last(t).GetAttributes().GetRequest().GetHttp(); h.GetBody() != "hello body" || h.GetHeaders()["x-envoy-auth-partial-body"] != "false" {
		t.Errorf("check request body %q, partial %q; want the request body, false", h.GetBody(), h.GetHeaders()["x-envoy-auth-partial-body"])
	}
	before = authz.count()
	if r = send(t, "POST", base+"/echo", strings.Repeat("x", 100), nil); r.status != 413 {
		t.Errorf("body over max_request_bytes: %d, want 413", r.status)
	}
	if authz.count() != before {
		t.Error("a body over max_request_bytes (no allow_partial_message) was checked")
	}
	for name, want := range map[string]int{"http.ingress_http.ext_authz.ok": 3, "http.ingress_http.ext_authz.denied": 1, "http.ingress_http.ext_authz.error": 0} {
		if n := adminStat(t, admin, name); n != want {
			t.Errorf("%s = %d, want %d", name, n, want)
		}
	}
}

// TestExtAuthzPartialBody: with allow_partial_message the check gets the
// first max_request_bytes bytes, packed as bytes, and the request goes on
// whole.
func TestExtAuthzPartialBody(t *testing.T) {
	authz, port := startAuthzServer(t)
	up := startEchoUpstream(t)
	filters := `                  - name: envoy.filters.http.ext_authz
                    typed_config:
                      ` + extAuthzType + `
                      grpc_service: {envoy_grpc: {cluster_name: authz}, timeout: 20s}
                      with_request_body: {max_request_bytes: 8, allow_partial_message: true, pack_as_bytes: true}`
	dir, listen, admin := proxySetup(t, up.port, map[string]string{"{{FILTERS}}": filters, "{{CLUSTERS}}": authzCluster(port, true)})
	run(t, dir, listen, admin, "-c", "envoy.yaml")
	body := "0123456789abcdef"
	if r := send(t, "POST", "http://"+listen+"/echo", body, nil); r.status != 200 || r.body != body {
		t.Errorf("partial: %d %q, want 200 and the whole body", r.status, r.body)
	}
	h := authz.last(t).GetAttributes().GetRequest().GetHttp()
	if string(h.GetRawBody()) != "01234567" || h.GetBody() != "" || h.GetHeaders()["x-envoy-auth-partial-body"] != "true" {
		t.Errorf("check request raw_body %q body %q partial %q; want 01234567, empty, true", h.GetRawBody(), h.GetBody(), h.GetHeaders()["x-envoy-auth-partial-body"])
	}
}

// TestExtAuthzServerDown: the authorization cluster refuses connections.
// Without failure_mode_allow the client gets status_on_error (default
// 403); with it the request goes on, marked with
// x-envoy-auth-failure-mode-allowed, and failure_mode_allowed counts.
func TestExtAuthzServerDown(t *testing.T) {
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprintf("failure_mode_allow=%v", allow), func(t *testing.T) {
			up := startEchoUpstream(t)
			closed := freePort(t) // nothing listens there
			filters := fmt.Sprintf(`                  - name: envoy.filters.http.ext_authz
                    typed_config:
                      `+extAuthzType+`
                      grpc_service: {envoy_grpc: {cluster_name: authz}, timeout: 20s}
                      failure_mode_allow: %v
                      failure_mode_allow_header_add: true
                      stat_prefix: down`, allow)
			dir, listen, admin := proxySetup(t, up.port, map[string]string{"{{FILTERS}}": filters, "{{CLUSTERS}}": authzCluster(closed, true)})
			run(t, dir, listen, admin, "-c", "envoy.yaml")
			r := send(t, "GET", "http://"+listen+"/hello", "", nil)
			if allow {
				if r.status != 200 || r.header.Get("X-Seen-Envoy-Auth-Failure-Mode-Allowed") != "true" {
					t.Errorf("%d, x-envoy-auth-failure-mode-allowed seen %q; want 200, true", r.status, r.header.Get("X-Seen-Envoy-Auth-Failure-Mode-Allowed"))
				}
			} else if r.status != 403 || up.served("/hello") {
				t.Errorf("%d (upstream reached: %v), want 403", r.status, up.served("/hello"))
			}
			fma := 0
			if allow {
				fma = 1
			}
			for name, want := range map[string]int{"http.ingress_http.ext_authz.down.error": 1, "http.ingress_http.ext_authz.down.failure_mode_allowed": fma} {
				if n := adminStat(t, admin, name); n != want {
					t.Errorf("%s = %d, want %d", name, n, want)
				}
			}
		})
	}
}

// TestExtAuthzHTTP: an http_service through the binary against a real
// HTTP authorization server. The server gets the path under path_prefix,
// the default and allowed headers and headers_to_add, but not other
// headers; its 200 lets the request on with allowed_upstream_headers
// set, the request headers its x-envoy-auth-headers-to-remove names
// removed, and allowed_client_headers_on_success on the response; its 403
// reaches the client with the body and only allowed_client_headers; a
// 5xx is an error answered with status_on_error.
func TestExtAuthzHTTP(t *testing.T) {
	var mu sync.Mutex
	var seen []*http.Request
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r)
		mu.Unlock()
		switch r.Header.Get("X-User") {
		case "bob":
			w.Header().Set("X-User-Id", "bob-1")
			w.Header().Set("X-Trace", "t1")
			w.Header().Set("X-Not-Allowed", "n")
			w.Header().Set("X-Envoy-Auth-Headers-To-Remove", "x-drop, x-drop-too")
			w.WriteHeader(200)
		case "broken":
			w.WriteHeader(500)
		default:
			w.Header().Set("X-Reason", "no-user")
			w.Header().Set("X-Hidden", "h")
			w.WriteHeader(403)
			io.WriteString(w, "who are you")
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	up := startEchoUpstream(t)
	filters := `                  - name: envoy.filters.http.ext_authz
                    typed_config:
                      ` + extAuthzType + `
                      status_on_error: {code: ServiceUnavailable}
                      http_service:
                        server_uri: {uri: "http://authz", cluster: authz, timeout: 20s}
                        path_prefix: /authz
                        authorization_request:
                          allowed_headers: {patterns: [{exact: x-user}]}
                          headers_to_add: [{key: x-from, value: proxy}]
                        authorization_response:
                          allowed_upstream_headers: {patterns: [{exact: x-user-id}]}
                          allowed_client_headers: {patterns: [{exact: x-reason}]}
                          allowed_client_headers_on_success: {patterns: [{exact: x-trace}]}`
	dir, listen, admin := proxySetup(t, up.port, map[string]string{"{{FILTERS}}": filters, "{{CLUSTERS}}": authzCluster(ln.Addr().(*net.TCPAddr).Port, false)})
	run(t, dir, listen, admin, "-c", "envoy.yaml")
	base := "http://" + listen
	last := func() *http.Request {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) == 0 {
			t.Fatal("the authorization server saw no request")
		}
		return seen[len(seen)-1]
	}

	r := send(t, "GET", base+"/hello?q=1", "", map[string]string{"X-User": "bob", "X-Other": "o", "Authorization": "Bearer b", "X-Drop": "d", "X-Drop-Too": "d2"})
	if r.status != 200 || r.header.Get("X-Seen-User-Id") != "bob-1" || r.header.Get("X-Trace") != "t1" || r.header.Get("X-Seen-Not-Allowed") != "" ||
		r.header.Get("X-Seen-Drop") != "" || r.header.Get("X-Seen-Drop-Too") != "" || r.header.Get("X-Seen-Other") != "o" {
		t.Errorf("allowed: %d, x-seen-user-id %q, x-trace %q, x-seen-not-allowed %q, x-seen-drop %q %q, x-seen-other %q; want 200, bob-1, t1, none, removed, o",
			r.status, r.header.Get("X-Seen-User-Id"), r.header.Get("X-Trace"), r.header.Get("X-Seen-Not-Allowed"), r.header.Get("X-Seen-Drop"), r.header.Get("X-Seen-Drop-Too"), r.header.Get("X-Seen-Other"))
	}
	if q := last(); q.Method != "GET" || q.RequestURI != "/authz/hello?q=1" || q.Header.Get("X-From") != "proxy" ||
		q.Header.Get("Authorization") != "Bearer b" || q.Header.Get("X-Other") != "" || q.Host != listen {
		t.Errorf("check request: %s %s host %q, x-from %q, authorization %q, x-other %q", q.Method, q.RequestURI, q.Host,
			q.Header.Get("X-From"), q.Header.Get("Authorization"), q.Header.Get("X-Other"))
	}

	r = send(t, "GET", base+"/private", "", nil)
	if r.status != 403 || r.body != "who are you" || r.header.Get("X-Reason") != "no-user" || r.header.Get("X-Hidden") != "" {
		t.Errorf("denied: %d %q, x-reason %q, x-hidden %q; want 403 \"who are you\", no-user, none", r.status, r.body, r.header.Get("X-Reason"), r.header.Get("X-Hidden"))
	}
	if r = send(t, "GET", base+"/hello", "", map[string]string{"X-User": "broken"}); r.status != 503 {
		t.Errorf("authorization server 500: %d, want 503 (status_on_error)", r.status)
	}
	for name, want := range map[string]int{"http.ingress_http.ext_authz.ok": 1, "http.ingress_http.ext_authz.denied": 1, "http.ingress_http.ext_authz.error": 1} {
		if n := adminStat(t, admin, name); n != want {
			t.Errorf("%s = %d, want %d", name, n, want)
		}
	}
}

// TestExtAuthzVirtualHostDisabled: ExtAuthzPerRoute on the virtual host
// disables the check for its routes, and a route's own entry with
// check_settings is more specific and checks again.
func TestExtAuthzVirtualHostDisabled(t *testing.T) {
	authz, port := startAuthzServer(t)
	up := startEchoUpstream(t)
	filters := `                  - name: envoy.filters.http.ext_authz
                    typed_config:
                      ` + extAuthzType + `
                      grpc_service: {envoy_grpc: {cluster_name: authz}, timeout: 20s}`
	routes := `                        - match: {prefix: "/deny/checked"}
                          route: {cluster: backend}
                          typed_per_filter_config:
                            envoy.filters.http.ext_authz:
                              ` + extAuthzPerRoute + `
                              check_settings: {context_extensions: {route: checked}}
                        - match: {prefix: "/"}
                          route: {cluster: backend}
                      typed_per_filter_config:
                        envoy.filters.http.ext_authz:
                          ` + extAuthzPerRoute + `
                          disabled: true`
	dir, listen, admin := proxySetup(t, up.port, map[string]string{"{{FILTERS}}": filters, "{{ROUTES}}": routes, "{{CLUSTERS}}": authzCluster(port, true)})
	run(t, dir, listen, admin, "-c", "envoy.yaml")
	if r := send(t, "GET", "http://"+listen+"/deny/open", "", nil); r.status != 200 || authz.count() != 0 {
		t.Errorf("virtual host disabled: %d after %d checks, want 200 unchecked", r.status, authz.count())
	}
	if r := send(t, "GET", "http://"+listen+"/deny/checked", "", nil); r.status != 401 || authz.last(t).GetAttributes().GetContextExtensions()["route"] != "checked" {
		t.Errorf("route re-enables: %d, want 401 from the server with the route's context_extensions", r.status)
	}
}
