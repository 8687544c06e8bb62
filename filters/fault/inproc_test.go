package fault_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/filters/internal/inproc"
)

// TestInProcess runs the filter in the library proxy with real clients:
// header-controlled aborts and delays (gated by the headers matcher), a
// delay that holds the request and its body on the engine's timer and
// goes on after it, a delay followed by an abort, a gRPC abort and a
// downstream_nodes abort per route, max_active_faults letting a request
// through while another is held, and a client that gives up during a
// delay ending the fault (active_faults back to 0, the upstream never
// reached).
func TestInProcess(t *testing.T) {
	var holdHits atomic.Int64
	up := inproc.Upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/hold") {
			holdHits.Add(1)
		}
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "up %s %s", r.URL.Path, b)
	}))
	p := inproc.Start(t, inproc.Config(`
              routes:
              - match: {prefix: /hold}
                route: {cluster: upstream}
                typed_per_filter_config:
                  envoy.filters.http.fault:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
                    delay: {fixed_delay: 3600s, percentage: {numerator: 100}}
                    max_active_faults: 1
              - match: {prefix: /grpc}
                route: {cluster: upstream}
                typed_per_filter_config:
                  envoy.filters.http.fault:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
                    abort: {grpc_status: 14, percentage: {numerator: 100}}
              - match: {prefix: /nodes}
                route: {cluster: upstream}
                typed_per_filter_config:
                  envoy.filters.http.fault:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
                    abort: {http_status: 503, percentage: {numerator: 100}, response_body: "node fault"}
                    downstream_nodes: [frontend]
              - match: {prefix: /}
                route: {cluster: upstream}`, `
          - name: envoy.filters.http.fault
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
              delay: {header_delay: {}, percentage: {numerator: 100}}
              abort: {header_abort: {}, percentage: {numerator: 100}}
              headers: [{name: x-fault, present_match: true}]`, inproc.Cluster("upstream", up)))
	base := "http://" + p.Addr("main")
	client := &http.Client{Timeout: 60 * time.Second}

	do := func(ctx context.Context, method, path, body string, headers ...string) (*http.Response, string, error) {
		req, _ := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, "", err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b), nil
	}
	expect := func(method, path, body string, wantStatus int, wantBody string, headers ...string) *http.Response {
		t.Helper()
		resp, b, err := do(context.Background(), method, path, body, headers...)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		if resp.StatusCode != wantStatus || b != wantBody {
			t.Errorf("%s %s %v: %d %q, want %d %q", method, path, headers, resp.StatusCode, b, wantStatus, wantBody)
		}
		return resp
	}

	expect("GET", "/a", "", 200, "up /a ", "x-envoy-fault-abort-request", "418") // no x-fault: the matcher fails
	expect("GET", "/a", "", 418, "fault filter abort", "x-fault", "1", "x-envoy-fault-abort-request", "418")
	expect("GET", "/a", "", 200, "up /a ", "x-fault", "1", "x-envoy-fault-abort-request", "99")                                                 // not a status
	expect("GET", "/a", "", 200, "up /a ", "x-fault", "1", "x-envoy-fault-abort-request", "418", "x-envoy-fault-abort-request-percentage", "0") // lowered to 0%
	expect("POST", "/a", "the body", 200, "up /a the body", "x-fault", "1", "x-envoy-fault-delay-request", "20")                                // delayed, then on with its body
	expect("GET", "/a", "", 429, "fault filter abort", "x-fault", "1", "x-envoy-fault-delay-request", "20", "x-envoy-fault-abort-request", "429")
	if r := expect("GET", "/grpc", "", 200, ""); r.Header.Get("Grpc-Status") != "14" {
		t.Errorf("gRPC abort: grpc-status %q, want 14", r.Header.Get("Grpc-Status"))
	}
	expect("GET", "/nodes", "", 200, "up /nodes ")
	expect("GET", "/nodes", "", 503, "node fault", "x-envoy-downstream-service-node", "frontend")

	// A held request: the gauge says it is in a fault; a second one is
	// over max_active_faults and goes straight through.
	ctx, cancel := context.WithCancel(context.Background())
	held := make(chan error, 1)
	go func() {
		_, _, err := do(ctx, "POST", "/hold/1", "a body that must wait too")
		held <- err
	}()
	waitStat(t, p, "http.ingress_http.fault.active_faults", 1)
	expect("GET", "/hold/2", "", 200, "up /hold/2 ")
	if n := p.Stat(t, "http.ingress_http.fault.faults_overflow"); n != 1 {
		t.Errorf("faults_overflow = %d, want 1", n)
	}
	cancel()
	<-held
	waitStat(t, p, "http.ingress_http.fault.active_faults", 0)
	if n := holdHits.Load(); n != 1 {
		t.Errorf("the upstream saw %d /hold requests, want 1 (the overflowing one)", n)
	}
	for name, want := range map[string]int64{
		"http.ingress_http.fault.aborts_injected": 4,
		"http.ingress_http.fault.delays_injected": 3,
	} {
		if got := p.Stat(t, name); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
}

// waitStat waits (generously) until a stat has the value.
func waitStat(t *testing.T, p *inproc.Proxy, name string, want int64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for p.Stat(t, name) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %d, want %d", name, p.Stat(t, name), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
