package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/wasmproxy/wasmproxy/config"
)

// hcBackend is a real HTTP server on a fixed port that can go down (its
// listener and connections closed) and come back on the same port. Its
// /healthz answers healthStatus; any other path answers its name.
type hcBackend struct {
	t            *testing.T
	name, addr   string
	healthStatus atomic.Int32
	checks       atomic.Int64
	lastHC       atomic.Value // the last check's request headers
	mu           sync.Mutex
	srv          *http.Server
}

func newHCBackend(t *testing.T, name string) *hcBackend {
	b := &hcBackend{t: t, name: name}
	b.healthStatus.Store(200)
	b.up("127.0.0.1:0")
	t.Cleanup(b.down)
	return b
}

func (b *hcBackend) up(addr string) {
	b.t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port may linger briefly after down
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		b.t.Fatal(err)
	}
	b.addr = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			b.checks.Add(1)
			h := r.Header.Clone()
			h.Set("X-Test-Host", r.Host)
			b.lastHC.Store(h)
			w.Header().Set("x-host-seen", r.Host)
			w.WriteHeader(int(b.healthStatus.Load()))
			return
		}
		io.WriteString(w, b.name)
	})}
	b.mu.Lock()
	b.srv = srv
	b.mu.Unlock()
	go srv.Serve(ln)
}

