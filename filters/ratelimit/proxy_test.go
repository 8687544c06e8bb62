package ratelimit_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	wasmproxy "github.com/wasmproxy/wasmproxy"
	"github.com/wasmproxy/wasmproxy/filters/internal/inproc"
)

// rls is a rate limit service: it records each request's domain and
// descriptors and answers by the "user" entry: "blocked" is over the
// limit, "err" fails the call, "hold" waits for the caller to give up,
// anyone else is OK with headers, metadata and a descriptor status.
type rls struct {
	rlsv3.UnimplementedRateLimitServiceServer
	mu   sync.Mutex
	seen []string
	// held and canceled, when set, report a "hold" call's start and end.
	held, canceled chan struct{}
}

func (s *rls) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	var descs []string
	user := ""
	for _, d := range req.GetDescriptors() {
		var es []string
		for _, e := range d.GetEntries() {
			es = append(es, e.GetKey()+"="+e.GetValue())
			if e.GetKey() == "user" {
				user = e.GetValue()
			}
		}
		descs = append(descs, "["+strings.Join(es, ",")+"]")
	}
	s.mu.Lock()
	s.seen = append(s.seen, req.GetDomain()+" "+strings.Join(descs, ""))
	s.mu.Unlock()
	status := func(remaining uint32) []*rlsv3.RateLimitResponse_DescriptorStatus {
		return []*rlsv3.RateLimitResponse_DescriptorStatus{
			{Code: rlsv3.RateLimitResponse_OK, CurrentLimit: &rlsv3.RateLimitResponse_RateLimit{Name: "per-user", RequestsPerUnit: 10, Unit: rlsv3.RateLimitResponse_RateLimit_MINUTE}, LimitRemaining: remaining, DurationUntilReset: durationpb.New(30 * time.Second)},
			{Code: rlsv3.RateLimitResponse_OK, CurrentLimit: &rlsv3.RateLimitResponse_RateLimit{RequestsPerUnit: 100, Unit: rlsv3.RateLimitResponse_RateLimit_HOUR}, LimitRemaining: 50, DurationUntilReset: durationpb.New(time.Hour)},
		}
	}
	switch user {
	case "blocked":
		return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT, Statuses: status(0), RawBody: []byte("slow down"),
			ResponseHeadersToAdd: []*corev3.HeaderValue{{Key: "X-Rls", Value: "over"}}}, nil
	case "err":
		return nil, grpcstatus.Error(codes.Unavailable, "down for the test")
	case "hold":
		if s.held != nil {
			s.held <- struct{}{}
		}
		<-ctx.Done()
		if s.canceled != nil {
			s.canceled <- struct{}{}
		}
		return nil, ctx.Err()
	}
	md, _ := structpb.NewStruct(map[string]any{"tier": "gold"})
	return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK, Statuses: status(7), DynamicMetadata: md,
		RequestHeadersToAdd:  []*corev3.HeaderValue{{Key: "x-rl-user", Value: user}},
		ResponseHeadersToAdd: []*corev3.HeaderValue{{Key: "x-rls", Value: "ok"}}}, nil
}

func (s *rls) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.seen
	s.seen = nil
	return out
}

