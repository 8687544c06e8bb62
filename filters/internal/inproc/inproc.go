// Package inproc runs the library proxy in a native filter's tests: a
// real listener, real upstream servers, real clients, so -race sees the
// filter, the filter-chain engine and the proxy together.
package inproc

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"

	wasmproxy "github.com/wasmproxy/wasmproxy"
	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/logging"
)

// Proxy is a started library proxy.
type Proxy struct {
	*wasmproxy.Proxy
}

// Start parses the Envoy config yaml, starts the proxy and stops it when
// the test ends.
func Start(t testing.TB, yaml string) *Proxy {
	t.Helper()
	return StartLogged(t, yaml, io.Discard)
}

// StartLogged is Start with the proxy's logs (info and above) written
// to logs, for tests that read what filters log.
func StartLogged(t testing.TB, yaml string, logs io.Writer) *Proxy {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml), "inproc")
	if err != nil {
		t.Fatal(err)
	}
	p, err := wasmproxy.New(context.Background(), wasmproxy.Options{Bootstrap: cfg, Logs: logging.NewRegistry(logs, logging.LevelInfo)})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Shutdown(context.Background()) })
	return &Proxy{p}
}

// Stat is the value of a counter or gauge as the admin API's /stats
// prints it; -1 when it does not exist.
func (p *Proxy) Stat(t testing.TB, name string) int64 {
	t.Helper()
	rec := httptest.NewRecorder()
	p.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/stats?filter="+url.QueryEscape("^"+regexp.QuoteMeta(name)+"$"), nil))
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ": ")
		if ok && k == name {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("stat %s: %q", name, v)
			}
			return n
		}
	}
	return -1
}

// Upstream starts an HTTP server on 127.0.0.1 for the test and returns
// its port.
func Upstream(t testing.TB, h http.Handler) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// GRPCServer starts a gRPC server on 127.0.0.1 for the test, with the
// services register adds, and returns its port.
func GRPCServer(t testing.TB, register func(*grpc.Server), opts ...grpc.ServerOption) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(opts...)
	register(gs)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	return ln.Addr().(*net.TCPAddr).Port
}

// Cluster is a static cluster named name with one endpoint at
// 127.0.0.1:port, as a YAML list item indented for static_resources.clusters.
func Cluster(name string, port int) string {
	return `
  - name: ` + name + `
    load_assignment:
      cluster_name: ` + name + `
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: ` + strconv.Itoa(port) + `}}}}]}]`
}

// H2Cluster is Cluster speaking HTTP/2 to its endpoint (a gRPC service).
func H2Cluster(name string, port int) string {
	return `
  - name: ` + name + `
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment:
      cluster_name: ` + name + `
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: ` + strconv.Itoa(port) + `}}}}]}]`
}

// Config is a bootstrap with one HTTP listener, "main" on 127.0.0.1:0:
// a connection manager (stat_prefix ingress_http) with one virtual host,
// "all" for every domain, whose other fields are vhost (YAML indented
// 14 spaces, for the virtual host's keys: "routes:" and what else the
// test needs); its HTTP filters are filters (list items indented 10
// spaces) and then the router; the clusters are clusters (Cluster,
// H2Cluster). Leading and trailing newlines of vhost and filters do not
// matter.
func Config(vhost, filters string, clusters ...string) string {
	return `static_resources:
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
            - name: all
              domains: ["*"]
` + strings.Trim(vhost, "\n") + `
          http_filters:
` + strings.Trim(filters, "\n") + `
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:` + strings.Join(clusters, "") + "\n"
}

// Logs is a log sink that tests read while the proxy writes to it
// (StartLogged).
type Logs struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is everything written so far.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
