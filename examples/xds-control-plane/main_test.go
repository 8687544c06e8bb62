package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	wasmproxy "github.com/wasmproxy/wasmproxy"
	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/internal/testnet"
	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/wasmtest"
)

// TestFleetRollout runs this control plane and a wasmproxy started from
// bootstrap.yaml (only dynamic_resources, the node id from the command
// line's override): the proxy gets the listener with the json-validation
// plugin over ADS, and a new plugin configuration and then a new plugin
// module, pushed through the control plane's API, take effect in the
// running proxy.
func TestFleetRollout(t *testing.T) {
	plugin := wasmtest.Build(t, "../json-validation")
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hello from the server") }))
	defer up.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	listen := fmt.Sprintf("127.0.0.1:%d", testnet.FreePort(t))
	cp := NewControlPlane(ctx, Fleet{ListenAddr: listen, Upstream: up.Listener.Addr().String(), Plugin: plugin, Config: `{"requiredKeys": ["id", "token"]}`})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go cp.Serve(ln)
	defer cp.Stop()
	api := httptest.NewServer(cp.Handler())
	defer api.Close()

	bootstrap, err := os.ReadFile("bootstrap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, cpPort, _ := net.SplitHostPort(ln.Addr().String())
	cfg := strings.Replace(string(bootstrap), "port_value: 18001", "port_value: "+cpPort, 1)
	cfgPath := filepath.Join(t.TempDir(), "bootstrap.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := wasmproxy.New(ctx, wasmproxy.Options{
		ConfigPath: cfgPath,
		Overrides:  config.Overrides{ServiceNode: "proxy-7"},
		Logs:       logging.NewRegistry(io.Discard, logging.LevelInfo),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())

	url := "http://" + listen + "/"
	idOnly := `{"id": "xxx"}`
	waitFor(t, url, idOnly, 403, "invalid payload")
	waitFor(t, url, `{"id": "xxx", "token": "xxx"}`, 200, "hello from the server")

	// A new configuration: only "id" is required now.
	post(t, api.URL+"/config", `{"requiredKeys": ["id"]}`)
	waitFor(t, url, idOnly, 200, "hello from the server")

	// A new module (here: the same code under another path, as a
	// rollout of a new build would be) replaces the plugin in place.
	generation := p.ReloadStatus().Generation
	rolled := filepath.Join(t.TempDir(), "json-validation-v2.wasm")
	code, err := os.ReadFile(plugin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rolled, code, 0o644); err != nil {
		t.Fatal(err)
	}
	post(t, api.URL+"/plugin?path="+rolled, "")
	deadline := time.Now().Add(30 * time.Second)
	for p.ReloadStatus().Generation == generation && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if p.ReloadStatus().Generation == generation {
		t.Fatal("the new plugin module was never applied")
	}
	waitFor(t, url, idOnly, 200, "hello from the server")
	waitFor(t, url, "not JSON", 403, "invalid payload")

	// A bad update is refused by the control plane's own check, before
	// any proxy sees it.
	resp, err := http.Post(api.URL+"/plugin", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("POST /plugin without a path: %d, want 400", resp.StatusCode)
	}
}

func post(t *testing.T, url, body string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST %s: %d %s", url, resp.StatusCode, b)
	}
}

// waitFor POSTs body to url until the answer has status and body want:
// an xDS push takes effect asynchronously.
func waitFor(t *testing.T, url, body string, status int, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		resp, err := http.Post(url, "application/json", strings.NewReader(body))
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == status && strings.Contains(string(b), want) {
				return
			}
			last = fmt.Sprintf("%d %q", resp.StatusCode, b)
		} else {
			last = err.Error()
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("POST %s %s never answered %d %q; last: %s", url, body, status, want, last)
}
