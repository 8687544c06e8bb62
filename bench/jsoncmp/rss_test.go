//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/wasm"
)

// vmRSS is this process's resident set (VmRSS), in bytes.
func vmRSS(tb testing.TB) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Fatal(err)
	}
	s := bufio.NewScanner(bytes.NewReader(data))
	for s.Scan() {
		if rest, ok := bytes.CutPrefix(s.Bytes(), []byte("VmRSS:")); ok {
			kb, err := strconv.ParseInt(string(bytes.TrimSuffix(bytes.TrimSpace(rest), []byte(" kB"))), 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return kb << 10
		}
	}
	tb.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// BenchmarkInstanceRSS loads examples/json-validation with a pool of N
// instances (issue 16 item 2: 1, 2, 8, 32), sends each instance a few
// requests (a warm guest heap), and reports what the process's RSS grew
// by per instance (rss-KiB/instance), over a host that already holds the
// compiled module (one instance loaded, then closed, first). One load per
// size; b.N only repeats it.
func BenchmarkInstanceRSS(b *testing.B) {
	file := buildWasm(b, jsonValidationDir)
	ctx := context.Background()
	for _, n := range []int{1, 2, 8, 32} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var perInstance float64
			for b.Loop() {
				h, err := wasm.NewHost(ctx, wasm.Options{
					CacheDir: filepath.Join(os.TempDir(), "jsoncmp-bench-cache"), PoolSize: n,
					Logs: logging.NewRegistry(io.Discard, logging.LevelWarn),
				})
				if err != nil {
					b.Fatal(err)
				}
				cfg := func() *config.WasmPlugin {
					return &config.WasmPlugin{Name: "json_validation", CodeFile: file, PluginConfiguration: []byte(pluginConfig)}
				}
				// The compiled code is shared by every instance: load it
				// once before measuring.
				warm, err := h.LoadPlugin(ctx, cfg())
				if err != nil {
					b.Fatal(err)
				}
				warm.Close(ctx)
				runtime.GC()
				debug.FreeOSMemory()
				before := vmRSS(b)
				p, err := h.LoadPlugin(ctx, cfg())
				if err != nil {
					b.Fatal(err)
				}
				// Concurrent streams, so that every instance serves some.
				streams := make([]filter.StreamFilter, 0, 2*n)
				cb := newCallbacks()
				for range 2 * n {
					s := p.NewStreamFilter(cb)
					s.DecodeHeaders(cb.req, false)
					s.DecodeData(&filter.Buffer{Bytes: []byte(validBody)}, true)
					streams = append(streams, s)
				}
				for _, s := range streams {
					s.OnLog()
					s.OnDestroy()
				}
				runtime.GC()
				debug.FreeOSMemory()
				perInstance = float64(vmRSS(b)-before) / float64(n) / 1024
				p.Close(ctx)
				h.Close(ctx)
			}
			b.ReportMetric(perInstance, "rss-KiB/instance")
		})
	}
}
