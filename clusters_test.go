package wasmproxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/wasmproxy/wasmproxy/logging"
)

// TestClustersHostCxTotal: /clusters' per-host cx_total counts the
// connections made to the host, so it agrees with the cluster's
// upstream_cx_total in /stats (it was always 0). The upstream closes
// every connection, so each request dials anew.
func TestClustersHostCxTotal(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "up")
	}))
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
	ctx := context.Background()
	p, err := New(ctx, Options{ConfigPath: cfgPath, Logs: logging.NewRegistry(io.Discard, logging.LevelInfo)})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(ctx)
	admin := httptest.NewServer(p.AdminHandler())
	defer admin.Close()

	get := func(url string) string {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %s %s", url, resp.Status, b)
		}
		return string(b)
	}
	const requests = 3
	for range requests {
		get("http://" + p.Addr("main") + "/x")
	}
	stats := get(admin.URL + "/stats?filter=^cluster.up.upstream_cx_total$")
	m := regexp.MustCompile(`cluster\.up\.upstream_cx_total: (\d+)`).FindStringSubmatch(stats)
	if m == nil || m[1] == "0" {
		t.Fatalf("/stats: %q", stats)
	}
	clusters := get(admin.URL + "/clusters")
	want := fmt.Sprintf("up::127.0.0.1:%s::cx_total::%s\n", upPort, m[1])
	if !regexp.MustCompile(regexp.QuoteMeta(want)).MatchString(clusters) {
		t.Errorf("/clusters lacks %q (upstream_cx_total is %s):\n%s", want, m[1], clusters)
	}
}
