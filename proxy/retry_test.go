package proxy

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// failingUpstream answers each request with the next status of script
// (200 once the script is used up); status 0 means "hold the request
// until the proxy gives up on it". It records each attempt's
// x-envoy-attempt-count and body.
type failingUpstream struct {
	mu       sync.Mutex
	script   []int
	attempts []string
	bodies   []string
}

func (u *failingUpstream) handler(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	status := 200
	if len(u.script) > 0 {
		status, u.script = u.script[0], u.script[1:]
	}
	u.attempts = append(u.attempts, r.Header.Get("X-Envoy-Attempt-Count"))
	u.bodies = append(u.bodies, string(b))
	u.mu.Unlock()
	if status == 0 {
		<-r.Context().Done()
		return
	}
	if status < 0 { // a gRPC trailers-only answer with grpc-status -status
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Grpc-Status", strconv.Itoa(-status))
		w.WriteHeader(200)
		return
	}
	w.WriteHeader(status)
	fmt.Fprintf(w, "status %d", status)
}

func (u *failingUpstream) seen() ([]string, []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.attempts...), append([]string(nil), u.bodies...)
}

// retryConfig is a bootstrap whose route to cluster "up" (the endpoints
// given) has the retry policy given, written as YAML flow mapping
// fields.
func retryConfig(policy string, endpoints ...string) string {
	eps := []string{}
	for _, a := range endpoints {
		_, port, _ := strings.Cut(a, ":")
		eps = append(eps, `{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: `+port+`}}}}`)
	}
	return yamlListener + `
            virtual_hosts:
            - name: vh
              domains: ["*"]
              include_request_attempt_count: true
              routes:
              - match: {prefix: /}
                route:
                  cluster: up
                  retry_policy: {` + policy + `}
  clusters:
  - name: up
    load_assignment:
      cluster_name: up
      endpoints: [{lb_endpoints: [` + strings.Join(eps, ", ") + `]}]
`
}

// TestRetries: an upstream that fails N times, under each retry_on
// condition: the request (body included) is sent again up to
// num_retries times, with x-envoy-attempt-count, and counted in the
// cluster's upstream_rq_retry* stats, as Envoy does.
func TestRetries(t *testing.T) {
	for _, tc := range []struct {
		name       string
		policy     string
		script     []int
		wantStatus int
		attempts   int
		stats      map[string]uint64
	}{
		{"5xx until success", `retry_on: 5xx, num_retries: 3, retry_back_off: {base_interval: 0.001s}`, []int{503, 500}, 200, 3,
			map[string]uint64{"upstream_rq_retry": 2, "upstream_rq_retry_success": 1, "upstream_rq_retry_limit_exceeded": 0, "upstream_rq_5xx": 2, "upstream_rq_2xx": 1}},
		{"default one retry, then the limit", `retry_on: "gateway-error", retry_back_off: {base_interval: 0.001s}`, []int{503, 502, 504}, 502, 2,
			map[string]uint64{"upstream_rq_retry": 1, "upstream_rq_retry_success": 0, "upstream_rq_retry_limit_exceeded": 1}},
		{"gateway-error leaves 500", `retry_on: gateway-error, num_retries: 2`, []int{500}, 500, 1,
			map[string]uint64{"upstream_rq_retry": 0}},
		{"retriable-4xx is 409", `retry_on: retriable-4xx, num_retries: 2, retry_back_off: {base_interval: 0.001s}`, []int{409, 404}, 404, 2,
			map[string]uint64{"upstream_rq_retry": 1, "upstream_rq_retry_success": 1}},
		{"retriable-status-codes", `retry_on: "retriable-status-codes,connect-failure", retriable_status_codes: [418], num_retries: 2, retry_back_off: {base_interval: 0.001s}`, []int{418}, 200, 2,
			map[string]uint64{"upstream_rq_retry": 1, "upstream_rq_retry_success": 1}},
		{"per_try_timeout", `retry_on: 5xx, per_try_timeout: 0.2s, retry_back_off: {base_interval: 0.001s}`, []int{0}, 200, 2,
			map[string]uint64{"upstream_rq_retry": 1, "upstream_rq_per_try_timeout": 1, "upstream_rq_retry_success": 1}},
		{"gRPC unavailable in the headers", `retry_on: "unavailable,cancelled", num_retries: 3, retry_back_off: {base_interval: 0.001s}`, []int{-14, -1}, 200, 3,
			map[string]uint64{"upstream_rq_retry": 2, "upstream_rq_retry_success": 1}},
		{"gRPC status not named, no retry", `retry_on: "unavailable,5xx", num_retries: 3`, []int{-13}, 200, 1,
			map[string]uint64{"upstream_rq_retry": 0}},
		{"no policy match, no retry", `retry_on: connect-failure, num_retries: 3`, []int{503}, 503, 1,
			map[string]uint64{"upstream_rq_retry": 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := &failingUpstream{script: tc.script}
			f := startYAML(t, retryConfig(tc.policy, upstream(t, u.handler)), "")
			req, _ := http.NewRequest("POST", "http://"+f.addr+"/", strings.NewReader("payload"))
			resp, body := do(t, req)
			if resp.StatusCode != tc.wantStatus {
				t.Errorf("status %d (%q), want %d", resp.StatusCode, body, tc.wantStatus)
			}
			attempts, bodies := u.seen()
			want := []string{}
			for i := 1; i <= tc.attempts; i++ {
				want = append(want, fmt.Sprint(i))
			}
			if strings.Join(attempts, ",") != strings.Join(want, ",") {
				t.Errorf("attempts seen upstream (x-envoy-attempt-count) %q, want %q", attempts, want)
			}
			for i, b := range bodies {
				if b != "payload" {
					t.Errorf("attempt %d body %q", i+1, b)
				}
			}
			for name, want := range tc.stats {
				if got := f.st.Counter("cluster.up." + name).Value(); got != want {
					t.Errorf("cluster.up.%s = %d, want %d", name, got, want)
				}
			}
		})
	}
}

