package e2e

import (
	"bytes"
	be "encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
)

// grpcFrame is one uncompressed gRPC message frame.
func grpcFrame(msg []byte) []byte {
	b := make([]byte, 5+len(msg))
	be.BigEndian.PutUint32(b[1:], uint32(len(msg)))
	copy(b[5:], msg)
	return b
}

// TestGRPCHTTP1Bridge: an HTTP/1.1 client calls a real grpc-go health
// service (HTTP/2 upstream) through the binary with
// envoy.filters.http.grpc_http1_bridge: a served check is 200 with the
// framed answer and grpc-status 0 in the headers; an unknown service
// (gRPC's trailers-only NOT_FOUND) is 503 with grpc-status 5 and its
// message in the headers, and an empty body.
func TestGRPCHTTP1Bridge(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("up", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	dir, listen, admin := proxySetup(t, startEchoUpstream(t).port, map[string]string{
		"{{FILTERS}}": `                  - name: envoy.filters.http.grpc_http1_bridge
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.grpc_http1_bridge.v3.Config
`,
		"{{ROUTES}}": `                        - match: {prefix: "/grpc.health.v1.Health/"}
                          route: {cluster: grpc}
` + defaultRoutes,
		"{{CLUSTERS}}": fmt.Sprintf(`    - name: grpc
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config: {http2_protocol_options: {}}
      load_assignment:
        cluster_name: grpc
        endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %d}}}}]}]`, ln.Addr().(*net.TCPAddr).Port),
	})
	run(t, dir, listen, admin, "-c", "envoy.yaml")
	client := &http.Client{Timeout: 60 * time.Second}
	check := func(service string) (*http.Response, []byte) {
		t.Helper()
		req, _ := proto.Marshal(&healthpb.HealthCheckRequest{Service: service})
		resp, err := client.Post("http://"+listen+"/grpc.health.v1.Health/Check", "application/grpc", bytes.NewReader(grpcFrame(req)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 1 {
			t.Fatalf("the client spoke %s", resp.Proto)
		}
		return resp, b
	}
	resp, body := check("up")
	want, _ := proto.Marshal(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING})
	if resp.StatusCode != 200 || resp.Header.Get("Grpc-Status") != "0" || !bytes.Equal(body, grpcFrame(want)) {
		t.Errorf("served: %d grpc-status %q body %x, want 200, 0, %x", resp.StatusCode, resp.Header.Get("Grpc-Status"), body, grpcFrame(want))
	}
	resp, body = check("nope")
	if resp.StatusCode != 503 || resp.Header.Get("Grpc-Status") != "5" || resp.Header.Get("Grpc-Message") != "unknown service" || len(body) != 0 {
		t.Errorf("unknown service: %d grpc-status %q grpc-message %q body %q, want 503, 5, unknown service, none", resp.StatusCode, resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message"), body)
	}
}

// TestHealthCheckFilter: envoy.filters.http.health_check through the
// binary. Not in pass-through mode, a request matching the filter's
// headers is answered 200 by the proxy and never reaches the upstream;
// other requests go on to it.
func TestHealthCheckFilter(t *testing.T) {
	up := startEchoUpstream(t)
	dir, listen, admin := proxySetup(t, up.port, map[string]string{
		"{{FILTERS}}": `                  - name: envoy.filters.http.health_check
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck
                      pass_through_mode: false
                      headers: [{name: ":path", string_match: {exact: /healthz}}]
`,
	})
	run(t, dir, listen, admin, "-c", "envoy.yaml")
	for _, tc := range []struct {
		path     string
		status   int
		body     string
		upstream bool
	}{
		{"/healthz", 200, "", false},
		{"/ping", 200, "pong", true},
	} {
		code, body := get(t, "http://"+listen+tc.path)
		if code != tc.status || body != tc.body || up.served(tc.path) != tc.upstream {
			t.Errorf("%s: %d %q upstream %v, want %d %q upstream %v", tc.path, code, body, up.served(tc.path), tc.status, tc.body, tc.upstream)
		}
	}
}

// TestNetworkRBACBySource: envoy.filters.network.rbac ahead of a
// tcp_proxy in the binary allows 127.0.0.1 and denies another source
// address (127.0.0.2, also loopback): the allowed client's bytes are
// echoed by the upstream, the denied one is closed with nothing back and
// nothing reaches the upstream. Envoy's <stat_prefix>.rbac.* count both.
func TestNetworkRBACBySource(t *testing.T) {
	got := make(chan string, 4)
	echo := tcpService(t, func(c net.Conn) {
		var all []byte
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			all = append(all, buf[:n]...)
			if n > 0 {
				c.Write(buf[:n])
			}
			if err != nil {
				got <- string(all)
				return
			}
		}
	})
	lp, ap := freePort(t), freePort(t)
	dir := t.TempDir()
	cfg := fmt.Sprintf(`admin:
  address: {socket_address: {address: 127.0.0.1, port_value: %d}}
static_resources:
  listeners:
  - name: tcp
    address: {socket_address: {address: 127.0.0.1, port_value: %d}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.rbac
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC
          stat_prefix: tcp_rbac
          rules:
            action: ALLOW
            policies:
              only-local-one:
                permissions: [{any: true}]
                principals: [{source_ip: {address_prefix: 127.0.0.1, prefix_len: 32}}]
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: echo
  clusters:
  - name: echo
    load_assignment:
      cluster_name: echo
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %d}}}}]}]
`, ap, lp, echo)
	if err := os.WriteFile(filepath.Join(dir, "envoy.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	listen, admin := fmt.Sprintf("127.0.0.1:%d", lp), fmt.Sprintf("127.0.0.1:%d", ap)
	run(t, dir, listen, admin, "-c", "envoy.yaml")
	dial := func(from string) net.Conn {
		t.Helper()
		d := net.Dialer{Timeout: 30 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err := d.Dial("tcp", listen)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(60 * time.Second))
		return c
	}
	upstreamGot := func() string {
		t.Helper()
		select {
		case s := <-got:
			return s
		case <-time.After(60 * time.Second):
			t.Fatal("the upstream connection never ended")
			return ""
		}
	}

	c := dial("127.0.0.1")
	io.WriteString(c, "hello")
	echoed := make([]byte, 5)
	if _, err := io.ReadFull(c, echoed); err != nil || string(echoed) != "hello" {
		t.Fatalf("allowed source: echo %q, %v", echoed, err)
	}
	c.(*net.TCPConn).CloseWrite()
	if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
		t.Errorf("allowed source: after the echo %q, %v", rest, err)
	}
	c.Close()
	if s := upstreamGot(); s != "hello" {
		t.Errorf("allowed source: upstream got %q", s)
	}

	c = dial("127.0.0.2")
	io.WriteString(c, "secret")
	rest, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("denied source: the connection was not closed: %v", err)
	}
	if len(rest) != 0 {
		t.Errorf("denied source: got %q back", rest)
	}
	c.Close()
	// The tcp_proxy connected before the first byte (as Envoy's); that
	// upstream connection ends with nothing received.
	if s := upstreamGot(); s != "" {
		t.Errorf("denied source: upstream got %q", s)
	}
	for name, want := range map[string]int{"tcp_rbac.rbac.allowed": 1, "tcp_rbac.rbac.denied": 1} {
		if n := adminStat(t, admin, name); n != want {
			t.Errorf("%s = %d, want %d", name, n, want)
		}
	}
}
