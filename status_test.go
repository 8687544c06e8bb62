package wasmproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/wasmproxy/wasmproxy/admin"
	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/pluginbuild"
)

// chaosPlugin is the e2e tests' chaos plugin (e2e/testdata/chaos): a
// request's x-chaos header makes it panic, loop past the call deadline
// or allocate past the memory cap.
func chaosPlugin(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir, _ := filepath.Abs("e2e/testdata/chaos")
	sdk, _ := filepath.Abs("sdk")
	p, err := pluginbuild.Cached(ctx, filepath.Join(os.TempDir(), "wasmproxy-test-plugins"), dir, sdk)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// statusConfig runs main.wasm as plugin "trapper" under FAIL_CLOSED (a
// poisoned instance stays poisoned until a reload), with a 50 ms call
// deadline and a 64 MiB memory cap, in front of the upstream; prefix
// makes a config change.
func statusConfig(prefix, upstreamPort string) string {
	return fmt.Sprintf(`static_resources:
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
            - {name: all, domains: ["*"], routes: [{match: {prefix: %q}, route: {cluster: up}}, {match: {prefix: "/"}, route: {cluster: up}}]}
          http_filters:
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: trapper
                failure_policy: FAIL_CLOSED
                vm_config:
                  runtime: envoy.wasm.runtime.v8
                  code: {local: {filename: ./main.wasm}}
                  environment_variables: {key_values: {WASMPROXY_CALL_DEADLINE_MS: "50", WASMPROXY_MEMORY_LIMIT_MB: "64"}}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: up
    type: STATIC
    load_assignment:
      cluster_name: up
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %s}}}
`, prefix, upstreamPort)
}

// TestStatusPage runs a proxy with a real compiled plugin (the chaos
// plugin, FAIL_CLOSED), sends traffic, a panic, a runaway loop and a
// runaway allocation through it, reloads it, and reads the admin home
// page as HTML: the plugin's row counts the requests, shows each
// poisoned instance with its reason, the trap, deadline and memory-cap
// counts, the last error with its guest stack, then the replacements;
// the configuration section shows the version and each reload (a failed
// --watch build too); Envoy's command list is still there; nothing is
// loaded from elsewhere.
func TestStatusPage(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "up") }))
	defer up.Close()
	_, upPort, _ := net.SplitHostPort(up.Listener.Addr().String())
	dir := t.TempDir()
	code, err := os.ReadFile(chaosPlugin(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.wasm"), code, 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "envoy.yaml")
	write := func(prefix string) {
		if err := os.WriteFile(cfgPath, []byte(statusConfig(prefix, upPort)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("/a")
	ctx := context.Background()
	p, err := New(ctx, Options{
		ConfigPath:  cfgPath,
		CacheDir:    filepath.Join(os.TempDir(), "wasmproxy-test-wazero-cache"),
		Concurrency: 2,
		Logs:        logging.NewRegistry(io.Discard, logging.LevelInfo),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(ctx)
	adm := httptest.NewServer(p.AdminHandler())
	defer adm.Close()
	listener := "http://" + p.Addr("main")

	send := func(chaos string) int {
		req, _ := http.NewRequest("GET", listener+"/x", nil)
		if chaos != "" {
			req.Header.Set("x-chaos", chaos)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}

	// The pool's second instance starts after the proxy is ready: the
	// page shows it once it serves.
	page := getPage(t, adm.URL+"/")
	row := page.find(t, "tr", "data-plugin", "trapper")
	for deadline := time.Now().Add(30 * time.Second); len(row.classes("span", "inst")) < 2 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		page = getPage(t, adm.URL+"/")
		row = page.find(t, "tr", "data-plugin", "trapper")
	}
	if got := row.cell(t, "requests"); got != "0" {
		t.Fatalf("requests before traffic = %q, want 0", got)
	}
	if got := row.classes("span", "inst"); len(got) != 2 || got[0] != "inst inst-healthy" || got[1] != "inst inst-healthy" {
		t.Fatalf("instances before any trap: %q, want two healthy", got)
	}
	if got := row.cell(t, "error"); got != "none" {
		t.Fatalf("last error before any trap: %q", got)
	}
	version := page.find(t, "code", "class", "config-version").text()
	if len(version) != 12 {
		t.Fatalf("config version %q, want 12 hex digits", version)
	}

	const n = 7
	for i := range n {
		if code := send(""); code != 200 {
			t.Fatalf("request %d: %d", i, code)
		}
	}
	if code := send("panic"); code != 503 {
		t.Fatalf("trapping request: %d, want 503 (FAIL_CLOSED)", code)
	}

	page = getPage(t, adm.URL+"/")
	row = page.find(t, "tr", "data-plugin", "trapper")
	if got := row.cell(t, "requests"); got != strconv.Itoa(n+1) {
		t.Fatalf("requests after traffic = %q, want %d", got, n+1)
	}
	if got := row.cell(t, "rate"); got == "0" {
		t.Errorf("rate is 0 after %d requests in the last minute", n+1)
	}
	if got := row.cell(t, "p99"); !strings.HasSuffix(got, " ms") {
		t.Errorf("p99 added = %q, want a latency in ms", got)
	}
	if got := row.cell(t, "traps"); got != "1" {
		t.Errorf("traps = %q, want 1", got)
	}
	states := strings.Join(row.classes("span", "inst"), ",")
	if strings.Count(states, "inst-poisoned") != 1 || strings.Count(states, "inst-healthy") != 1 {
		t.Fatalf("instances after a trap: %s, want one poisoned, one healthy", states)
	}
	errCell := row.cell(t, "error")
	if !strings.Contains(errCell, "proxy_on_request_headers") || !strings.Contains(errCell, "trap") {
		t.Errorf("last error %q does not name the callback and the trap", errCell)
	}
	stack := row.find(t, "pre", "", "").text()
	if !strings.Contains(stack, "proxy_on_request_headers") {
		t.Errorf("guest stack %q does not show the guest's function", stack)
	}
	if svg := row.find(t, "svg", "class", "spark"); len(svg.findAll("polyline")) != 2 {
		t.Errorf("sparkline without its two lines")
	}

	// A reload of the unchanged config replaces the poisoned instance.
	if _, err := p.Reload(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	// The call deadline and the memory cap poison the two instances.
	for _, chaos := range []string{"loop", "alloc"} {
		if code := send(chaos); code != 503 {
			t.Fatalf("x-chaos: %s: %d, want 503", chaos, code)
		}
	}
	page = getPage(t, adm.URL+"/")
	row = page.find(t, "tr", "data-plugin", "trapper")
	if traps, dl, mem := row.cell(t, "traps"), row.cell(t, "deadline"), row.cell(t, "memory"); traps != "3" || dl != "1" || mem != "1" {
		t.Errorf("traps %s, deadline %s, memory cap %s; want 3, 1, 1", traps, dl, mem)
	}
	insts := row.cell(t, "instances")
	if !strings.Contains(insts, "poisoned (deadline exceeded)") || !strings.Contains(insts, "poisoned (memory limit exceeded)") {
		t.Errorf("instances %q, want one poisoned by the deadline, one by the memory cap", insts)
	}
	if got := row.cell(t, "error"); !strings.Contains(got, "memory limit exceeded") {
		t.Errorf("last error %q, want the memory cap's", got)
	}

	// A changed config is a new version.
	write("/b")
	if _, err := p.Reload(ctx, "test2"); err != nil {
		t.Fatal(err)
	}
	page = getPage(t, adm.URL+"/")
	row = page.find(t, "tr", "data-plugin", "trapper")
	states = strings.Join(row.classes("span", "inst"), ",")
	if strings.Contains(states, "inst-poisoned") {
		t.Errorf("instances after the reloads: %s, want none poisoned", states)
	}
	if !strings.Contains(row.cell(t, "error"), "memory limit exceeded") {
		t.Error("the last error is gone after the replacement")
	}
	if got := row.cell(t, "requests"); got != strconv.Itoa(n+3) {
		t.Errorf("requests after the reloads = %q, want %d (the history survives a reload)", got, n+3)
	}
	reloads := page.find(t, "table", "class", "reloads").findAll("tr")[1:] // after the header
	if len(reloads) != 2 {
		t.Fatalf("%d reloads in the history, want 2", len(reloads))
	}
	if got := reloads[0].text(); !strings.Contains(got, "test2") || !strings.Contains(got, admin.ReloadChanged) {
		t.Errorf("newest reload %q, want trigger test2, outcome changed", got)
	}
	if got := reloads[1].text(); !strings.Contains(got, "test") || !strings.Contains(got, admin.ReloadReplaced) || !strings.Contains(got, "trapper: 1 replaced") {
		t.Errorf("first reload %q, want outcome replaced naming the plugin", got)
	}
	if v := page.find(t, "code", "class", "config-version").text(); v == version || len(v) != 12 {
		t.Errorf("config version after a change %q, was %q: want a new one", v, version)
	}

	// A failed --watch build is in the history too, and /reload_status
	// has the same history as JSON.
	p.ReloadFailed("watch", errors.New("building plugin: ./main.go:12:2: undefined: x"))
	page = getPage(t, adm.URL+"/")
	newest := page.find(t, "table", "class", "reloads").findAll("tr")[1]
	if got := newest.text(); newest.attr("class") != "reload outcome-failed" || !strings.Contains(got, "watch") || !strings.Contains(got, "undefined: x") {
		t.Errorf("newest reload after a failed build: %q (%s)", got, newest.attr("class"))
	}
	resp, err := http.Get(adm.URL + "/reload_status")
	if err != nil {
		t.Fatal(err)
	}
	var st admin.ReloadStatus
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || len(st.History) != 3 || st.History[0].Outcome != admin.ReloadFailed || st.History[2].Outcome != admin.ReloadReplaced ||
		st.ConfigVersion == "" || st.History[1].ConfigVersion != st.ConfigVersion {
		t.Errorf("/reload_status: %v %+v", err, st)
	}

	// Envoy's command list, and nothing fetched from elsewhere.
	page.find(t, "a", "href", "/reload_status")
	page.find(t, "form", "action", "/reload")
	for _, tag := range []string{"script", "link", "img"} {
		for _, el := range page.findAll(tag) {
			for _, a := range el.Attr {
				if a.Key == "src" || a.Key == "href" {
					t.Errorf("<%s %s=%q>: the page must not load anything", tag, a.Key, a.Val)
				}
			}
		}
	}
}

// node is a parsed HTML element with helpers to find what the tests
// look for.
type node struct{ *html.Node }

func getPage(t *testing.T, url string) node {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET %s: %s %s", url, resp.Status, resp.Header.Get("Content-Type"))
	}
	doc, err := html.Parse(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return node{doc}
}

func (n node) attr(key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// findAll lists the elements named tag under n, in document order.
func (n node) findAll(tag string) []node {
	var out []node
	var walk func(*html.Node)
	walk = func(h *html.Node) {
		for c := h.FirstChild; c != nil; c = c.NextSibling {
			if c.Type == html.ElementNode && c.Data == tag {
				out = append(out, node{c})
			}
			walk(c)
		}
	}
	walk(n.Node)
	return out
}

// find is the first tag under n whose attribute key is val (or
// contains the class val, for "class"); key "" matches any.
func (n node) find(t *testing.T, tag, key, val string) node {
	t.Helper()
	for _, e := range n.findAll(tag) {
		v := e.attr(key)
		if key == "" || v == val || (key == "class" && strings.Contains(" "+v+" ", " "+val+" ")) {
			return e
		}
	}
	t.Fatalf("no <%s %s=%q> on the page", tag, key, val)
	return node{}
}

// cell is the text of the row's td of class c.
func (n node) cell(t *testing.T, c string) string {
	t.Helper()
	return n.find(t, "td", "class", c).text()
}

// classes are the class attributes of the tags under n whose class
// includes c.
func (n node) classes(tag, c string) []string {
	var out []string
	for _, e := range n.findAll(tag) {
		if v := e.attr("class"); strings.Contains(" "+v+" ", " "+c+" ") {
			out = append(out, v)
		}
	}
	return out
}

func (n node) text() string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(h *html.Node) {
		if h.Type == html.TextNode {
			b.WriteString(h.Data)
		}
		for c := h.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n.Node)
	return strings.Join(strings.Fields(b.String()), " ")
}
