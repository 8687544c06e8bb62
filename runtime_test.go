package wasmproxy

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmproxy/wasmproxy/logging"
)

// TestRuntimeAdmin: /runtime shows layered_runtime's layers as Envoy's
// admin does (a static layer, a disk layer read from its directory, the
// admin layer); POST /runtime_modify sets and removes admin-layer
// entries, which win over the others and outlive a reload.
func TestRuntimeAdmin(t *testing.T) {
	dir := t.TempDir()
	disk := filepath.Join(dir, "runtime", "current")
	if err := os.MkdirAll(filepath.Join(disk, "feature"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(disk, "feature", "flag"), []byte("on\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "envoy.yaml")
	cfg := `layered_runtime:
  layers:
  - {name: static, static_layer: {feature: {flag: "off", limit: 10}}}
  - {name: disk, disk_layer: {symlink_root: ` + disk + `}}
  - {name: admin, admin_layer: {}}
static_resources: {}
`
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
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

	type entry struct {
		LayerValues []string `json:"layer_values"`
		FinalValue  string   `json:"final_value"`
	}
	var rt struct {
		Layers  []string         `json:"layers"`
		Entries map[string]entry `json:"entries"`
	}
	read := func() {
		t.Helper()
		resp, err := http.Get(admin.URL + "/runtime")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		rt.Entries = nil
		if err := json.NewDecoder(resp.Body).Decode(&rt); err != nil {
			t.Fatal(err)
		}
	}
	modify := func(query string) (int, string) {
		t.Helper()
		resp, err := http.Post(admin.URL+"/runtime_modify?"+query, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	read()
	if strings.Join(rt.Layers, ",") != "static,disk,admin" {
		t.Errorf("layers = %v", rt.Layers)
	}
	if e := rt.Entries["feature.flag"]; e.FinalValue != "on" || strings.Join(e.LayerValues, ",") != "off,on," {
		t.Errorf("feature.flag = %+v, want final on, layer values off,on,\"\"", e)
	}
	if e := rt.Entries["feature.limit"]; e.FinalValue != "10" {
		t.Errorf("feature.limit = %+v", e)
	}

	if code, body := modify("feature.flag=admin&extra=1"); code != 200 || body != "OK\n" {
		t.Fatalf("runtime_modify: %d %q", code, body)
	}
	if _, err := p.Reload(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	read()
	if e := rt.Entries["feature.flag"]; e.FinalValue != "admin" || strings.Join(e.LayerValues, ",") != "off,on,admin" {
		t.Errorf("after runtime_modify and a reload, feature.flag = %+v", e)
	}
	if e := rt.Entries["extra"]; e.FinalValue != "1" {
		t.Errorf("extra = %+v", e)
	}
	if code, _ := modify("extra="); code != 200 {
		t.Fatalf("removing extra: %d", code)
	}
	read()
	if _, ok := rt.Entries["extra"]; ok {
		t.Errorf("extra still there after extra= : %+v", rt.Entries)
	}
	if code, _ := modify(""); code != 400 {
		t.Errorf("runtime_modify without values: %d, want 400", code)
	}
}
