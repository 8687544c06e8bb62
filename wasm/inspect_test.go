package wasm

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/wasmproxy/wasmproxy/config"
)

// TestInspect checks Inspect on hand-made modules, one problem each, and
// that LoadPlugin refuses every module Inspect says cannot run with
// Inspect's first error: the two share one check.
func TestInspect(t *testing.T) {
	h := newTestHost(t, 1)
	logImport := rawImport{"env", "proxy_log", []byte{tI32, tI32, tI32}, i32x1}
	ctxCreate := rawFunc{params: i32x2, export: "proxy_on_context_create"}
	reqHeaders := rawFunc{params: []byte{tI32, tI32, tI32}, results: i32x1, body: i32Const(0), export: "proxy_on_request_headers"}
	respHeaders := rawFunc{params: []byte{tI32, tI32, tI32}, results: i32x1, body: i32Const(0), export: "proxy_on_response_headers"}
	good := rawModule{
		imports: []rawImport{logImport},
		funcs:   []rawFunc{markerFunc("proxy_abi_version_0_2_1"), bumpMalloc(), ctxCreate, reqHeaders, respHeaders},
		memory:  true,
	}
	with := func(edit func(m *rawModule)) []byte {
		m := good
		m.imports = slices.Clone(good.imports)
		m.funcs = slices.Clone(good.funcs)
		edit(&m)
		return m.bytes()
	}
	tests := []struct {
		name     string
		code     []byte
		kind     FilterKind
		abi      string
		errors   []string // substrings, in order
		warnings []string // substrings, each in some warning
		imports  map[string]string
	}{
		{
			name:    "good",
			code:    good.bytes(),
			abi:     "0.2.1",
			imports: map[string]string{"env.proxy_log": importOK},
		},
		{
			name:   "no marker",
			code:   with(func(m *rawModule) { m.funcs = m.funcs[1:] }),
			errors: []string{"no Proxy-Wasm ABI version marker"},
		},
		{
			name: "missing import and foreign module",
			code: with(func(m *rawModule) {
				m.imports = append(m.imports, rawImport{"env", "proxy_nope", nil, i32x1}, rawImport{"other", "thing", nil, nil})
			}),
			abi:     "0.2.1",
			errors:  []string{"imports env.proxy_nope, which this host does not provide", `from module "other"`},
			imports: map[string]string{"env.proxy_log": importOK, "env.proxy_nope": importMissing, "other.thing": importMissing},
		},
		{
			name:    "wrong import signature",
			code:    with(func(m *rawModule) { m.imports[0].params = i32x2 }),
			abi:     "0.2.1",
			errors:  []string{"imports env.proxy_log with signature (i32,i32)->i32, but the host provides (i32,i32,i32)->i32"},
			imports: map[string]string{"env.proxy_log": importMismatch},
		},
		{
			name:   "wrong callback signature",
			code:   with(func(m *rawModule) { m.funcs[3].params = i32x2 }),
			abi:    "0.2.1",
			errors: []string{"exports proxy_on_request_headers with signature (i32,i32)->i32, want (i32,i32,i32)->i32"},
		},
		{
			name:   "no allocator, no memory",
			code:   with(func(m *rawModule) { m.funcs = slices.Delete(m.funcs, 1, 2); m.memory = false }),
			abi:    "0.2.1",
			errors: []string{`does not export its memory as "memory"`, "exports no allocator"},
		},
		{
			name: "HTTP callbacks missing, invented callback",
			code: with(func(m *rawModule) {
				m.funcs = append(m.funcs[:3], rawFunc{params: []byte{tI32, tI32, tI32}, export: "proxy_on_grpc_trailing_metadata"})
			}),
			abi: "0.2.1",
			warnings: []string{
				"does not export proxy_on_request_headers: used as an HTTP filter",
				"does not export proxy_on_response_headers: used as an HTTP filter",
				"exports proxy_on_grpc_trailing_metadata, which is not a Proxy-Wasm callback",
			},
		},
		{
			name:     "network kind",
			code:     good.bytes(),
			kind:     FilterNetwork,
			abi:      "0.2.1",
			warnings: []string{"does not export proxy_on_new_connection: used as a network filter", "proxy_on_downstream_data", "proxy_on_upstream_data"},
		},
		{
			name:   "garbage",
			code:   []byte("#!/bin/sh\necho not wasm\n"),
			errors: []string{"bad magic"},
		},
		{
			name:   "binary version 2",
			code:   append([]byte("\x00asm\x02\x00\x00\x00"), good.bytes()[8:]...),
			errors: []string{"unsupported WebAssembly binary version 2"},
		},
		{
			name:   "truncated",
			code:   good.bytes()[:20],
			errors: []string{"compiling:"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in, err := h.Inspect(context.Background(), tc.code, tc.kind)
			if err != nil {
				t.Fatal(err)
			}
			if in.ABIVersion != tc.abi || in.Size != len(tc.code) {
				t.Errorf("abi %q size %d, want %q %d", in.ABIVersion, in.Size, tc.abi, len(tc.code))
			}
			if len(in.Errors) != len(tc.errors) {
				t.Fatalf("errors %q, want %d matching %q", in.Errors, len(tc.errors), tc.errors)
			}
			for i, want := range tc.errors {
				if !strings.Contains(in.Errors[i], want) {
					t.Errorf("error %d = %q, want it to contain %q", i, in.Errors[i], want)
				}
			}
			if in.CanRun() != (len(tc.errors) == 0) {
				t.Errorf("CanRun = %v with errors %q", in.CanRun(), in.Errors)
			}
			for _, want := range tc.warnings {
				if !slices.ContainsFunc(in.Warnings, func(w string) bool { return strings.Contains(w, want) }) {
					t.Errorf("no warning contains %q: %q", want, in.Warnings)
				}
			}
			if tc.warnings == nil && tc.errors == nil && len(in.Warnings) != 0 {
				t.Errorf("unexpected warnings %q", in.Warnings)
			}
			got := map[string]string{}
			for _, im := range in.Imports {
				got[im.Module+"."+im.Name] = im.Status
			}
			for name, status := range tc.imports {
				if got[name] != status {
					t.Errorf("import %s status %q, want %q", name, got[name], status)
				}
			}

			// The load-time check is the same one.
			_, err = h.LoadPlugin(context.Background(), &config.WasmPlugin{Name: "inspected", Code: tc.code})
			if in.CanRun() {
				if err != nil {
					t.Errorf("Inspect says it can run, LoadPlugin: %v", err)
				}
			} else if err == nil || !strings.Contains(err.Error(), in.Errors[0]) {
				t.Errorf("LoadPlugin error %v, want it to contain Inspect's first error %q", err, in.Errors[0])
			}
		})
	}
}
