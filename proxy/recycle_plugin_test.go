package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/stats"
	"github.com/wasmproxy/wasmproxy/wasm"
)

var (
	testPluginsMu sync.Mutex
	testPlugins   = map[string]string{}
)

// testPlugin builds wasm/testdata/<name> (a Go plugin on the raw ABI)
// once per test binary.
func testPlugin(t *testing.T, name string) string {
	t.Helper()
	testPluginsMu.Lock()
	defer testPluginsMu.Unlock()
	if p := testPlugins[name]; p != "" {
		return p
	}
	dir, err := os.MkdirTemp("", "wasmproxy-recycle-plugin")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name+".wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", p, ".")
	cmd.Dir = filepath.Join("..", "wasm", "testdata", name)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GOWORK=off", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building wasm/testdata/%s: %v\n%s", name, err, out)
	}
	testPlugins[name] = p
	return p
}

// pluginLoader hands every configured HTTP filter the same Wasm plugin.
type pluginLoader struct{ p *wasm.Plugin }

func (l pluginLoader) LoadHTTPFilter(context.Context, string, *config.HTTPFilter) (filter.Factory, error) {
	return l.p, nil
}

// startPluginProxy runs wasm/testdata/<name> configured with mode in
// front of up, with auth as the cluster of its callouts.
func startPluginProxy(t *testing.T, name, mode, up, auth string) *fixture {
	t.Helper()
	ctx := context.Background()
	host, err := wasm.NewHost(ctx, wasm.Options{
		CacheDir: filepath.Join(os.TempDir(), "wasmproxy-test-wazero-cache"),
		Logs:     logging.NewRegistry(io.Discard, logging.LevelInfo),
		Stats:    stats.New(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = host.Close(ctx) })
	p, err := host.LoadPlugin(ctx, &config.WasmPlugin{Name: name, CodeFile: testPlugin(t, name), PluginConfiguration: []byte(mode)})
	if err != nil {
		t.Fatal(err)
	}
	f := startBootstrap(t, &config.Bootstrap{
		Listeners: []*config.Listener{{
			Name: "main", Address: "127.0.0.1:0",
			FilterChains: []*config.FilterChain{{HTTP: &config.HTTPConnectionManager{
				StatPrefix: "ingress_http", Codec: config.CodecAuto, MaxRequestHeadersKB: 60,
				Routes: &config.RouteConfig{Name: "local", VirtualHosts: []*config.VirtualHost{
					{Name: "vh", Domains: []string{"*"}, Routes: []*config.Route{prefixRoute("/", "up")}},
				}},
				Filters: []*config.HTTPFilter{{Name: name}, {Name: "envoy.filters.http.router", Router: true}},
			}}},
		}},
		Clusters: []*config.Cluster{staticCluster("up", up), staticCluster("auth", auth)},
	}, pluginLoader{p})
	host.SetUpstreams(f.srv)
	return f
}

// authEcho answers a callout with "ok" and its path; a path under /hold
// waits until release is closed (or the test ends) and tells held first.
func authEcho(t *testing.T, held chan<- string, release <-chan struct{}) string {
	return upstream(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/hold") {
			held <- r.URL.Path
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		io.WriteString(w, "ok"+r.URL.Path)
	})
}

// authFieldEcho is echoRequest's answer with the plugins' fields in
// front: "seen=<x-seen>;auth=<x-auth>;<X-Req-* fields>|<body>".
func authFieldEcho(t *testing.T) string {
	return upstream(t, func(w http.ResponseWriter, r *http.Request) {
		var fields []string
		for k, vs := range r.Header {
			if strings.HasPrefix(k, "X-Req-") {
				fields = append(fields, k+"="+strings.Join(vs, ","))
			}
		}
		sort.Strings(fields)
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "seen=%s;auth=%s;%s|%s", strings.Join(r.Header.Values("X-Seen"), ","),
			strings.Join(r.Header.Values("X-Auth"), ","), strings.Join(fields, ";"), b)
	})
}

// pluginRequest sends request i (a marker field, 20 more fields on odd
// requests, more than a stream holds inline, and a body of its own
// length) and checks that the upstream saw exactly its own fields and
// body with the plugins' edits want (seen, auth) of this request.
func pluginRequest(t *testing.T, rc *rawClient, i int, path, seen, auth string) {
	t.Helper()
	fields := []string{fmt.Sprintf("X-Req-Marker: request-%d", i), "X-In: " + seen}
	for j := range (i % 2) * 20 {
		fields = append(fields, fmt.Sprintf("X-Req-%02d: v%d", j, i))
	}
	body := strings.Repeat(fmt.Sprint(i%10), 1+(i%3)*300)
	status, got := rc.do("POST", path, fields, body)
	var want []string
	for _, fl := range fields {
		if name, value, _ := strings.Cut(fl, ": "); strings.HasPrefix(name, "X-Req-") {
			want = append(want, name+"="+value)
		}
	}
	sort.Strings(want)
	if w := "seen=" + seen + ";auth=" + auth + ";" + strings.Join(want, ";") + "|" + body; status != 200 || got != w {
		t.Fatalf("request %d: %d %.200q, want 200 %.200q", i, status, got, w)
	}
}

