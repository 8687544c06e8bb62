package wasmproxy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
)

// TestStatsSinks: a bootstrap's statsd sink receives the proxy's stats
// over UDP every stats_flush_interval — here the request a client made.
func TestStatsSinks(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	port := pc.LocalAddr().(*net.UDPAddr).Port
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
stats_flush_interval: 0.05s
stats_sinks:
- name: envoy.stat_sinks.statsd
  typed_config:
    "@type": type.googleapis.com/envoy.config.metrics.v3.StatsdSink
    address: {socket_address: {address: 127.0.0.1, port_value: %d}}
    prefix: edge
static_resources:
  listeners:
  - name: main
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          route_config:
            virtual_hosts:
            - {name: all, domains: ["*"], routes: [{match: {prefix: "/"}, direct_response: {status: 200, body: {inline_string: ok}}}]}
          http_filters: [{name: envoy.filters.http.router}]
`, port)), "envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(context.Background(), Options{Bootstrap: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	resp, err := http.Get("http://" + p.Addr("main") + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	want := "edge.http.ingress_http.downstream_rq_completed:1|c"
	buf := make([]byte, 65536)
	pc.SetReadDeadline(time.Now().Add(60 * time.Second))
	var seen []string
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no %q received (%v); saw %d lines, e.g. %v", want, err, len(seen), first(seen, 5))
		}
		for _, l := range strings.Split(string(buf[:n]), "\n") {
			if l == want {
				return
			}
			seen = append(seen, l)
		}
	}
}

func first(s []string, n int) []string {
	if len(s) < n {
		return s
	}
	return s[:n]
}
