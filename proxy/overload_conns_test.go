package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
)

// connsYAML: an overload manager whose only monitor is
// global_downstream_max_connections (limit 2; refreshed by the test),
// an HTTP listener "main", a TCP proxy listener "tcp" (both counted) and
// an HTTP listener "side" with ignore_global_conn_limit, all to the
// upstream on upPort.
func connsYAML(upPort string) string {
	hcm := `
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: in
          http_filters: [{name: envoy.filters.http.router}]
          route_config:
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes: [{match: {prefix: /}, route: {cluster: up}}]`
	return `
overload_manager:
  refresh_interval: 3600s
  resource_monitors:
  - name: envoy.resource_monitors.global_downstream_max_connections
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig
      max_active_downstream_connections: 2
static_resources:
  listeners:
  - name: main
    stat_prefix: main
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}` + hcm + `
  - name: side
    stat_prefix: side
    ignore_global_conn_limit: true
    address: {socket_address: {address: 127.0.0.2, port_value: 0}}` + hcm + `
  - name: tcp
    stat_prefix: tcp
    address: {socket_address: {address: 127.0.0.3, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: up
  clusters:
  - name: up
    load_assignment:
      cluster_name: up
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: ` + upPort + `}}}}]}]
`
}

// get sends one keep-alive GET on c and reads the answer; an error means
// the connection ended without one.
func get(c net.Conn, br *bufio.Reader) (string, error) {
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.Status + " " + string(b), err
}

func dialServed(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	t.Cleanup(func() { c.Close() })
	br := bufio.NewReader(c)
	if got, err := get(c, br); err != nil || got != "200 OK up" {
		t.Fatalf("%s: %q %v, want it served", addr, got, err)
	}
	return c, br
}

// TestOverloadGlobalDownstreamConnections: with
// global_downstream_max_connections at 2, connections are counted
// across listeners (an HTTP and a TCP proxy listener): with two open, a
// third is closed as it is accepted and counted in the listener's
// downstream_global_cx_overflow and the monitor's failed_updates; a
// listener with ignore_global_conn_limit still serves; the monitor's
// pressure is the open count over the limit; once a connection ends, a
// new one is served again.
func TestOverloadGlobalDownstreamConnections(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("up")) })
	_, port, _ := strings.Cut(up, ":")
	f := startYAML(t, connsYAML(port), "")
	const mon = "envoy.resource_monitors.global_downstream_max_connections"

	c1, br1 := dialServed(t, f.addr)
	dialServed(t, f.srv.Addr("tcp"))
	f.srv.overload.refresh()
	if g := f.st.Gauge("overload." + mon + ".pressure").Value(); g != 100 {
		t.Errorf("pressure with 2 of 2 open = %d, want 100", g)
	}

	// The third: closed at accept, before anything is read or written.
	c3, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	c3.SetDeadline(time.Now().Add(60 * time.Second))
	if n, err := c3.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("third connection: read %d, %v; want it closed by the proxy", n, err)
	}
	if n := f.st.Counter("listener.main.downstream_global_cx_overflow").Value(); n != 1 {
		t.Errorf("listener.main.downstream_global_cx_overflow = %d, want 1", n)
	}
	if n := f.st.Counter("overload." + mon + ".failed_updates").Value(); n != 1 {
		t.Errorf("overload.%s.failed_updates = %d, want 1", mon, n)
	}

	// A listener outside the limit serves at the limit, and does not count.
	dialServed(t, f.srv.Addr("side"))
	f.srv.overload.refresh()
	if g := f.st.Gauge("overload." + mon + ".pressure").Value(); g != 100 {
		t.Errorf("pressure after the side listener's connection = %d, want 100", g)
	}

	// The first connection ends (the proxy closes it after a "connection:
	// close" answer; the client closes its side once it sees that). The
	// proxy lets go of the socket, with its slot, when it sees the
	// client's close: a new connection that comes before is refused like
	// the third, and the next one is tried (each try ends in an answer
	// or a close, nothing waits on a clock).
	io.WriteString(c1, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(br1, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	if _, err := br1.ReadByte(); err != io.EOF {
		t.Fatalf("after connection: close the proxy's side: %v, want EOF", err)
	}
	c1.Close()
	refused := 0
	for {
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(60 * time.Second))
		got, err := get(c, bufio.NewReader(c))
		c.Close()
		if err == nil {
			if got != "200 OK up" {
				t.Fatalf("freed slot: %q", got)
			}
			break
		}
		if isTimeout(err) {
			t.Fatalf("freed slot: %v", err)
		}
		refused++
	}
	if n := f.st.Counter("listener.main.downstream_global_cx_overflow").Value(); n != uint64(1+refused) {
		t.Errorf("listener.main.downstream_global_cx_overflow = %d, want %d (the third and %d tries before the slot was free)", n, 1+refused, refused)
	}
	t.Logf("%d connections refused while the first one's slot was being released", refused)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestOverloadGlobalDownstreamConnectionsReload: a reload that changes a
// listener on the same socket applies its new ignore_global_conn_limit:
// at the limit, "main" serves once it ignores the limit, and refuses
// again once it no longer does; the count survives both reloads.
func TestOverloadGlobalDownstreamConnectionsReload(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("up")) })
	_, port, _ := strings.Cut(up, ":")
	yaml := connsYAML(port)
	f := startYAML(t, yaml, "")
	// The two counted connections are on the TCP listener, which the
	// reloads leave alone (a changed listener's idle connections close).
	dialServed(t, f.srv.Addr("tcp"))
	dialServed(t, f.srv.Addr("tcp"))

	reload := func(y string) {
		t.Helper()
		cfg, err := config.Parse([]byte(y), "test.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.srv.Reload(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
	}
	refusedAt := func(addr string) bool {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		got, err := get(c, bufio.NewReader(c))
		if isTimeout(err) {
			t.Fatalf("%s: %v", addr, err)
		}
		if err == nil && got != "200 OK up" {
			t.Fatalf("%s: %q", addr, got)
		}
		return err != nil
	}
	if !refusedAt(f.addr) {
		t.Fatal("at the limit, main served a third connection")
	}
	reload(strings.Replace(yaml, "    stat_prefix: main\n", "    stat_prefix: main\n    ignore_global_conn_limit: true\n", 1))
	if refusedAt(f.srv.Addr("main")) {
		t.Error("main ignores the limit after the reload, but refused a connection")
	}
	reload(yaml)
	if !refusedAt(f.srv.Addr("main")) {
		t.Error("main counts again after the second reload, but served past the limit")
	}
	if n := f.st.Counter("listener.main.downstream_global_cx_overflow").Value(); n != 2 {
		t.Errorf("listener.main.downstream_global_cx_overflow = %d, want 2", n)
	}
}