// startProxy runs the library proxy with a ratelimit filter (extra
// typed_config fields), routes with rate limit policies, an upstream
// that echoes x-rl-user, and the rate limit cluster over HTTP/2.
func startProxy(t *testing.T, extra string, upstream, rlsPort int) (base string, p *wasmproxy.Proxy) {
	t.Helper()
	ip := inproc.Start(t, "node: {id: n1, cluster: edge}\n"+inproc.Config(`
              rate_limits:
              - actions: [{generic_key: {descriptor_value: vh}}]
              response_headers_to_add:
              - header: {key: x-tier, value: "%DYNAMIC_METADATA(envoy.filters.http.ratelimit:tier)%"}
              routes:
              - match: {prefix: "/api"}
                route:
                  cluster: upstream
                  rate_limits:
                  - actions:
                    - generic_key: {descriptor_value: api}
                    - request_headers: {header_name: X-User, descriptor_key: user}
                  - actions:
                    - remote_address: {}
                    - destination_cluster: {}
                    - source_cluster: {}
                    - request_headers: {header_name: x-plan, descriptor_key: plan, skip_if_absent: true}
                  - actions:
                    - header_value_match: {descriptor_value: get, headers: [{name: ":method", string_match: {exact: GET}}]}
                  - actions:
                    - header_value_match: {descriptor_value: not-post, expect_match: false, headers: [{name: ":method", string_match: {exact: POST}}]}
                  - stage: 1
                    actions: [{generic_key: {descriptor_value: other-stage}}]
              - match: {prefix: "/include"}
                route:
                  cluster: upstream
                  include_vh_rate_limits: true
                  rate_limits: [{actions: [{generic_key: {descriptor_value: inc}}]}]
              - match: {prefix: "/ignore"}
                route: {cluster: upstream}
                typed_per_filter_config:
                  envoy.filters.http.ratelimit:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimitPerRoute
                    vh_rate_limits: IGNORE
              - match: {prefix: "/"}
                route: {cluster: upstream}`, `
          - name: envoy.filters.http.ratelimit
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit
              domain: edge-domain
              enable_x_ratelimit_headers: DRAFT_VERSION_03
              rate_limit_service:
                transport_api_version: V3
                grpc_service: {envoy_grpc: {cluster_name: rls}}`+extra, inproc.Cluster("upstream", upstream), inproc.H2Cluster("rls", rlsPort)))
	return "http://" + ip.Addr("main"), ip.Proxy
}

func servers(t *testing.T) (upstream int, svc *rls, rlsPort int) {
	t.Helper()
	svc = &rls{}
	rlsPort = inproc.GRPCServer(t, func(gs *grpc.Server) { rlsv3.RegisterRateLimitServiceServer(gs, svc) })
	upstream = inproc.Upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "user=%q", r.Header.Get("X-Rl-User"))
	}))
	return upstream, svc, rlsPort
}

type reply struct {
	status int
	body   string
	header http.Header
}

func send(t *testing.T, method, url string, hdr ...string) reply {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	for i := 0; i < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return reply{resp.StatusCode, string(b), resp.Header}
}

func statsText(p *wasmproxy.Proxy) string {
	rec := httptest.NewRecorder()
	p.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/stats", nil))
	return rec.Body.String()
}

