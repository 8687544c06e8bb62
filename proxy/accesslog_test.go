package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
)

// accessLogConfig is a bootstrap with an HTTP listener "main" and a TCP
// listener "tcp" whose access logs share one file, plus an error log in
// JSON behind a status filter.
func accessLogConfig(t *testing.T, httpUp, tcpUp, logPath, errPath string) *config.Bootstrap {
	t.Helper()
	yaml := fmt.Sprintf(`
static_resources:
  listeners:
    - name: main
      address: {socket_address: {address: 127.0.0.1, port_value: 0}}
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: web
                access_log:
                  - name: envoy.access_loggers.file
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
                      path: %[3]s
                      log_format:
                        text_format_source:
                          inline_string: "[%%START_TIME%%] %%DURATION%% \"%%REQ(:METHOD)%% %%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%% %%PROTOCOL%%\" %%RESPONSE_CODE%% %%RESPONSE_FLAGS%% %%RESPONSE_CODE_DETAILS%% %%BYTES_RECEIVED%% %%BYTES_SENT%% %%UPSTREAM_HOST%% %%UPSTREAM_CLUSTER%% %%DOWNSTREAM_REMOTE_ADDRESS%% %%REQ(X-REQUEST-ID)%% %%RESP(X-UP)%% %%ROUTE_NAME%%\n"
                  - name: envoy.access_loggers.file
                    filter: {status_code_filter: {comparison: {op: GE, value: {default_value: 400, runtime_key: k}}}}
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
                      path: %[4]s
                      log_format:
                        json_format: {code: "%%RESPONSE_CODE%%", flags: "%%RESPONSE_FLAGS%%", path: "%%REQ(:PATH)%%", upstream: "%%UPSTREAM_HOST%%"}
                route_config:
                  virtual_hosts:
                    - name: all
                      domains: ["*"]
                      routes:
                        - name: app_route
                          match: {prefix: /app}
                          route: {cluster: app}
                http_filters:
                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
    - name: tcp
      address: {socket_address: {address: 127.0.0.1, port_value: %[5]s}}
      filter_chains:
        - filters:
            - name: envoy.filters.network.tcp_proxy
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
                stat_prefix: tcp
                cluster: echo
                access_log:
                  - name: envoy.access_loggers.file
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
                      path: %[3]s
                      format: "TCP %%DOWNSTREAM_REMOTE_ADDRESS%% %%UPSTREAM_HOST%% %%UPSTREAM_CLUSTER%% %%RESPONSE_CODE%% %%RESPONSE_FLAGS%% %%BYTES_RECEIVED%% %%BYTES_SENT%%\n"
  clusters:
    - name: app
      connect_timeout: 5s
      load_assignment:
        cluster_name: app
        endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %[1]s}}}}]}]
    - name: echo
      connect_timeout: 5s
      load_assignment:
        cluster_name: echo
        endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %[2]s}}}}]}]
`, portOf(t, httpUp), portOf(t, tcpUp), logPath, errPath, portOf(t, freeAddr(t)))
	cfg, err := config.Parse([]byte(yaml), "envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// rawRequest sends one HTTP/1.1 request on its own connection and
// returns the response body and the client's address (the proxy's
// %DOWNSTREAM_REMOTE_ADDRESS%).
func rawRequest(t *testing.T, addr, request string) (status int, body, client string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), c.LocalAddr().String()
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	return lines[:len(lines)-1] // after the last newline: ""
}

// TestAccessLogLines: one proxied request, one local 404 (no route: NR)
// and one TCP connection write exactly these lines, the HTTP and TCP
// listeners' loggers sharing one file (opened once), and the filtered
// JSON log holding only the 404.
func TestAccessLogLines(t *testing.T) {
	httpUp := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Up", "yes")
		fmt.Fprintf(w, "got %d bytes", len(b)) // 11 bytes
	})
	tcpUp := echoUpstream(t)
	dir := t.TempDir()
	logPath, errPath := filepath.Join(dir, "access.log"), filepath.Join(dir, "errors.log")
	f := startBootstrap(t, accessLogConfig(t, httpUp, tcpUp, logPath, errPath), netLoader{})

	// Each exchange is waited for through the counter the stream (or
	// connection) updates after it logged, so lines are in order.
	before := time.Now().UTC().Truncate(time.Millisecond)
	code, body, client1 := rawRequest(t, f.addr, "POST /app/x?q=1 HTTP/1.1\r\nHost: example.com\r\nX-Request-Id: req-1\r\nContent-Length: 5\r\n\r\nhello")
	if code != 200 || body != "got 5 bytes" {
		t.Fatalf("proxied request: %d %q", code, body)
	}
	f.waitCounter(t, "http.web.downstream_rq_completed", 1)
	code, body, client2 := rawRequest(t, f.addr, "GET /nothing HTTP/1.1\r\nHost: example.com\r\nX-Request-Id: req-2\r\n\r\n")
	if code != 404 {
		t.Fatalf("unrouted request: %d %q", code, body)
	}
	f.waitCounter(t, "http.web.downstream_rq_completed", 2)

	tcpAddr := f.srv.Addr("tcp")
	c, err := net.DialTimeout("tcp", tcpAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	client3 := c.LocalAddr().String()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(c, "ping-pong")
	_ = c.(*net.TCPConn).CloseWrite()
	echoed, _ := io.ReadAll(c)
	c.Close()
	if string(echoed) != "ping-pong" {
		t.Fatalf("tcp echo: %q", echoed)
	}
	f.waitCounter(t, ListenerStatPrefix(f.srv.cfg.Listeners[1])+"downstream_cx_destroy", 1)
	after := time.Now().UTC()
	f.srv.FlushAccessLogs()

	lines := readLines(t, logPath)
	if len(lines) != 3 {
		t.Fatalf("access.log has %d lines, want 3:\n%s", len(lines), strings.Join(lines, ""))
	}
	// START_TIME and DURATION vary: check their shape and range, then
	// compare the rest exactly.
	head := regexp.MustCompile(`^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)\] (\d+) `)
	for i, l := range lines[:2] {
		m := head.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("line %d %q: no [START_TIME] DURATION", i, l)
		}
		st, err := time.Parse("2006-01-02T15:04:05.000Z", m[1])
		if err != nil || st.Before(before) || st.After(after) {
			t.Errorf("line %d: START_TIME %s not within [%s, %s]", i, m[1], before, after)
		}
		lines[i] = l[len(m[0]):]
	}
	want := []string{
		fmt.Sprintf("\"POST /app/x?q=1 HTTP/1.1\" 200 - via_upstream 5 11 %s app %s req-1 yes app_route\n", httpUp, client1),
		fmt.Sprintf("\"GET /nothing HTTP/1.1\" 404 NR route_not_found 0 0 - - %s req-2 - -\n", client2),
		fmt.Sprintf("TCP %s %s echo 0 - 9 9\n", client3, tcpUp),
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Errorf("line %d:\n got %q\nwant %q", i, lines[i], want[i])
		}
	}
	errLines := readLines(t, errPath)
	if want := `{"code":404,"flags":"NR","path":"/nothing","upstream":null}` + "\n"; len(errLines) != 1 || errLines[0] != want {
		t.Errorf("errors.log = %q, want one line %q", errLines, want)
	}
	// Envoy's filesystem.* counters over both files: 3 lines to
	// access.log, 1 to errors.log.
	for name, want := range map[string]uint64{"filesystem.write_buffered": 4, "filesystem.write_completed": 4, "filesystem.write_failed": 0, "filesystem.write_dropped": 0} {
		if got := f.counter(name); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	// One writer for the shared path.
	if got := f.srv.accessLogs.Paths(); len(got) != 2 || got[0] != logPath || got[1] != errPath {
		t.Errorf("open files %q, want access.log (shared by both listeners) and errors.log", got)
	}
}

