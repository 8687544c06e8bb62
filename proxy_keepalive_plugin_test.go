package wasmproxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestProxyPluginKeepAliveRequestsIsolated: with a Wasm plugin in the
// chain (examples/add-header), the requests of one keep-alive HTTP/1.1
// connection each reach the upstream with their own fields and body
// alone, and each response carries the plugin's header once: the
// connection recycles the streams whose plugin context was deleted
// (proxy/recycle.go, decisions §81), and nothing of one request's
// plugin context shows in the next.
func TestProxyPluginKeepAliveRequestsIsolated(t *testing.T) {
	up := echoReqFields()
	defer up.Close()
	_, upPort, _ := net.SplitHostPort(up.Listener.Addr().String())
	dir := t.TempDir()
	code, err := os.ReadFile(addHeader(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.wasm"), code, 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "envoy.yaml")
	if err := os.WriteFile(cfgPath, []byte(configYAML("/", upPort)), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startConfigFile(t, cfgPath)

	c, err := net.DialTimeout("tcp", p.Addr("main"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i := range 20 {
		n := 1 + (i%2)*19 // 1 field, then 20
		var req strings.Builder
		fmt.Fprintf(&req, "POST /r%d HTTP/1.1\r\nHost: plugin.test\r\n", i)
		var want []string
		for j := range n {
			fmt.Fprintf(&req, "X-Req-%d-%02d: v%d\r\n", i, j, i)
			want = append(want, fmt.Sprintf("X-Req-%d-%02d=v%d", i, j, i))
		}
		body := strings.Repeat(fmt.Sprint(i%10), 1+(i%3)*200)
		fmt.Fprintf(&req, "Content-Length: %d\r\n\r\n%s", len(body), body)
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.WriteString(c, req.String()); err != nil {
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
		sort.Strings(want)
		if w := strings.Join(want, ";") + "|" + body; resp.StatusCode != 200 || string(got) != w {
			t.Fatalf("request %d: %d %.120q, want 200 %.120q", i, resp.StatusCode, got, w)
		}
		if vs := resp.Header.Values("Resp-Header-Demo"); len(vs) != 1 || vs[0] != "added by our filter" {
			t.Fatalf("request %d: the plugin's header %q, want it once", i, vs)
		}
	}
}

// echoReqFields is an upstream that answers each request with the
// request's X-Req-* fields, sorted ("name=value;..."), a "|" and its
// body: what the proxy forwarded of that request alone.
func echoReqFields() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var fields []string
		for k, vs := range r.Header {
			if strings.HasPrefix(k, "X-Req-") {
				fields = append(fields, k+"="+strings.Join(vs, ","))
			}
		}
		sort.Strings(fields)
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s|%s", strings.Join(fields, ";"), b)
	}))
}