// TestRetryConnectFailure: with connect-failure, a request whose
// endpoint refuses the connection is sent again to another endpoint
// (the round robin moves on), so every request succeeds.
func TestRetryConnectFailure(t *testing.T) {
	u := &failingUpstream{}
	f := startYAML(t, retryConfig(`retry_on: connect-failure, retry_back_off: {base_interval: 0.001s}`, refusedAddr(t), upstream(t, u.handler)), "")
	for i := 0; i < 4; i++ {
		req, _ := http.NewRequest("GET", "http://"+f.addr+"/", nil)
		if resp, body := do(t, req); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if got := f.st.Counter("cluster.up.upstream_rq_retry").Value(); got < 1 {
		t.Errorf("upstream_rq_retry = %d, want at least 1", got)
	}
}

// TestRetryPolicyFromVirtualHost: a route without a retry_policy takes
// its virtual host's.
func TestRetryPolicyFromVirtualHost(t *testing.T) {
	u := &failingUpstream{script: []int{503}}
	cfg := retryConfig(`retry_on: 5xx, retry_back_off: {base_interval: 0.001s}`, upstream(t, u.handler))
	cfg = strings.Replace(cfg, "              include_request_attempt_count: true\n",
		"              include_request_attempt_count: true\n              retry_policy: {retry_on: 5xx, retry_back_off: {base_interval: 0.001s}}\n", 1)
	cfg = strings.Replace(cfg, "                  retry_policy: {retry_on: 5xx, retry_back_off: {base_interval: 0.001s}}\n", "", 1)
	if strings.Count(cfg, "retry_policy") != 1 || !strings.Contains(cfg, "              retry_policy:") {
		t.Fatalf("config not rewritten as meant:\n%s", cfg)
	}
	f := startYAML(t, cfg, "")
	req, _ := http.NewRequest("GET", "http://"+f.addr+"/", nil)
	if resp, body := do(t, req); resp.StatusCode != 200 {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if attempts, _ := u.seen(); strings.Join(attempts, ",") != "1,2" {
		t.Errorf("attempts %q, want 1,2", attempts)
	}
}

// TestRetryCircuitBreaker: circuit_breakers max_retries bounds the
// retries a cluster has outstanding, as Envoy's: at 0 a retry is not made
// (upstream_rq_retry_overflow) and the failed attempt is the answer; at 1,
// one stream's retries follow each other, each released when its outcome
// is decided, so none overflows.
func TestRetryCircuitBreaker(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		maxRetries           int
		script               []int
		status, attempts     int
		retries, overflowing uint64
	}{
		{"none allowed", 0, []int{503}, 503, 1, 0, 1},
		{"one at a time", 1, []int{503, 503}, 200, 3, 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := &failingUpstream{script: tc.script}
			cfg := retryConfig(`retry_on: 5xx, num_retries: 3, retry_back_off: {base_interval: 0.001s}`, upstream(t, u.handler))
			cfg = strings.Replace(cfg, "    load_assignment:\n      cluster_name: up",
				fmt.Sprintf("    circuit_breakers: {thresholds: [{max_retries: %d}]}\n    load_assignment:\n      cluster_name: up", tc.maxRetries), 1)
			f := startYAML(t, cfg, "")
			resp, body := do(t, mustRequest(t, "GET", "http://"+f.addr+"/"))
			if resp.StatusCode != tc.status {
				t.Errorf("status %d (%q), want %d", resp.StatusCode, body, tc.status)
			}
			if attempts, _ := u.seen(); len(attempts) != tc.attempts {
				t.Errorf("%d attempts upstream, want %d", len(attempts), tc.attempts)
			}
			if got := f.st.Counter("cluster.up.upstream_rq_retry").Value(); got != tc.retries {
				t.Errorf("upstream_rq_retry = %d, want %d", got, tc.retries)
			}
			if got := f.st.Counter("cluster.up.upstream_rq_retry_overflow").Value(); got != tc.overflowing {
				t.Errorf("upstream_rq_retry_overflow = %d, want %d", got, tc.overflowing)
			}
		})
	}
}