// TestProxy runs the filter in the library proxy against a grpc-go rate
// limit service over real sockets. It proves the descriptors Envoy would
// send for every supported action (entries in order, a policy dropped
// when a header is absent, skip_if_absent, expect_match, stage), the
// virtual host's policies under OVERRIDE, INCLUDE and IGNORE, and each
// outcome: OK (the service's request and response headers, dynamic
// metadata, x-ratelimit-* headers), OVER_LIMIT (429 with the service's
// body and headers and x-envoy-ratelimited), and an error with the
// default failure mode (the request goes on), with Envoy's stats.
func TestProxy(t *testing.T) {
	upstream, svc, rlsPort := servers(t)
	base, p := startProxy(t, `
              timeout: 60s`, upstream, rlsPort)

	r := send(t, "GET", base+"/api/x", "X-User", "alice")
	if r.status != 200 || r.body != `user="alice"` {
		t.Errorf("alice: %d %q, want 200 and x-rl-user alice upstream", r.status, r.body)
	}
	for k, v := range map[string]string{
		"X-Rls": "ok", "X-Tier": "gold", "X-Ratelimit-Limit": `10, 10;w=60;name="per-user", 100;w=3600`,
		"X-Ratelimit-Remaining": "7", "X-Ratelimit-Reset": "30", "X-Envoy-Ratelimited": "",
	} {
		if got := r.header.Get(k); got != v {
			t.Errorf("alice: %s = %q, want %q", k, got, v)
		}
	}
	want := "edge-domain [generic_key=api,user=alice][remote_address=127.0.0.1,destination_cluster=upstream,source_cluster=edge][header_match=get][header_match=not-post]"
	if got := svc.take(); len(got) != 1 || got[0] != want {
		t.Errorf("service saw %q, want %q", got, want)
	}

	// No x-user: the first policy makes no descriptor; x-plan is
	// skipped when absent and an entry when present; POST flips both
	// header_value_match policies off.
	send(t, "POST", base+"/api/x", "X-Plan", "pro")
	if got, want := svc.take(), []string{"edge-domain [remote_address=127.0.0.1,destination_cluster=upstream,source_cluster=edge,plan=pro]"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("POST: service saw %q, want %q", got, want)
	}

	r = send(t, "GET", base+"/api/x", "X-User", "blocked")
	if r.status != 429 || r.body != "slow down" || r.header.Get("X-Envoy-Ratelimited") != "true" || r.header.Get("X-Rls") != "over" || r.header.Get("X-Ratelimit-Remaining") != "0" {
		t.Errorf("blocked: %d %q %v, want 429 \"slow down\" with x-envoy-ratelimited, x-rls and remaining 0", r.status, r.body, r.header)
	}
	svc.take()

	// An error lets the request go on (failure_mode_deny unset).
	if r = send(t, "GET", base+"/api/x", "X-User", "err"); r.status != 200 || r.body != `user=""` {
		t.Errorf("err: %d %q, want 200", r.status, r.body)
	}
	svc.take()

	// The virtual host's policies: used by a route without its own
	// (OVERRIDE), added with include_vh_rate_limits, left out by IGNORE.
	send(t, "GET", base+"/other")
	send(t, "GET", base+"/include")
	send(t, "GET", base+"/ignore")
	if got, want := strings.Join(svc.take(), "|"), "edge-domain [generic_key=vh]|edge-domain [generic_key=inc][generic_key=vh]"; got != want {
		t.Errorf("vh policies: service saw %q, want %q", got, want)
	}

	st := statsText(p)
	for _, want := range []string{
		"cluster.upstream.ratelimit.ok: 4", "cluster.upstream.ratelimit.over_limit: 1",
		"cluster.upstream.ratelimit.error: 1", "cluster.upstream.ratelimit.failure_mode_allowed: 1",
	} {
		if !strings.Contains(st, want+"\n") {
			t.Errorf("/stats lacks %q", want)
		}
	}
}

// TestFailureModeDeny: with failure_mode_deny a service slower than
// timeout and a call that fails with a gRPC status both answer
// status_on_error.
func TestFailureModeDeny(t *testing.T) {
	upstream, _, rlsPort := servers(t)
	base, p := startProxy(t, `
              failure_mode_deny: true
              status_on_error: {code: ServiceUnavailable}
              timeout: 0.3s`, upstream, rlsPort)
	if r := send(t, "GET", base+"/api/x", "X-User", "hold"); r.status != 503 {
		t.Errorf("slow service: %d %q, want 503", r.status, r.body)
	}
	if r := send(t, "GET", base+"/api/x", "X-User", "err"); r.status != 503 {
		t.Errorf("failed call: %d %q, want 503", r.status, r.body)
	}
	if st := statsText(p); !strings.Contains(st, "cluster.upstream.ratelimit.error: 2\n") || !strings.Contains(st, "cluster.upstream.ratelimit.failure_mode_allowed: 0\n") {
		t.Errorf("stats:\n%s", grep(st, "ratelimit"))
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestClientGivesUp: a client that leaves while its rate limit call is
// in flight cancels the call (the service sees its context end), and
// the proxy goes on serving.
func TestClientGivesUp(t *testing.T) {
	upstream, svc, rlsPort := servers(t)
	svc.held, svc.canceled = make(chan struct{}, 1), make(chan struct{}, 1)
	base, _ := startProxy(t, `
              timeout: 600s`, upstream, rlsPort)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/x", nil)
	req.Header.Set("X-User", "hold")
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := http.DefaultClient.Do(req); err == nil {
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
	wait(svc.held, "the call to reach the service")
	cancel()
	<-done
	wait(svc.canceled, "the abandoned call to be canceled")
	if r := send(t, "GET", base+"/api/x", "X-User", "alice"); r.status != 200 {
		t.Errorf("after: %d", r.status)
	}
}