// TestAccessLogReopen is log rotation: the file is renamed, the server
// told to reopen (as on SIGUSR1 or POST /reopen_logs), and the next line
// goes to a new file at the configured path.
func TestAccessLogReopen(t *testing.T) {
	httpUp := upstream(t, func(w http.ResponseWriter, r *http.Request) {})
	dir := t.TempDir()
	logPath, errPath := filepath.Join(dir, "access.log"), filepath.Join(dir, "errors.log")
	f := startBootstrap(t, accessLogConfig(t, httpUp, echoUpstream(t), logPath, errPath), netLoader{})

	rawRequest(t, f.addr, "GET /app/one HTTP/1.1\r\nHost: h\r\n\r\n")
	f.waitCounter(t, "http.web.downstream_rq_completed", 1)
	f.srv.FlushAccessLogs()
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	f.srv.ReopenAccessLogs()
	rawRequest(t, f.addr, "GET /app/two HTTP/1.1\r\nHost: h\r\n\r\n")
	f.waitCounter(t, "http.web.downstream_rq_completed", 2)
	f.srv.FlushAccessLogs()

	old, current := readLines(t, logPath+".1"), readLines(t, logPath)
	if len(old) != 1 || !strings.Contains(old[0], "GET /app/one ") {
		t.Errorf("rotated file: %q, want the first request only", old)
	}
	if len(current) != 1 || !strings.Contains(current[0], "GET /app/two ") {
		t.Errorf("new file: %q, want the second request only", current)
	}
}

