package wasmproxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/internal/testnet"
	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/pluginbuild"
)

// maxPluginRequestAllocs is what one keep-alive POST of bench/post.lua's
// body through the json-validation plugin (examples/json-validation,
// bench/configs/wasmproxy-json-validation.yaml's configuration) may
// allocate in the Go heap, the whole proxy included (the guest's own
// allocations live in its linear memory): 5 (the stream, the filter
// chain's three slices, the Wasm filter) until the connection recycled
// streams whose filters let go of them, with the chain's slices and the
// Wasm filter (decisions §81; docs/perf.md). Raising it needs a reason.
const maxPluginRequestAllocs = 0

// jsonValidation builds examples/json-validation.
func jsonValidation(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir, _ := filepath.Abs("examples/json-validation")
	sdk, _ := filepath.Abs("sdk")
	p, err := pluginbuild.Cached(ctx, filepath.Join(os.TempDir(), "wasmproxy-test-plugins"), dir, sdk)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startJSONValidationProxy runs bench/configs/wasmproxy-json-validation.yaml's
// chain (the plugin, then the router) on a free port in front of up.
func startJSONValidationProxy(t *testing.T, up string) *Proxy {
	t.Helper()
	_, upPort, _ := net.SplitHostPort(up)
	dir := t.TempDir()
	code, err := os.ReadFile(jsonValidation(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "json-validation.wasm"), code, 0o644); err != nil {
		t.Fatal(err)
	}
	yaml, err := os.ReadFile("bench/configs/wasmproxy-json-validation.yaml")
	if err != nil {
		t.Fatal(err)
	}
	y := strings.NewReplacer("port_value: 28002", "port_value: 0", "port_value: 28099", "port_value: "+upPort,
		"./json-validation.wasm", filepath.Join(dir, "json-validation.wasm")).Replace(string(yaml))
	cfgPath := filepath.Join(dir, "envoy.yaml")
	if err := os.WriteFile(cfgPath, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return startConfigFile(t, cfgPath)
}

// startConfigFile starts a proxy on the config file at cfgPath, with the
// tests' shared compilation cache and its logs discarded; it is shut
// down as the test ends.
func startConfigFile(t *testing.T, cfgPath string) *Proxy {
	t.Helper()
	ctx := context.Background()
	p, err := New(ctx, Options{
		ConfigPath: cfgPath,
		CacheDir:   filepath.Join(os.TempDir(), "wasmproxy-test-wazero-cache"),
		Logs:       logging.NewRegistry(io.Discard, logging.LevelInfo),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Shutdown(ctx) })
	return p
}

// TestPluginRequestAllocs fails when a keep-alive POST through the
// json-validation plugin allocates more than it did: a raw-socket
// client and upstream (allocating nothing per request) around the
// proxy, testing.AllocsPerRun counting the process's allocations.
func TestPluginRequestAllocs(t *testing.T) {
	if raceOn {
		t.Skip("the race detector allocates")
	}
	if testing.Short() {
		t.Skip("counts allocations over 1000 requests")
	}
	p := startJSONValidationProxy(t, testnet.FixedUpstream(t))
	c, err := net.Dial("tcp", p.Addr("bench_json_validation"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := `{"id": "xxx", "token": "xxx", "anotherField": "yyy"}`
	req := []byte("POST /bench HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	br := bufio.NewReaderSize(c, 4<<10)
	roundTrip := func() {
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		n, err := testnet.ReadHead(br)
		if err != nil {
			t.Fatal(err)
		}
		if n != len("hello from the server") {
			t.Fatalf("response body of %d bytes, want the upstream's 21", n)
		}
		if _, err := br.Discard(n); err != nil {
			t.Fatal(err)
		}
	}
	roundTrip() // the plugin's context, the upstream connection
	roundTrip()
	got := testing.AllocsPerRun(1000, roundTrip)
	if got > maxPluginRequestAllocs {
		t.Errorf("a POST through the json-validation plugin allocates %v times, more than %v", got, maxPluginRequestAllocs)
	}
	t.Logf("%v allocations per request through the plugin", got)
}

// TestJSONValidationKeepAliveIsolated: on one keep-alive connection
// through the json-validation plugin (whose streams the connection now
// recycles), valid and invalid bodies of varying sizes alternate with a
// request without content-type (whose early reply ends the connection;
// the test goes on on a new one); each is judged on its own body and
// fields: the valid ones reach the upstream with exactly their own
// fields and body, the others get the plugin's 403 and its own
// message, whatever the request before was.
func TestJSONValidationKeepAliveIsolated(t *testing.T) {
	up := echoReqFields()
	defer up.Close()
	p := startJSONValidationProxy(t, up.Listener.Addr().String())
	c, err := net.DialTimeout("tcp", p.Addr("bench_json_validation"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { c.Close() }()
	br := bufio.NewReader(c)
	for i := range 30 {
		var body, ctype, wantStatus, wantBody string
		switch i % 3 {
		case 0: // valid, its size growing
			body = fmt.Sprintf(`{"id": "%d", "token": "t%d", "pad": %q}`, i, i, strings.Repeat("p", i*40))
			ctype, wantStatus = "Content-Type: application/json\r\n", "200"
		case 1: // a key missing
			body = fmt.Sprintf(`{"id": "%d"}`, i)
			ctype, wantStatus, wantBody = "Content-Type: application/json\r\n", "403", "invalid payload"
		default: // valid JSON, but no content-type
			body = fmt.Sprintf(`{"id": "%d", "token": "t"}`, i)
			wantStatus, wantBody = "403", "content-type must be provided"
		}
		marker := fmt.Sprintf("X-Req-Marker=request-%d", i)
		if wantStatus == "200" {
			wantBody = marker + "|" + body
		}
		req := fmt.Sprintf("POST /r%d HTTP/1.1\r\nHost: plugin.test\r\nX-Req-Marker: request-%d\r\n%sContent-Length: %d\r\n\r\n%s", i, i, ctype, len(body), body)
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if strconv.Itoa(resp.StatusCode) != wantStatus || string(got) != wantBody {
			t.Fatalf("request %d: %d %.120q, want %s %.120q", i, resp.StatusCode, got, wantStatus, wantBody)
		}
		if resp.Close {
			// A reply before the body was read (no content-type) ends
			// the connection, as Envoy's does; the next one goes on.
			if wantStatus == "200" {
				t.Fatalf("request %d: the proxy closes the connection", i)
			}
			c.Close()
			if c, err = net.DialTimeout("tcp", p.Addr("bench_json_validation"), 5*time.Second); err != nil {
				t.Fatal(err)
			}
			br = bufio.NewReader(c)
		}
	}
}
