package wasm

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/stats"
)

// fuzzHost is one host and fuzzhost plugin per fuzzing process (loading a
// Go plugin per input would make the fuzzer crawl).
var fuzzHost struct {
	once sync.Once
	err  error
	h    *Host
	p    *Plugin
	logs *logSink
}

func loadFuzzHost(f testing.TB) (*Host, *Plugin, *logSink) {
	f.Helper()
	path := buildPlugin(f, "fuzzhost")
	fuzzHost.once.Do(func() {
		sink := &logSink{}
		h, err := NewHost(context.Background(), Options{
			CacheDir: filepath.Join(testDir, "cache"),
			PoolSize: 1,
			Logs:     logging.NewRegistry(sink, logging.LevelTrace),
			Stats:    stats.New(),
			Node:     &config.Node{ID: "node-1", Cluster: "cluster-1"},
		})
		if err != nil {
			fuzzHost.err = err
			return
		}
		p, err := h.LoadPlugin(context.Background(), &config.WasmPlugin{Name: "fuzzhost", CodeFile: path})
		if err != nil {
			fuzzHost.err = err
			return
		}
		fuzzHost.h, fuzzHost.p, fuzzHost.logs = h, p, sink
	})
	if fuzzHost.err != nil {
		f.Fatal(fuzzHost.err)
	}
	return fuzzHost.h, fuzzHost.p, fuzzHost.logs
}

var fuzzReport = regexp.MustCompile(`fuzz (\d+) (\d+)`)

// FuzzHostFunctions drives the host functions through a real plugin
// (testdata/fuzzhost, raw ABI) with hostile pointers, lengths, types and
// data: each input becomes one stream whose on_request_headers calls host
// function fn with args a0..a7 (a value 0xAnnnnnnn points into a scratch
// buffer holding data, so valid memory is reached too). The property: the
// host answers with a status; it never panics or traps, the callback
// finishes, the instance is not poisoned, the stream is not failed by the
// failure policy, and the next plain request still runs.
func FuzzHostFunctions(f *testing.F) {
	const s = 0xA0000000 // scratch + offset
	pairs := appendPairs(nil, []filter.Pair{{Key: "a", Value: "b"}, {Key: ":path", Value: "/x"}})
	for fn := uint8(0); fn < 29; fn++ {
		f.Add(fn, uint32(0), uint32(s), uint32(4), uint32(s+16), uint32(8), uint32(s+32), uint32(4), uint32(0), []byte("key\x00val\x00pathdata"))
	}
	// All-hostile seeds for a few (TestHostilePointers covers the rest);
	// few seeds keep the fuzzer's baseline pass short.
	for _, fn := range []uint8{2, 9, 12, 16, 23, 27} {
		f.Add(fn, uint32(0xFFFFFFFF), uint32(0xFFFFFFF0), uint32(0x7FFFFFFF), uint32(0xFFFFFFFF), uint32(0xFFFFFFFF), uint32(1), uint32(0x80000000), uint32(0xFFFFFFFF), []byte{})
	}
	f.Add(uint8(6), uint32(2), uint32(s), uint32(len(pairs)), uint32(s+0xFFF0), uint32(0x10000), uint32(s+0xFFFF), uint32(0xFFFFFFFF), uint32(0), pairs)
	// Known shapes: a property path, a local reply with garbage headers,
	// set_header_map_pairs with a lying count.
	f.Add(uint8(13), uint32(s), uint32(15), uint32(s+100), uint32(s+104), uint32(0), uint32(0), uint32(0), uint32(0), []byte("request\x00headers"))
	f.Add(uint8(12), uint32(503), uint32(s), uint32(4), uint32(s+4), uint32(4), uint32(s+8), uint32(12), uint32(0xFFFFFFFF), []byte("detsbody\xff\xff\xff\x7f\x01\x00\x00\x00\x01\x00\x00\x00"))
	f.Add(uint8(7), uint32(0), uint32(s), uint32(12), uint32(0), uint32(0), uint32(0), uint32(0), uint32(0), []byte{0xff, 0xff, 0xff, 0x7f, 1, 0, 0, 0, 1, 0, 0, 0})

	// Build, compile and start the plugin before fuzzing: the fuzzer
	// counts a first input that takes over 10 s as a hang.
	loadFuzzHost(f)
	f.Fuzz(func(t *testing.T, fn uint8, a0, a1, a2, a3, a4, a5, a6, a7 uint32, data []byte) {
		_, p, logs := loadFuzzHost(t)
		if len(data) > 4096 {
			data = data[:4096]
		}
		line := fmt.Sprintf("%d %d %d %d %d %d %d %d %d %s", fn, a0, a1, a2, a3, a4, a5, a6, a7, hex.EncodeToString(data))
		if len(data) == 0 {
			line = strings.TrimSpace(line)
		}
		logs.mu.Lock()
		logs.buf.Reset()
		logs.mu.Unlock()

		st := newStream(p)
		hs := st.decodeHeaders(true, ":path", "/", ":method", "GET", "x-fuzz", line)
		st.finish()
		text := logs.text()
		for _, r := range st.cb.replies {
			if r.details == "wasm_fail_stream" {
				t.Fatalf("x-fuzz %q: the stream failed by policy (a trap or host panic): %+v\n%s", line, r, text)
			}
		}
		report := fuzzReport.FindString(text)
		if report == "" {
			t.Fatalf("x-fuzz %q: the callback did not finish (DecodeHeaders = %v)\n%s", line, hs, text)
		}
		if os.Getenv("FUZZHOST_TRACE") != "" {
			t.Logf("%s -> %s, %d replies", line, report, len(st.cb.replies))
		}
		for _, inst := range p.currentInstances() {
			if inst.broken.Load() {
				t.Fatalf("x-fuzz %q: the instance is poisoned\n%s", line, text)
			}
		}
		// The next plain request on the same instance still runs.
		next := newStream(p)
		if got := next.decodeHeaders(true, ":path", "/"); got != filter.HeadersContinue || len(next.cb.replies) != 0 {
			t.Fatalf("x-fuzz %q: the next request got %v, replies %+v\n%s", line, got, next.cb.replies, logs.text())
		}
		next.finish()
	})
}