// TestAccessLogShutdownFlushes: a server that opened its access logs
// closes them at the end of Shutdown, with every line written.
func TestAccessLogShutdownFlushes(t *testing.T) {
	httpUp := upstream(t, func(w http.ResponseWriter, r *http.Request) {})
	dir := t.TempDir()
	logPath := filepath.Join(dir, "access.log")
	f := startBootstrap(t, accessLogConfig(t, httpUp, echoUpstream(t), logPath, filepath.Join(dir, "e.log")), netLoader{})
	for i := 0; i < 20; i++ {
		rawRequest(t, f.addr, "GET /app HTTP/1.1\r\nHost: h\r\n\r\n")
	}
	if err := f.srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(readLines(t, logPath)); n != 20 {
		t.Errorf("%d lines after Shutdown, want 20", n)
	}
}

// TestAccessLogReload: a reload that changes a logger's format replaces
// the listener; its streams then log in the new format to the same file,
// through the writer already open for that path (not a second one).
func TestAccessLogReload(t *testing.T) {
	httpUp := upstream(t, func(w http.ResponseWriter, r *http.Request) {})
	tcpUp := echoUpstream(t)
	dir := t.TempDir()
	logPath, errPath := filepath.Join(dir, "access.log"), filepath.Join(dir, "errors.log")
	f := startBootstrap(t, accessLogConfig(t, httpUp, tcpUp, logPath, errPath), netLoader{})
	rawRequest(t, f.addr, "GET /app/before HTTP/1.1\r\nHost: h\r\n\r\n")
	f.waitCounter(t, "http.web.downstream_rq_completed", 1)
	w, err := f.srv.accessLogs.Get(logPath)
	if err != nil {
		t.Fatal(err)
	}

	cfg2 := accessLogConfig(t, httpUp, tcpUp, logPath, errPath)
	cfg2.Listeners[0].FilterChains[0].HTTP.AccessLogs[0].Format = "RELOADED %REQ(:PATH)%\n"
	if _, err := f.srv.Reload(context.Background(), cfg2); err != nil {
		t.Fatal(err)
	}
	rawRequest(t, f.addr, "GET /app/after HTTP/1.1\r\nHost: h\r\n\r\n")
	f.waitCounter(t, "http.web.downstream_rq_completed", 2)
	f.srv.FlushAccessLogs()

	lines := readLines(t, logPath)
	if len(lines) != 2 || !strings.Contains(lines[0], "GET /app/before ") || lines[1] != "RELOADED /app/after\n" {
		t.Errorf("access.log after the reload:\n%s", strings.Join(lines, ""))
	}
	if w2, _ := f.srv.accessLogs.Get(logPath); w2 != w {
		t.Error("the reload opened a second writer for the same path")
	}
	if got := f.srv.accessLogs.Paths(); len(got) != 2 {
		t.Errorf("open files after the reload: %q", got)
	}
}