func (b *hcBackend) down() {
	b.mu.Lock()
	srv := b.srv
	b.srv = nil
	b.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

func hcPort(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

// hcConfig is a bootstrap routing everything to cluster "up" with the
// given endpoints and health_checks entry (YAML at its indentation).
// The connect timeout is long: checks dial with it, as Envoy's do, and
// a live host whose check times out once on a loaded machine goes
// unhealthy, which leaves the cluster in panic routing to dead hosts.
// Dead hosts here refuse at once, so no test waits for it.
func hcConfig(hc string, extra string, addrs ...string) string {
	eps := []string{}
	for _, a := range addrs {
		eps = append(eps, `{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: `+hcPort(a)+`}}}}`)
	}
	return yamlListener + `
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes:
              - match: {prefix: /}
                route: {cluster: up}
  clusters:
  - name: up
    connect_timeout: 30s
` + extra + `    health_checks:
` + hc + `    load_assignment:
      cluster_name: up
      endpoints: [{lb_endpoints: [` + strings.Join(eps, ", ") + `]}]
`
}

// waitFor polls cond until it holds; the deadline is generous so that a
// slow shared machine only makes the test slower, never fail.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// hostFailed reports the FAILED_ACTIVE_HC flag of the host addr of
// cluster up as /clusters shows it.
func hostFailed(f *fixture, addr string) bool {
	for _, c := range f.srv.ClusterStatuses() {
		for _, e := range c.Endpoints {
			if c.Name == "up" && e.Address == addr {
				return e.FailedActiveHC
			}
		}
	}
	return false
}

// bodies sends n requests and counts the answers by body.
func bodies(t *testing.T, f *fixture, n int) map[string]int {
	t.Helper()
	out := map[string]int{}
	for i := 0; i < n; i++ {
		req, _ := http.NewRequest("GET", "http://"+f.addr+"/", nil)
		resp, body := do(t, req)
		out[fmt.Sprint(resp.StatusCode, " ", body)]++
	}
	return out
}

// TestHTTPHealthCheck: an endpoint answering 503 to its health check
// leaves load balancing at once; one whose server goes down leaves after
// unhealthy_threshold network failures; both come back after
// healthy_threshold passes. Checks carry the configured host, path and
// request_headers_to_add, and Envoy's user-agent.
func TestHTTPHealthCheck(t *testing.T) {
	a, b := newHCBackend(t, "a"), newHCBackend(t, "b")
	hc := `    - timeout: 1s
      interval: 0.02s
      no_traffic_interval: 0.02s
      unhealthy_threshold: 2
      healthy_threshold: 2
      http_health_check:
        path: /healthz
        host: hc.example
        request_headers_to_add: [{header: {key: x-hc, value: "%UPSTREAM_CLUSTER%"}}]
`
	f := startYAML(t, hcConfig(hc, "", a.addr, b.addr), "")
	// Start-up waits for the first round: both hosts are healthy now.
	if hostFailed(f, a.addr) || hostFailed(f, b.addr) {
		t.Fatal("hosts not healthy after start-up")
	}
	if got := bodies(t, f, 4); got["200 a"] != 2 || got["200 b"] != 2 {
		t.Fatalf("both healthy: answers %v", got)
	}
	h, _ := a.lastHC.Load().(http.Header)
	if h.Get("User-Agent") != "Envoy/HC" || h.Get("X-Hc") != "up" || h.Get("X-Test-Host") != "hc.example" {
		t.Errorf("health check headers %v", h)
	}

	// A failed answer: unhealthy at the first one.
	a.healthStatus.Store(503)
	waitFor(t, "a failed by its 503", func() bool { return hostFailed(f, a.addr) })
	if got := bodies(t, f, 6); got["200 b"] != 6 {
		t.Errorf("a unhealthy: answers %v, want all from b", got)
	}
	a.healthStatus.Store(200)
	waitFor(t, "a healthy again", func() bool { return !hostFailed(f, a.addr) })
	if got := bodies(t, f, 4); got["200 a"] != 2 {
		t.Errorf("a back: answers %v", got)
	}

	// The server goes down: network failures, then back on its port.
	netFail := f.st.Counter("cluster.up.health_check.network_failure").Value()
	a.down()
	waitFor(t, "a failed by its absence", func() bool { return hostFailed(f, a.addr) })
	if got := f.st.Counter("cluster.up.health_check.network_failure").Value() - netFail; got < 2 {
		t.Errorf("network_failure grew by %d, want unhealthy_threshold (2) at least", got)
	}
	if got := bodies(t, f, 4); got["200 b"] != 4 {
		t.Errorf("a down: answers %v", got)
	}
	if g := f.st.Gauge("cluster.up.health_check.healthy").Value(); g != 1 {
		t.Errorf("health_check.healthy = %d, want 1", g)
	}
	if g := f.st.Gauge("cluster.up.membership_healthy").Value(); g != 1 {
		t.Errorf("membership_healthy = %d, want 1", g)
	}
	a.up(a.addr)
	waitFor(t, "a back up", func() bool { return !hostFailed(f, a.addr) })
	if got := bodies(t, f, 4); got["200 a"] != 2 || got["200 b"] != 2 {
		t.Errorf("a back up: answers %v", got)
	}
	for _, n := range []string{"attempt", "success", "failure"} {
		if f.st.Counter("cluster.up.health_check."+n).Value() == 0 {
			t.Errorf("health_check.%s is 0", n)
		}
	}
}

// TestHealthCheckPanic: with every host failed, Envoy's load balancer
// panics (fewer healthy hosts than healthy_panic_threshold) and uses all
// of them; with the threshold at 0 the cluster has no healthy upstream.
func TestHealthCheckPanic(t *testing.T) {
	for _, tc := range []struct {
		extra string
		want  string
	}{
		{"", "200 a"},
		{"    common_lb_config: {healthy_panic_threshold: {value: 0}}\n", "503 no healthy upstream"},
	} {
		a := newHCBackend(t, "a")
		a.healthStatus.Store(500)
		hc := "    - {timeout: 1s, interval: 0.05s, unhealthy_threshold: 1, healthy_threshold: 1, http_health_check: {path: /healthz}}\n"
		f := startYAML(t, hcConfig(hc, tc.extra, a.addr), "")
		if !hostFailed(f, a.addr) {
			t.Fatal("host not failed")
		}
		if got := bodies(t, f, 2); got[tc.want] != 2 {
			t.Errorf("%q: answers %v, want %q", tc.extra, got, tc.want)
		}
	}
}

// tcpHCServer answers "ping" with "pong" written in two pieces (so the
// checker must match across reads), or "nope" when bad is set.
func tcpHCServer(t *testing.T, bad *atomic.Bool) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4)
				for {
					if _, err := io.ReadFull(c, buf); err != nil {
						return
					}
					if bad.Load() {
						c.Write([]byte("nope"))
						continue
					}
					c.Write([]byte("xpo"))
					c.Write([]byte("ng"))
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestTCPHealthCheck: send/receive hex payloads (matched in order,
// across reads); a wrong answer fails at the timeout as a network
// failure, as Envoy's TCP checker waits for the match.
func TestTCPHealthCheck(t *testing.T) {
	var bad atomic.Bool
	addr := tcpHCServer(t, &bad)
	other := newHCBackend(t, "b")
	hc := `    - timeout: 0.2s
      interval: 0.02s
      no_traffic_interval: 0.02s
      unhealthy_threshold: 1
      healthy_threshold: 1
      tcp_health_check: {send: {text: "70696e67"}, receive: [{text: "706f"}, {text: "6e67"}]}
`
	f := startYAML(t, hcConfig(hc, "", addr, other.addr), "")
	// other is an HTTP server: "ping" gets a 400 answer without "pong".
	if hostFailed(f, addr) || !hostFailed(f, other.addr) {
		t.Fatalf("after start-up: tcp server failed %v, http server failed %v", hostFailed(f, addr), hostFailed(f, other.addr))
	}
	bad.Store(true)
	waitFor(t, "tcp host failed", func() bool { return hostFailed(f, addr) })
	bad.Store(false)
	waitFor(t, "tcp host back", func() bool { return !hostFailed(f, addr) })
	if f.st.Counter("cluster.up.health_check.network_failure").Value() == 0 {
		t.Error("network_failure is 0")
	}
}

// TestTCPConnectHealthCheck: without payloads a connect passes; a closed
// port fails. The timeout is long: a live host timing out once on a
// loaded machine would leave no healthy host, and the balancer's panic
// mode would then send a request to the dead one.
func TestTCPConnectHealthCheck(t *testing.T) {
	a := newHCBackend(t, "a")
	dead := refusedAddr(t)
	hc := "    - {timeout: 30s, interval: 0.02s, no_traffic_interval: 0.02s, unhealthy_threshold: 1, healthy_threshold: 1, tcp_health_check: {}}\n"
	f := startYAML(t, hcConfig(hc, "", a.addr, dead), "")
	if hostFailed(f, a.addr) || !hostFailed(f, dead) {
		t.Fatalf("live failed %v, dead failed %v", hostFailed(f, a.addr), hostFailed(f, dead))
	}
	if got := bodies(t, f, 3); got["200 a"] != 3 {
		t.Errorf("answers %v, want all from a", got)
	}
}

// TestGRPCHealthCheck: grpc.health.v1 Check against grpc-go's health
// server over the cluster's HTTP/2, with service_name: NOT_SERVING fails
// the host at once, SERVING brings it back.
func TestGRPCHealthCheck(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("svc", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	hc := "    - {timeout: 1s, interval: 0.02s, no_traffic_interval: 0.02s, unhealthy_threshold: 3, healthy_threshold: 1, grpc_health_check: {service_name: svc}}\n"
	f := startYAML(t, hcConfig(hc, "    http2_protocol_options: {}\n", ln.Addr().String()), "")
	if hostFailed(f, ln.Addr().String()) {
		t.Fatal("SERVING host failed")
	}
	hs.SetServingStatus("svc", healthpb.HealthCheckResponse_NOT_SERVING)
	waitFor(t, "NOT_SERVING failing the host", func() bool { return hostFailed(f, ln.Addr().String()) })
	if f.st.Counter("cluster.up.health_check.network_failure").Value() != 0 {
		t.Error("NOT_SERVING counted as a network failure")
	}
	hs.SetServingStatus("svc", healthpb.HealthCheckResponse_SERVING)
	waitFor(t, "SERVING again", func() bool { return !hostFailed(f, ln.Addr().String()) })
}

// TestHealthCheckStopsOnReload: a reload that drops the cluster stops
// its checkers: no session goroutine is left once the old cluster is
// closed.
func TestHealthCheckStopsOnReload(t *testing.T) {
	a := newHCBackend(t, "a")
	hc := "    - {timeout: 1s, interval: 0.02s, no_traffic_interval: 0.02s, unhealthy_threshold: 1, healthy_threshold: 1, http_health_check: {path: /healthz}}\n"
	f := startYAML(t, hcConfig(hc, "", a.addr), "")
	if !sessionsRunning() {
		t.Fatal("no health check session running")
	}
	next, err := config.Parse([]byte(yamlListener+`
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes:
              - match: {prefix: /}
                direct_response: {status: 200}
`), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.srv.Reload(context.Background(), next); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the sessions to stop", func() bool { return !sessionsRunning() })
}

func sessionsRunning() bool {
	buf := make([]byte, 1<<20)
	return strings.Contains(string(buf[:runtime.Stack(buf, true)]), "(*hcSession).run")
}
