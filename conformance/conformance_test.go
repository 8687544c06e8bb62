package conformance

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"
)

// An area check sends real requests through one plugin's listener and
// asserts what Envoy would show for that ABI area (conformance/README.md).
type areaCheck func(t *testing.T, p *proxy, pl *plugin)

var areaChecks = map[string]areaCheck{
	"headers":    checkHeaders,
	"body":       checkBody,
	"localreply": checkLocalReply,
	"properties": checkProperties,
	"metrics":    checkMetrics,
	"shareddata": checkSharedData,
	"queues":     checkQueues,
	"timers":     checkTimers,
	"callout":    checkCallout,
	"foreign":    checkForeign,
	"logs":       checkLogs,
}

// allAreas is what the C, Rust and AssemblyScript plugins each implement.
var allAreas = goAreas

func runAreas(t *testing.T, p *proxy, pl *plugin, areas []string) {
	for _, area := range areas {
		t.Run(area, func(t *testing.T) { areaChecks[area](t, p, pl) })
	}
}

// singlePlugin runs every area against one plugin that implements them all.
func singlePlugin(t *testing.T, lang string, b *buildOnce, build func() (string, error), extra ...string) {
	wasm := b.get(t, lang, build)
	pl := &plugin{name: "conformance-" + lang, lang: lang, wasm: wasm, tcp: slices.Contains(extra, "tcp")}
	p := startProxy(t, pl)
	runAreas(t, p, pl, append(append([]string{}, allAreas...), extra...))
}

// TestC runs the C plugin (raw ABI 0.2.1, wasi-libc reactor), with the
// raw-ABI areas too.
func TestC(t *testing.T) { singlePlugin(t, "c", &cBuild, buildC, rawAreas...) }

// TestRust runs the Rust plugin (raw ABI 0.2.1, std only), with the
// raw-ABI areas it implements.
func TestRust(t *testing.T) { singlePlugin(t, "rust", &rustBuild, buildRust, rustRawAreas...) }

// TestAssemblyScript runs the plugin built with @solo-io/proxy-runtime.
func TestAssemblyScript(t *testing.T) {
	singlePlugin(t, "assemblyscript", &asBuild, buildAssemblyScript)
}

// TestGoSDK runs the Go SDK plugins, one per ABI area, each on its own
// listener of one proxy.
func TestGoSDK(t *testing.T) {
	var plugins []*plugin
	for _, area := range goAreas {
		plugins = append(plugins, &plugin{name: "go-" + area, lang: "go", wasm: buildGo(t, area), noMapSize: true})
	}
	p := startProxy(t, plugins...)
	for i, area := range goAreas {
		t.Run(area, func(t *testing.T) { areaChecks[area](t, p, plugins[i]) })
	}
}

