package healthcheck_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/filters/internal/inproc"
)

// TestInProcess runs the filter in the library proxy with real clients,
// in both modes: answered health checks (200, never upstream; a body is
// read to its end first) and pass-through ones (upstream's answer); then,
// while the proxy drains (a request in flight holds the drain open), the
// answered health check gets 503 and the pass-through one's status
// becomes 503, as Envoy's does once it fails health checks.
func TestInProcess(t *testing.T) {
	var hcHits atomic.Int64
	release := make(chan struct{})
	held := make(chan struct{}, 1)
	up := inproc.Upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			hcHits.Add(1)
		case "/hold":
			held <- struct{}{}
			<-release
		}
		fmt.Fprintf(w, "up %s", r.URL.Path)
	}))
	hcm := func(name, addr string, passThrough bool, match string) string {
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
            - {name: all, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: upstream}}]}
          http_filters:
          - name: envoy.filters.http.health_check
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck
              pass_through_mode: %v
              headers: [%s]
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router`, name, addr, name, passThrough, match)
	}
	p := inproc.Start(t, `
static_resources:
  listeners:`+hcm("answer", "127.0.0.1", false, `{name: ":path", string_match: {exact: /healthz}}`)+
		hcm("pass", "127.0.0.2", true, `{name: ":path", string_match: {exact: /healthz}}, {name: x-hc, present_match: true}`)+`
  clusters:`+inproc.Cluster("upstream", up))
	answer, pass := "http://"+p.Addr("answer"), "http://"+p.Addr("pass")
	client := &http.Client{Timeout: 60 * time.Second}
	expect := func(method, url, body string, want int, wantBody string, headers ...string) {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || string(b) != wantBody {
			t.Errorf("%s %s %v: %d %q, want %d %q", method, url, headers, resp.StatusCode, b, want, wantBody)
		}
	}
	expect("GET", answer+"/healthz", "", 200, "")
	expect("POST", answer+"/healthz", "a body read to its end", 200, "")
	expect("GET", answer+"/other", "", 200, "up /other")
	if n := hcHits.Load(); n != 0 {
		t.Fatalf("answered health checks reached the upstream %d times", n)
	}
	expect("GET", pass+"/healthz", "", 200, "up /healthz", "x-hc", "1")
	expect("GET", pass+"/healthz", "", 200, "up /healthz") // no x-hc: not a health check, the same upstream answer

	// Drain: a request in flight keeps the listeners open.
	go func() {
		if resp, err := client.Get(answer + "/hold"); err == nil {
			resp.Body.Close()
		}
	}()
	select {
	case <-held:
	case <-time.After(60 * time.Second):
		t.Fatal("the held request did not reach the upstream")
	}
	shut := make(chan error, 1)
	go func() { shut <- p.Shutdown(context.Background()) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		rec := httptest.NewRecorder()
		p.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/ready", nil))
		if rec.Code != 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the proxy never reported draining")
		}
		time.Sleep(10 * time.Millisecond)
	}
	expect("GET", answer+"/healthz", "", 503, "")
	expect("GET", pass+"/healthz", "", 503, "up /healthz", "x-hc", "1")
	expect("GET", pass+"/healthz", "", 200, "up /healthz")
	close(release)
	if err := <-shut; err != nil {
		t.Errorf("shutdown: %v", err)
	}
}
