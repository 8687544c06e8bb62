package proxy

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// overloadYAML is a bootstrap with an overload manager whose fixed heap
// monitors "tiny" (1 byte: always past any threshold) and "huge" (never
// reached) drive the actions given, a listener and one upstream.
func overloadYAML(actions, upPort string) string {
	return `
overload_manager:
  refresh_interval: 0.05s
  resource_monitors:
  - name: tiny
    typed_config: {"@type": type.googleapis.com/envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig, max_heap_size_bytes: 1}
  - name: huge
    typed_config: {"@type": type.googleapis.com/envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig, max_heap_size_bytes: 1000000000000000}
  actions:
` + actions + yamlListener + `
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes: [{match: {prefix: /}, route: {cluster: up}}]
  clusters:
  - name: up
    load_assignment:
      cluster_name: up
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: ` + upPort + `}}}}]}]
`
}

// TestOverloadActions: with the Go heap past a fixed heap monitor's
// limit, stop_accepting_requests answers 503 "envoy overloaded" and
// disable_http_keepalive closes HTTP/1 connections after their
// response; an action whose trigger names a monitor under its threshold
// does nothing. The pressure is reported as a gauge.
func TestOverloadActions(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("up")) })
	_, port, _ := strings.Cut(up, ":")

	f := startYAML(t, overloadYAML(`
  - name: envoy.overload_actions.stop_accepting_requests
    triggers: [{name: tiny, threshold: {value: 0.9}}]
`, port), "")
	resp, body := do(t, mustRequest(t, "GET", "http://"+f.addr+"/"))
	if resp.StatusCode != 503 || body != "envoy overloaded" {
		t.Errorf("overloaded: %d %q, want 503 envoy overloaded", resp.StatusCode, body)
	}
	if n := f.st.Counter("http.in.downstream_rq_overload_close").Value(); n != 1 {
		t.Errorf("downstream_rq_overload_close = %d, want 1", n)
	}
	if g := f.st.Gauge("overload.tiny.pressure").Value(); g != 100 {
		t.Errorf("overload.tiny.pressure = %d, want 100", g)
	}
	if g := f.st.Gauge("overload.envoy.overload_actions.stop_accepting_requests.active").Value(); g != 1 {
		t.Errorf("stop_accepting_requests.active = %d, want 1", g)
	}

	f = startYAML(t, overloadYAML(`
  - name: envoy.overload_actions.stop_accepting_requests
    triggers: [{name: huge, threshold: {value: 0.9}}]
  - name: envoy.overload_actions.disable_http_keepalive
    triggers: [{name: tiny, scaled: {scaling_threshold: 0.5, saturation_threshold: 0.8}}]
`, port), "")
	conn, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	r, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 200 || !r.Close {
		t.Errorf("keep-alive disabled: status %d, connection close %v; want 200 and close", r.StatusCode, r.Close)
	}
	if n := f.st.Counter("http.in.downstream_cx_overload_disable_keepalive").Value(); n != 1 {
		t.Errorf("downstream_cx_overload_disable_keepalive = %d, want 1", n)
	}
}

// TestOverloadStopAcceptingConnections: while stop_accepting_connections
// is on, the listener accepts nothing (a client's request waits,
// connected in the kernel's backlog); once the monitor's pressure falls
// below the threshold at the next refresh, the waiting request is
// served.
func TestOverloadStopAcceptingConnections(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("up")) })
	_, port, _ := strings.Cut(up, ":")
	f := startYAML(t, overloadYAML(`
  - name: envoy.overload_actions.stop_accepting_connections
    triggers: [{name: tiny, threshold: {value: 0.5}}]
`, port), "")
	done := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + f.addr + "/")
		if err != nil {
			done <- err.Error()
			return
		}
		resp.Body.Close()
		done <- resp.Status
	}()
	// A broken gate answers at once; this can pass falsely on a slow
	// machine, never fail falsely.
	select {
	case got := <-done:
		t.Fatalf("answered while not accepting: %s", got)
	case <-time.After(200 * time.Millisecond):
	}
	o := f.srv.overload
	o.mu.Lock()
	o.readHeap = func() uint64 { return 0 } // the heap is back under the limit
	o.mu.Unlock()
	if got := <-done; got != "200 OK" {
		t.Errorf("after the pressure fell: %s, want 200 OK", got)
	}
}

func mustRequest(t *testing.T, method, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}