// TestInspectConformancePlugins runs `wasmproxy plugin inspect --json` on
// every conformance plugin: modules from four toolchains, all runnable,
// with the ABI version their SDK declares.
func TestInspectConformancePlugins(t *testing.T) {
	type module struct {
		lang, wasm, abi string
		warnings        []string // substrings each expected in some warning
	}
	var modules []module
	try := func(lang string, b *buildOnce, build func() (string, error), abi string, warnings ...string) {
		t.Run("build "+lang, func(t *testing.T) {
			modules = append(modules, module{lang, b.get(t, lang, build), abi, warnings})
		})
	}
	try("c", &cBuild, buildC, "0.2.1")
	try("rust", &rustBuild, buildRust, "0.2.1")
	// The SDK exports a misspelt gRPC callback no host calls (cpp-sdk
	// declares the same wrong name; the host looks up ..._receive_...).
	try("assemblyscript", &asBuild, buildAssemblyScript, "0.2.0", "proxy_on_grpc_trailing_metadata, which is not a Proxy-Wasm callback")
	modules = append(modules, module{"go", buildGo(t, "headers"), "0.2.1", nil})
	bin := wasmproxyBinary(t)
	for _, m := range modules {
		t.Run(m.lang, func(t *testing.T) {
			out, err := exec.Command(bin, "plugin", "inspect", "--json", m.wasm).Output()
			if err != nil {
				t.Fatalf("inspect %s: %v\n%s", m.wasm, err, out)
			}
			var r struct {
				ABIVersion string   `json:"abi_version"`
				CanRun     bool     `json:"can_run"`
				Callbacks  []string `json:"callbacks"`
				Warnings   []string `json:"warnings"`
				Imports    []struct{ Module, Name, Status string }
			}
			if err := json.Unmarshal(out, &r); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if r.ABIVersion != m.abi || !r.CanRun {
				t.Errorf("abi %q can_run %v, want %q true\n%s", r.ABIVersion, r.CanRun, m.abi, out)
			}
			for _, im := range r.Imports {
				if im.Status != "ok" {
					t.Errorf("import %s.%s: %s", im.Module, im.Name, im.Status)
				}
			}
			for _, cb := range []string{"proxy_on_context_create", "proxy_on_request_headers", "proxy_on_response_headers"} {
				if !contains(r.Callbacks, cb) {
					t.Errorf("callbacks %v lack %s", r.Callbacks, cb)
				}
			}
			for _, w := range m.warnings {
				found := false
				for _, got := range r.Warnings {
					found = found || strings.Contains(got, w)
				}
				if !found {
					t.Errorf("no warning contains %q: %q", w, r.Warnings)
				}
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// ---- area checks ------------------------------------------------------------

// checkHeaders: add, replace and remove on both sides; the pair count
// equals the callback's num_headers; proxy_get_header_map_size is Envoy's
// byte size (sum of names and values).
func checkHeaders(t *testing.T, p *proxy, pl *plugin) {
	h := http.Header{}
	h.Set("X-Conf-Replace", "original")
	h.Set("X-Conf-Remove", "gone")
	h.Add("X-Multi", "a")
	h.Add("X-Multi", "b")
	r := do(t, pl, "GET", "/headers", h, nil)
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	e := r.echo(t)
	want(t, "upstream x-conf-lang", e.header("x-conf-lang"), pl.lang)
	want(t, "upstream x-conf-replace", strings.Join(e.Headers["x-conf-replace"], ","), "replaced")
	if v, ok := e.Headers["x-conf-remove"]; ok {
		t.Errorf("x-conf-remove reached the upstream: %q", v)
	}
	pairs, numHeaders := e.header("x-conf-pairs"), e.header("x-conf-num-headers")
	if n, _ := strconv.Atoi(pairs); n < 8 || pairs != numHeaders {
		t.Errorf("pairs %q, num_headers %q: want equal, at least 8 (4 pseudo-headers, host, user-agent, x-conf-*, x-multi×2)", pairs, numHeaders)
	}
	if !pl.noMapSize {
		want(t, "proxy_get_header_map_size (Envoy: bytes of names and values)", e.header("x-conf-map-size"), e.header("x-conf-pairs-bytes"))
	}
	want(t, "response x-conf-resp-lang", r.header.Get("X-Conf-Resp-Lang"), pl.lang)
	if v := r.header.Values("X-Upstream-Remove"); len(v) != 0 {
		t.Errorf("x-upstream-remove reached the client: %q", v)
	}
	want(t, "response x-upstream-replace", strings.Join(r.header.Values("X-Upstream-Replace"), ","), "replaced-by-"+pl.lang)
}

// checkBody: a request body sent in two chunks is buffered and seen whole
// (StopIterationAndBuffer), prepended to; the response body is appended to.
func checkBody(t *testing.T, p *proxy, pl *plugin) {
	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte("hello "))
		time.Sleep(50 * time.Millisecond)
		pw.Write([]byte("body"))
		pw.Close()
	}()
	r := do(t, pl, "POST", "/body", nil, pr)
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	e := r.echo(t)
	want(t, "upstream body", e.Body, "["+pl.lang+"]hello body")
	if !strings.HasSuffix(r.body, "}\n["+pl.lang+" was here]\n") {
		t.Errorf("response body does not end with the appended tag: %q", r.body)
	}
}

// checkLocalReply: the plugin answers without the upstream, with its
// status, body and header; as in Envoy, the response callbacks run for the
// local reply too.
func checkLocalReply(t *testing.T, p *proxy, pl *plugin) {
	r := do(t, pl, "GET", "/local", nil, nil)
	want(t, "status", strconv.Itoa(r.status), "418")
	want(t, "x-conf-local", r.header.Get("X-Conf-Local"), pl.lang)
	if !strings.HasPrefix(r.body, "local reply from "+pl.lang+"\n") {
		t.Errorf("body %q", r.body)
	}
	want(t, "x-conf-resp-lang (on_response_headers ran for the local reply)", r.header.Get("X-Conf-Resp-Lang"), pl.lang)
	if got := p.upstream.requests("/local"); len(got) != 0 {
		t.Errorf("the upstream received %d /local requests", len(got))
	}
}

// checkProperties: Envoy's attribute names and encodings (8-byte
// little-endian integers, nanosecond timestamps, comma-joined header
// values, xds.node as a serialized Node), plugin_* names, a property set
// and read back, both configurations, the log level and the clock.
func checkProperties(t *testing.T, p *proxy, pl *plugin) {
	h := http.Header{}
	h.Add("X-Multi", "a")
	h.Add("X-Multi", "b")
	r := do(t, pl, "GET", "/props?x=1", h, nil)
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	e := r.echo(t)
	want(t, "request.path", e.header("x-conf-prop-path"), "/props?x=1")
	want(t, "request.method", e.header("x-conf-prop-method"), "GET")
	want(t, "request.protocol", e.header("x-conf-prop-protocol"), "HTTP/1.1")
	want(t, "request.headers.x-multi", e.header("x-conf-prop-multi"), "a,b")
	want(t, "plugin_name", e.header("x-conf-plugin-name"), pl.name)
	want(t, "plugin_root_id", e.header("x-conf-plugin-root-id"), rootID)
	want(t, "plugin_vm_id", e.header("x-conf-plugin-vm-id"), pl.vmID())
	want(t, "source.port", e.header("x-conf-source-port"), strconv.Itoa(r.localAddr.Port))
	if id := e.header("x-conf-connection-id"); id == "" || strings.Trim(id, "0123456789") != "" {
		t.Errorf("connection_id %q, want a decimal (decoded from 8 bytes)", id)
	}
	checkNanos(t, "request.time", e.header("x-conf-request-time"), r)
	if raw, err := hex.DecodeString(e.header("x-conf-node")); err != nil {
		t.Errorf("xds.node: %v", err)
	} else {
		var node corev3.Node
		if err := proto.Unmarshal(raw, &node); err != nil {
			t.Errorf("xds.node is not a serialized envoy.config.core.v3.Node: %v", err)
		}
		want(t, "xds.node id", node.GetId(), "conformance-node")
		want(t, "xds.node cluster", node.GetCluster(), "conformance-cluster")
	}
	want(t, "proxy_set_property then proxy_get_property", e.header("x-conf-set-property"), pl.lang)
	want(t, "VM configuration", e.header("x-conf-vm-config"), pl.vmConfig())
	want(t, "plugin configuration", e.header("x-conf-config"), pl.pluginConfig())
	want(t, "proxy_get_log_level at -l info", e.header("x-conf-log-level"), "2")
	checkNanos(t, "current time", e.header("x-conf-now"), r)
	wantEnvoy(t, "response.code in on_response_headers", r.header.Get("X-Conf-Resp-Code"), "200")
}

// checkNanos: a wall-clock time in nanoseconds during the request.
func checkNanos(t *testing.T, what, value string, r *response) {
	t.Helper()
	ns, err := strconv.ParseInt(value, 10, 64)
	if err != nil {
		t.Errorf("%s %q: %v", what, value, err)
		return
	}
	at := time.Unix(0, ns)
	if at.Before(r.sent.Add(-time.Second)) || at.After(r.received.Add(time.Second)) {
		t.Errorf("%s = %v, not during the request (%v to %v)", what, at, r.sent, r.received)
	}
}

var statLine = regexp.MustCompile(`(?m)^(\S+): (.*)$`)

// stats reads /stats as name → value text.
func (p *proxy) stats(t *testing.T) map[string]string {
	out := map[string]string{}
	for _, m := range statLine.FindAllStringSubmatch(p.adminGet(t, "/stats"), -1) {
		out[m[1]] = m[2]
	}
	return out
}

// checkMetrics: a counter read back with proxy_get_metric grows with each
// request across instances; /stats shows it and a histogram of body sizes
// under the plugin's own names, /stats/prometheus without Envoy's prefix.
func checkMetrics(t *testing.T, p *proxy, pl *plugin) {
	counter := "conformance_" + pl.lang + "_requests"
	histogram := "conformance_" + pl.lang + "_body_bytes"
	last := -1
	for i := 0; i < 3; i++ {
		r := do(t, pl, "POST", fmt.Sprintf("/metrics-%d", i), nil, strings.NewReader("12345"))
		n, err := strconv.Atoi(r.echo(t).header("x-conf-requests"))
		if err != nil || n <= last {
			t.Errorf("request %d: x-conf-requests %d (%v), previous %d", i, n, err, last)
		}
		last = n
	}
	st := p.stats(t)
	if n, _ := strconv.Atoi(st[counter]); n < 3 {
		t.Errorf("/stats %s = %q, want at least 3", counter, st[counter])
	}
	if h := st[histogram]; !strings.Contains(h, "P50(") {
		t.Errorf("/stats %s = %q, want Envoy's quantile summary", histogram, h)
	}
	prom := p.adminGet(t, "/stats/prometheus")
	if !regexp.MustCompile(`(?m)^` + counter + `\{\} \d+`).MatchString(prom) {
		t.Errorf("/stats/prometheus has no %s{} series", counter)
	}
	if strings.Contains(prom, "envoy_"+counter) {
		t.Errorf("/stats/prometheus prefixes the custom metric with envoy_")
	}
	if !strings.Contains(prom, histogram+"_bucket") {
		t.Errorf("/stats/prometheus has no %s histogram", histogram)
	}
}

// checkSharedData: consecutive requests, spread over both instances,
// count up by one in the shared "hits" value (CAS-incremented).
func checkSharedData(t *testing.T, p *proxy, pl *plugin) {
	var hits []int
	for i := 0; i < 6; i++ {
		n, err := strconv.Atoi(do(t, pl, "GET", "/shared", nil, nil).echo(t).header("x-conf-hits"))
		if err != nil {
			t.Fatal(err)
		}
		hits = append(hits, n)
	}
	for i := 1; i < len(hits); i++ {
		if hits[i] != hits[i-1]+1 {
			t.Fatalf("hits %v: want consecutive values (one store for every instance)", hits)
		}
	}
}

// checkQueues: a message enqueued by a stream on a queue resolved by name
// reaches the registrant's proxy_on_queue_ready.
func checkQueues(t *testing.T, p *proxy, pl *plugin) {
	path := "/enqueue-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if r := do(t, pl, "GET", path, nil, nil); r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	p.waitLog(t, logPrefix(pl), "dequeued "+pl.lang+" "+path)
}

// checkTimers: every root context's ticks (50 ms) raise a gauge.
func checkTimers(t *testing.T, p *proxy, pl *plugin) {
	gauge := "conformance_" + pl.lang + "_ticks"
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, _ := strconv.Atoi(p.stats(t)[gauge])
		if n >= 6 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/stats %s = %d after 10s, want at least 6", gauge, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkCallout: a stream paused in on_request_headers is resumed from the
// http_call reply, which arrives on the root context; the reply's headers
// and body were readable there.
func checkCallout(t *testing.T, p *proxy, pl *plugin) {
	r := do(t, pl, "GET", "/callout", nil, nil)
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	e := r.echo(t)
	if msg := e.header("x-conf-callout-error"); msg != "" {
		t.Fatalf("proxy_http_call failed: %s", msg)
	}
	want(t, "callout :status", e.header("x-conf-callout-status"), "200")
	want(t, "callout body size", e.header("x-conf-callout-body-size"), strconv.Itoa(len(calloutTargetBody)))
	want(t, "x-conf-lang", e.header("x-conf-lang"), pl.lang)
	calls := p.upstream.requests("/callout-target")
	if len(calls) == 0 {
		t.Fatal("the upstream never received the callout")
	}
	want(t, "callout authority", calls[len(calls)-1].Host, "conformance-upstream")
}

// checkForeign: compress/uncompress round-trip; an unknown function is
// NOT_FOUND (1).
func checkForeign(t *testing.T, p *proxy, pl *plugin) {
	e := do(t, pl, "GET", "/foreign", nil, nil).echo(t)
	want(t, "compress+uncompress", e.header("x-conf-foreign"), "roundtrip")
	want(t, "unknown foreign function status", e.header("x-conf-foreign-missing"), "1")
}

// logPrefix is Envoy's plugin log prefix: "wasm log <name> <root_id>
// <vm_id>: ".
func logPrefix(pl *plugin) string {
	return fmt.Sprintf("wasm log %s %s %s: ", pl.name, rootID, pl.vmID())
}

// checkLogs: proxy_log lines in Envoy's format from on_vm_start (with the
// VM configuration), on_configure (plugin configuration), a stream's
// headers and its on_log (with response.code), and nothing below info.
func checkLogs(t *testing.T, p *proxy, pl *plugin) {
	prefix := logPrefix(pl)
	p.waitLog(t, prefix+"vm_start", "vm_config="+pl.vmConfig())
	p.waitLog(t, prefix+"configure", "config="+pl.pluginConfig())
	path := "/logs-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	do(t, pl, "GET", path, nil, nil)
	p.waitLog(t, prefix+"request_headers "+path)
	p.waitLog(t, prefix+"log "+path+" 200")
	sc := bufio.NewScanner(strings.NewReader(p.Logs()))
	for sc.Scan() {
		if strings.Contains(sc.Text(), prefix) && strings.Contains(sc.Text(), "level=DEBUG") {
			t.Errorf("a debug line at -l info: %s", sc.Text())
		}
	}
}

// knownDifferences are places where wasmproxy, as of this writing, still
// shows something other than Envoy, each with what it shows instead.
// wantEnvoy logs them rather than failing, so the rest of the area keeps
// its coverage; once fixed, the check fails until the entry is removed,
// so the list only shrinks. docs/compatibility.md lists them too.
var knownDifferences = map[string]string{}

// wantEnvoy is want for an Envoy behaviour that may be a known difference.
func wantEnvoy(t *testing.T, what, got, expected string) {
	t.Helper()
	instead, known := knownDifferences[what]
	switch {
	case !known:
		want(t, what, got, expected)
	case got == expected:
		t.Errorf("%s now behaves as Envoy (%q): remove it from knownDifferences and docs/compatibility.md", what, got)
	case got != instead:
		t.Errorf("%s = %q: neither Envoy's %q nor the known difference %q", what, got, expected, instead)
	default:
		t.Logf("known difference from Envoy: %s = %q, Envoy %q", what, got, expected)
	}
}

func want(t *testing.T, what, got, expected string) {
	t.Helper()
	if got != expected {
		t.Errorf("%s = %q, want %q", what, got, expected)
	}
}
