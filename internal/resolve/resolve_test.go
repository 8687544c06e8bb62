package resolve

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/source"
)

// module is the smallest Wasm module: magic and version.
var module = []byte("\x00asm\x01\x00\x00\x00")

func listener(name string, http, network *config.WasmPlugin) *config.Listener {
	return &config.Listener{Name: name, Address: "127.0.0.1:0", FilterChains: []*config.FilterChain{
		{NetworkFilters: []*config.NetworkFilter{{Name: "net", Wasm: network}},
			HTTP: &config.HTTPConnectionManager{Filters: []*config.HTTPFilter{{Name: "wasm", Wasm: http}, {Name: "router", Router: true}}}},
	}}
}

// TestModel: every plugin comes out with its code and digest, HTTP and
// network alike; a code file is found beside the config and read once
// however many listeners use it; remote code is fetched once; the input
// model is left as it was.
func TestModel(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.wasm"), module, 0o644); err != nil {
		t.Fatal(err)
	}
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.Write(module)
	}))
	defer srv.Close()
	fetcher, err := source.New(source.Options{})
	if err != nil {
		t.Fatal(err)
	}
	file := func() *config.WasmPlugin { return &config.WasmPlugin{Name: "f", CodeFile: "p.wasm"} }
	remote := func() *config.WasmPlugin {
		return &config.WasmPlugin{Name: "r", Remote: &config.RemoteCode{URL: srv.URL + "/p.wasm", SHA256: source.Digest(module)}}
	}
	inline := &config.WasmPlugin{Name: "i", Code: module}
	cfg := &config.Bootstrap{Listeners: []*config.Listener{listener("a", file(), remote()), listener("b", remote(), file()), listener("c", inline, inline)}}
	before, _ := json.Marshal(cfg)

	out, err := Model(context.Background(), cfg, Options{ConfigDir: dir, Fetcher: fetcher})
	if err != nil {
		t.Fatal(err)
	}
	if after, _ := json.Marshal(cfg); string(after) != string(before) {
		t.Fatalf("the input model changed:\n%s\n%s", before, after)
	}
	var plugins []*config.WasmPlugin
	for _, l := range out.Listeners {
		c := l.FilterChains[0]
		plugins = append(plugins, c.HTTP.Filters[0].Wasm, c.NetworkFilters[0].Wasm)
	}
	for _, p := range plugins {
		if string(p.Code) != string(module) || p.CodeDigest != source.Digest(module) {
			t.Errorf("plugin %s: code %q, digest %q", p.Name, p.Code, p.CodeDigest)
		}
		if p.Name == "f" && p.CodeFile != filepath.Join(dir, "p.wasm") {
			t.Errorf("code file %q, want it found beside the config", p.CodeFile)
		}
	}
	if &plugins[0].Code[0] != &plugins[3].Code[0] {
		t.Error("the code file was read twice")
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("the remote module was fetched %d times", n)
	}
	if out.Listeners[0].FilterChains[0].HTTP.Filters[1] != cfg.Listeners[0].FilterChains[0].HTTP.Filters[1] {
		t.Error("a filter without a plugin was copied")
	}
}

// TestModelFailures: an unreadable code file is left for loading to
// report; remote code that cannot be fetched fails a reload, naming the
// listener and plugin, and at start-up leaves the plugin without code
// (Unavailable) for its failure policy to decide.
func TestModelFailures(t *testing.T) {
	fetcher, err := source.New(source.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	remote := &config.WasmPlugin{Name: "r", Remote: &config.RemoteCode{URL: srv.URL + "/gone.wasm"}}
	missing := &config.WasmPlugin{Name: "f", CodeFile: "/nonexistent/p.wasm"}
	cfg := &config.Bootstrap{Listeners: []*config.Listener{listener("main", missing, remote)}}

	_, err = Model(context.Background(), cfg, Options{Fetcher: fetcher})
	if err == nil || !strings.Contains(err.Error(), `listener "main": plugin "r"`) {
		t.Fatalf("reload: %v", err)
	}
	out, err := Model(context.Background(), cfg, Options{Fetcher: fetcher, Startup: true})
	if err != nil {
		t.Fatal(err)
	}
	c := out.Listeners[0].FilterChains[0]
	if w := c.NetworkFilters[0].Wasm; !Unavailable(w) || w.CodeDigest != "" {
		t.Errorf("unfetched remote code: %+v", w)
	}
	if w := c.HTTP.Filters[0].Wasm; w.Code != nil || w.CodeDigest != "" || w.CodeFile != missing.CodeFile {
		t.Errorf("unreadable code file: %+v", w)
	}
}
