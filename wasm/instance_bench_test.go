package wasm

import (
	"context"
	"io"
	"testing"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/logging"
)

// BenchmarkNewInstance measures what a pool slot costs to fill and
// empty: instantiating the module (memory included), its initializer,
// and closing it, as a load or a FAIL_RELOAD replacement does. "raw" is
// a one-page module with no initializer; "go" is the Go test plugin,
// whose _initialize grows memory several times. bench/memcap.sh runs it
// on the tree and on the commit before the memory reservation.
func BenchmarkNewInstance(b *testing.B) {
	for _, tc := range []struct {
		name string
		cfg  func() *config.WasmPlugin
	}{
		{"raw", func() *config.WasmPlugin { return &config.WasmPlugin{Name: "raw", Code: abiModule().bytes()} }},
		{"go", func() *config.WasmPlugin {
			return &config.WasmPlugin{Name: "go", CodeFile: buildPlugin(b, "httpfilter"), PluginConfiguration: []byte("bench")}
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h, err := NewHost(context.Background(), Options{
				CacheDir: testDir + "/cache", PoolSize: 1,
				Logs: logging.NewRegistry(io.Discard, logging.LevelError),
			})
			if err != nil {
				b.Fatal(err)
			}
			defer h.Close(context.Background())
			p, err := h.LoadPlugin(context.Background(), tc.cfg())
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				inst, err := p.vm.newInstance(context.Background(), p, 0, nil)
				if err != nil {
					b.Fatal(err)
				}
				inst.close()
			}
		})
	}
}
