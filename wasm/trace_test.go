package wasm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmproxy/wasmproxy/config"
)

// TestTrapTraceSourceLines: a trap in a C plugin built with DWARF is
// logged with the source file:line of each frame, whether the module runs
// metered (the default: its line table is translated to the rewritten
// code) or not (deadlines off: the module's own DWARF), and with the
// same code offsets both ways, those of the module as built. DWARF 5,
// which wazero cannot read itself, gets lines too when metered.
func TestTrapTraceSourceLines(t *testing.T) {
	off := map[string]string{EnvCallDeadline: "0", EnvStartDeadline: "0"}
	for _, tc := range []struct {
		name, file string
		env        map[string]string
		noNames    bool
		// how the two frames are named
		divide, caller string
	}{
		{"DWARF 4 metered", "lines-dwarf4.wasm", nil, false, ".divide", ".proxy_on_request_headers"},
		{"DWARF 4 deadlines off", "lines-dwarf4.wasm", off, false, ".divide", ".proxy_on_request_headers"},
		{"DWARF 5 metered", "lines-dwarf5.wasm", nil, false, ".divide", ".proxy_on_request_headers"},
		// Without a name section frames are numbered: the numbers are
		// those of the module as built, not shifted by the meter's import.
		{"no names metered", "lines-dwarf4.wasm", nil, true, ".$7", ".$5"},
		{"no names deadlines off", "lines-dwarf4.wasm", off, true, ".$7", ".$5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code := filepath.Join("meter", "testdata", tc.file)
			if tc.noNames {
				code = withoutNameSection(t, code)
			}
			h := newTestHost(t, 1)
			p := h.load(t, &config.WasmPlugin{
				Name:         "lines",
				CodeFile:     code,
				EnvKeyValues: tc.env,
			})
			s := newStream(p)
			s.decodeHeaders(true, ":path", "/")
			s.finish()
			text := h.logs.text()
			if !strings.Contains(text, "wasm: plugin lines: proxy_on_request_headers failed: wasm error: integer divide by zero") {
				t.Fatalf("trap not logged:\n%s", text)
			}
			if n := strings.Count(text, "integer divide by zero"); n != 1 {
				t.Errorf("the trap is logged %d times, want once:\n%s", n, text)
			}
			// Offsets in the code section of the module as built (as
			// llvm-dwarfdump --debug-line shows them for
			// meter/testdata/lines-dwarf4.wasm): the division in divide()
			// and the call to it in proxy_on_request_headers.
			for _, want := range []string{
				tc.divide + `(i32) i32\n\t\t0x9f: lines.c:36:12`,
				tc.caller + `(i32,i32,i32) i32\n\t\t0x46: lines.c:43:20`,
			} {
				if !strings.Contains(text, want) {
					t.Errorf("trap log lacks %q:\n%s", want, text)
				}
			}
		})
	}
}

// withoutNameSection writes a copy of the module at path without its
// "name" custom section and returns the copy's path.
func withoutNameSection(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := append([]byte(nil), b[:8]...)
	for pos := 8; pos < len(b); {
		size, n := memUleb(b[pos+1:])
		end := pos + 1 + n + int(size)
		content := b[pos+1+n : end]
		nameLen, m := memUleb(content)
		if !(b[pos] == 0 && string(content[m:m+int(nameLen)]) == "name") {
			out = append(out, b[pos:end]...)
		}
		pos = end
	}
	dst := filepath.Join(t.TempDir(), "nonames.wasm")
	if err := os.WriteFile(dst, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}
