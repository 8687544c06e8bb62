package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// reloadYAML is a config with main (the add-header plugin, routing / to
// cluster `to`), and direct-response listeners named in static, each
// answering its own name.
func reloadYAML(ports map[string]int, to string, static ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `static_resources:
  listeners:
    - name: main
      address: {socket_address: {address: 127.0.0.1, port_value: %d}}
      filter_chains:
        - filters:
            - name: envoy.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: ingress_http
                route_config:
                  virtual_hosts:
                    - name: all
                      domains: ["*"]
                      routes:
                        - match: {prefix: "/"}
                          route: {cluster: %s}
                http_filters:
                  - name: envoy.filters.http.wasm
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
                      config:
                        vm_config: {runtime: envoy.wasm.runtime.v8, code: {local: {filename: ./main.wasm}}}
                  - name: envoy.filters.http.router
`, ports["main"], to)
	for _, s := range static {
		fmt.Fprintf(&b, `    - name: %s
      address: {socket_address: {address: 127.0.0.1, port_value: %d}}
      filter_chains:
        - filters:
            - name: envoy.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: %s
                route_config:
                  virtual_hosts:
                    - name: all
                      domains: ["*"]
                      routes:
                        - match: {prefix: "/"}
                          direct_response: {status: 200, body: {inline_string: "%s"}}
                http_filters:
                  - name: envoy.filters.http.router
`, s, ports[s], s, s)
	}
	b.WriteString("  clusters:\n")
	for _, s := range []string{"a", "b"} {
		fmt.Fprintf(&b, `    - name: %s
      connect_timeout: 1s
      type: STATIC
      load_assignment:
        cluster_name: %s
        endpoints:
          - lb_endpoints:
              - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %d}}}
`, s, s, ports[s])
	}
	fmt.Fprintf(&b, "admin:\n  address: {socket_address: {address: 127.0.0.1, port_value: %d}}\n", ports["admin"])
	return b.String()
}

// TestReloadConfig reloads routes, clusters and listeners through the
// real binary with POST /reload: a kept-alive connection on the
// unchanged listener survives, the new route and cluster answer, an added
// listener serves, a removed one stops accepting, and a bad config
// leaves everything as it was (log, /reload_status, stats).
func TestReloadConfig(t *testing.T) {
	dir := t.TempDir()
	wasm, err := os.ReadFile(plugin(t, "examples/add-header"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "main.wasm"), wasm, 0o644)
	ports := map[string]int{}
	for _, n := range []string{"main", "a", "b", "admin"} {
		ports[n] = freePort(t)
	}
	write := func(s string) {
		if err := os.WriteFile(filepath.Join(dir, "envoy.yaml"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(reloadYAML(ports, "a", "a"))
	listen, admin := fmt.Sprintf("127.0.0.1:%d", ports["main"]), fmt.Sprintf("127.0.0.1:%d", ports["admin"])
	in := run(t, dir, listen, admin, "-c", "envoy.yaml", "--reload-poll-interval", "0")

	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}, Timeout: 10 * time.Second}
	fetch := func() (body string, reused bool) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+listen+"/", nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
		}))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.Header.Get("Resp-Header-Demo") == "" {
			t.Fatalf("the plugin did not run: %v", resp.Header)
		}
		return string(b), reused
	}
	reload := func() (int, reloadStatus) {
		var st reloadStatus
		code := adminJSON(t, "POST", "http://"+admin+"/reload", &st)
		return code, st
	}
	if got, _ := fetch(); got != "a" {
		t.Fatalf("before: %q", got)
	}

	// Route to cluster b, add listener b, remove listener a.
	write(reloadYAML(ports, "b", "b"))
	if code, st := reload(); code != 200 || strings.Join(st.Changed, ",") != "routes main/0,listener+ b,listener- a" {
		t.Fatalf("reload: %d %+v\n%s", code, st, in.Logs())
	}
	if got, reused := fetch(); got != "b" || !reused {
		t.Fatalf("after the reload: %q (connection kept: %v)", got, reused)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", ports["a"]), time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the removed listener still accepts")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// /config_dump shows what runs now, not what the proxy started with.
	listenerNamed := func(name string) *regexp.Regexp {
		return regexp.MustCompile(`"name": "` + name + `",\s+"address"`) // listeners only: clusters have no address field
	}
	if _, dump := get(t, "http://"+admin+"/config_dump"); !listenerNamed("b").MatchString(dump) || listenerNamed("a").MatchString(dump) {
		t.Errorf("/config_dump after the reload does not show listener b instead of a:\n%s", dump)
	}

	// A route to a cluster that does not exist: refused, nothing changes.
	write(strings.Replace(reloadYAML(ports, "b", "b"), "cluster: b}", "cluster: nope}", 1))
	code, st := reload()
	if code != 500 || !strings.Contains(st.LastError, `unknown cluster "nope"`) {
		t.Fatalf("bad reload: %d %+v", code, st)
	}
	if got, reused := fetch(); got != "b" || !reused {
		t.Fatalf("after the bad reload: %q (connection kept: %v)", got, reused)
	}
	// The line is written before the admin answers, but read from the
	// process's stderr on its own goroutine: wait for it.
	expectLogs(t, in, "reload failed; the running version keeps serving")
	if _, stats := get(t, "http://"+admin+"/stats?filter=server.reload"); !strings.Contains(stats, "server.reload.failure: 1") {
		t.Fatalf("stats: %s", stats)
	}
}
