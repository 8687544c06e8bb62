// Package inproc runs the library proxy in a native filter's tests: a
// real listener, real upstream servers, real clients, so -race sees the
// filter, the filter-chain engine and the proxy together.
package inproc

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

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

// Cluster is a static cluster named name with one endpoint at
// 127.0.0.1:port, as a YAML list item indented for static_resources.clusters.
func Cluster(name string, port int) string {
	return `
  - name: ` + name + `
    load_assignment:
      cluster_name: ` + name + `
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: ` + strconv.Itoa(port) + `}}}}]}]`
}