// TestWasmStreamRecycledAndIsolated: a stream that ran a Wasm plugin
// (testdata/httpfilter in "headers" mode: it reads X-In, adds it as
// x-seen, edits and lists the request's fields, adds x-resp to the
// response) is recycled once the plugin's context was deleted, and the
// next request on the connection sees only its own fields, body and
// edits: the upstream echoes exactly what each request sent plus its
// own x-seen, and the reused stream is the one the connection kept.
func TestWasmStreamRecycledAndIsolated(t *testing.T) {
	events := observeRecycling(t)
	f := startPluginProxy(t, "httpfilter", "headers", authFieldEcho(t), authEcho(t, nil, nil))
	rc := dialRaw(t, f.addr)
	var last *stream
	recycled := 0
	for i := range 10 {
		path := fmt.Sprintf("/r/%d", i)
		pluginRequest(t, rc, i, path, fmt.Sprintf("in-%d", i), "")
		ev := nextRecycle(t, events)
		if ev.path != path {
			t.Fatalf("request %d: decision for %q", i, ev.path)
		}
		if !ev.recycled {
			t.Logf("request %d: not recycled (%s)", i, ev.why)
			last = nil
			continue
		}
		recycled++
		if last != nil && ev.s != last {
			t.Errorf("request %d ran in another stream than the recycled one", i)
		}
		last = ev.s
	}
	if recycled < 9 {
		t.Errorf("%d of 10 requests through the plugin recycled, want all but the one that opened the upstream connection", recycled)
	}
}

// TestWasmCalloutStreamIsolated: a stream whose plugin paused it for
// an HTTP callout (testdata/callouts in http_call mode: the callout
// goes to the auth cluster at the request's path, its answer becomes
// the request's x-auth field, then the plugin continues) is recycled
// only when it did not wait on its context for the answer (the answer
// and the plugin's continue came before the stream waited; under load
// either happens), and the requests of the connection each see their
// own answer, whichever stream they ran in.
func TestWasmCalloutStreamIsolated(t *testing.T) {
	events := observeRecycling(t)
	f := startPluginProxy(t, "callouts", "http_call", authFieldEcho(t), authEcho(t, nil, nil))
	rc := dialRaw(t, f.addr)
	recycled := 0
	for i := range 12 {
		path := fmt.Sprintf("/r/%d", i)
		pluginRequest(t, rc, i, path, "", "ok"+path)
		ev := nextRecycle(t, events)
		if ev.path != path {
			t.Fatalf("request %d: a decision for %s", i, ev.path)
		}
		if ev.recycled {
			recycled++
		} else if ev.why != "context shared" {
			t.Fatalf("request %d paused for a callout: not recycled for %q, want only because it waited", i, ev.why)
		}
	}
	t.Logf("%d of 12 recycled", recycled)
}

// TestWasmStreamHeldByCalloutNotRecycled: a stream whose plugin waits
// for its HTTP callout when the client goes away is not recycled (it
// waited on its context; a reset one reaches no decision), and the
// callout's late answer, which the plugin then applies to its deleted
// context, shows in no later request: the next connection's requests
// each see their own answer.
func TestWasmStreamHeldByCalloutNotRecycled(t *testing.T) {
	events := observeRecycling(t)
	held := make(chan string, 4)
	release := make(chan struct{})
	f := startPluginProxy(t, "callouts", "http_call", authFieldEcho(t), authEcho(t, held, release))
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) }) // before the servers' Close
	rc := dialRaw(t, f.addr)
	pluginRequest(t, rc, 0, "/r/0", "", "ok/r/0") // opens the upstream connections
	nextRecycle(t, events)
	if _, err := io.WriteString(rc.c, "POST /hold/1 HTTP/1.1\r\nHost: recycle.test\r\nX-Req-Marker: held\r\nContent-Length: 4\r\n\r\nheld"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held:
	case <-time.After(20 * time.Second):
		t.Fatal("the plugin's callout never reached the auth cluster")
	}
	rc.c.Close()
	once.Do(func() { close(release) }) // the late answer reaches the plugin, not a stream
	rc2 := dialRaw(t, f.addr)
	heldSeen := false
	for i := range 4 {
		path := fmt.Sprintf("/r/after/%d", i)
		pluginRequest(t, rc2, i, path, "", "ok"+path)
		ev := nextRecycle(t, events)
		if ev.path == "/hold/1" { // reported whenever the held stream ended
			heldSeen = true
			if ev.recycled {
				t.Fatal("the stream held by a callout was recycled")
			}
			ev = nextRecycle(t, events)
		}
		if ev.path != path {
			t.Fatalf("after the held stream: a decision for %s, want %s's", ev.path, path)
		}
	}
	if !heldSeen {
		select {
		case ev := <-events:
			if ev.path != "/hold/1" || ev.recycled {
				t.Fatalf("a decision for %s (recycled %v)", ev.path, ev.recycled)
			}
		case <-time.After(time.Second):
			// An aborted stream reaches no decision at all.
		}
	}
}
