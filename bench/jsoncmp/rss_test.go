//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/wasm"
)

// memUse is this process's memory as the kernel counts it, in bytes:
// VmRSS (a page shared by several mappings counts once per mapping),
// Pss (a shared page counts 1/n in each of its n mappers) and
// Private_Dirty (pages only this process maps and has written), from
// /proc/self/status and /proc/self/smaps_rollup; maps is the number of
// mappings (/proc/self/maps lines).
type memUse struct{ rss, pss, privDirty, maps int64 }

func readMemUse(tb testing.TB) memUse {
	field := func(file, name string) int64 {
		data, err := os.ReadFile(file)
		if err != nil {
			tb.Fatal(err)
		}
		s := bufio.NewScanner(bytes.NewReader(data))
		for s.Scan() {
			if rest, ok := bytes.CutPrefix(s.Bytes(), []byte(name+":")); ok {
				kb, err := strconv.ParseInt(string(bytes.TrimSuffix(bytes.TrimSpace(rest), []byte(" kB"))), 10, 64)
				if err != nil {
					tb.Fatal(err)
				}
				return kb << 10
			}
		}
		tb.Fatalf("no %s in %s", name, file)
		return 0
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		tb.Fatal(err)
	}
	return memUse{
		rss:       field("/proc/self/status", "VmRSS"),
		pss:       field("/proc/self/smaps_rollup", "Pss"),
		privDirty: field("/proc/self/smaps_rollup", "Private_Dirty"),
		maps:      int64(bytes.Count(maps, []byte("\n"))),
	}
}

// shareLog collects the host's debug lines "instance memory pages
// shared" (wasm/cowmem_linux.go): the instantiation time that page
// sharing adds (took=), for the instance that made the module's image
// and for the others apart, and the pages compared and mapped.
type shareLog struct {
	mu                   sync.Mutex
	rest                 []byte
	count, pages, mapped int
	took, imageTook      time.Duration
}

func (l *shareLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.count, l.pages, l.mapped, l.took, l.imageTook = 0, 0, 0, 0, 0
}

func (l *shareLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rest = append(l.rest, p...)
	attr := func(line []byte, name string) string {
		_, after, ok := bytes.Cut(line, []byte(" "+name+"="))
		if !ok {
			return ""
		}
		v, _, _ := bytes.Cut(after, []byte(" "))
		return string(v)
	}
	for {
		line, rest, ok := bytes.Cut(l.rest, []byte("\n"))
		if !ok {
			break
		}
		if bytes.Contains(line, []byte("instance memory pages shared")) {
			d, err := time.ParseDuration(attr(line, "took"))
			pages, _ := strconv.Atoi(attr(line, "pages"))
			mapped, _ := strconv.Atoi(attr(line, "mapped"))
			switch {
			case err != nil:
			case attr(line, "image_created") == "true":
				l.imageTook += d
			default:
				l.count++
				l.took += d
				l.pages += pages
				l.mapped += mapped
			}
		}
		l.rest = append(l.rest[:0], rest...)
	}
	return len(p), nil
}

// BenchmarkInstanceRSS loads examples/json-validation with a pool of N
// instances (issue 16 item 2: 1, 2, 8, 32), sends every instance
// requests (2 each, concurrent: a warm guest heap; and 200 each in a
// second variant: the guest's garbage collector has run), and reports
// what the process's memory grew by per instance, over a host that
// already holds the compiled module (one instance loaded, then closed,
// first): VmRSS (rss-KiB), Pss (pss-KiB, the number to read when
// instances share pages), Private_Dirty (privdirty-KiB) and the
// mappings added (maps). Page sharing (wasm/cowmem_linux.go) adds
// share-ms per instance after the first, image-ms for the first (which
// writes the module's image), and mapped-% of the linear memory's pages
// (linmem-KiB at start-up);
// all 0 when built with -tags wasmproxy_nocowmem, the baseline without
// sharing. One load per size; b.N only repeats it.
func BenchmarkInstanceRSS(b *testing.B) {
	file := buildWasm(b, jsonValidationDir)
	ctx := context.Background()
	for _, requests := range []int{2, 200} {
		for _, n := range []int{1, 2, 8, 32} {
			b.Run(fmt.Sprintf("requests=%d/instances=%d", requests, n), func(b *testing.B) {
				instanceRSS(b, ctx, file, n, requests)
			})
		}
	}
}

func instanceRSS(b *testing.B, ctx context.Context, file string, n, requests int) {
	var grew memUse
	var shareMS, imageMS, mappedPct, memKiB float64
	for b.Loop() {
		slog := &shareLog{}
		h, err := wasm.NewHost(ctx, wasm.Options{
			CacheDir: filepath.Join(os.TempDir(), "jsoncmp-bench-cache"), PoolSize: n,
			Logs: logging.NewRegistry(slog, logging.LevelDebug),
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
		before := readMemUse(b)
		slog.reset()
		p, err := h.LoadPlugin(ctx, cfg())
		if err != nil {
			b.Fatal(err)
		}
		p.WaitPool() // every instance started before the streams
		// Concurrent streams, 2 per instance at a time, so that every
		// instance serves some.
		cb := newCallbacks()
		for sent := 0; sent < requests*n; sent += 2 * n {
			streams := make([]filter.StreamFilter, 0, 2*n)
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
		}
		runtime.GC()
		debug.FreeOSMemory()
		after := readMemUse(b)
		grew = memUse{after.rss - before.rss, after.pss - before.pss, after.privDirty - before.privDirty, after.maps - before.maps}
		slog.mu.Lock()
		imageMS = float64(slog.imageTook) / 1e6
		if slog.count > 0 {
			shareMS = float64(slog.took) / float64(slog.count) / 1e6
			mappedPct = 100 * float64(slog.mapped) / float64(slog.pages)
			memKiB = float64(slog.pages) * float64(os.Getpagesize()) / float64(slog.count) / 1024
		}
		slog.mu.Unlock()
		p.Close(ctx)
		h.Close(ctx)
	}
	per := func(v int64) float64 { return float64(v) / float64(n) / 1024 }
	b.ReportMetric(per(grew.rss), "rss-KiB/instance")
	b.ReportMetric(per(grew.pss), "pss-KiB/instance")
	b.ReportMetric(per(grew.privDirty), "privdirty-KiB/instance")
	b.ReportMetric(float64(grew.maps), "maps")
	b.ReportMetric(shareMS, "share-ms/instance")
	b.ReportMetric(imageMS, "image-ms")
	b.ReportMetric(mappedPct, "mapped-%")
	b.ReportMetric(memKiB, "linmem-KiB")
}
