package wasm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/tetratelabs/wazero"
)

// FilterKind says how a module is meant to be used, which decides the
// callbacks Inspect expects it to export.
type FilterKind string

const (
	// FilterHTTP is an envoy.filters.http.wasm filter (Istio type HTTP).
	FilterHTTP FilterKind = "http"
	// FilterNetwork is an envoy.filters.network.wasm filter (Istio type
	// NETWORK).
	FilterNetwork FilterKind = "network"
	// FilterAny expects no traffic callbacks (a bootstrap service, or a
	// module whose use is unknown).
	FilterAny FilterKind = "any"
)

// Inspection is what Inspect found in a module: the facts `wasmproxy
// plugin inspect` prints, and whether LoadPlugin would accept it.
type Inspection struct {
	Size        int    `json:"size"`
	ABIVersion  string `json:"abi_version"`           // "0.1.0", "0.2.0", "0.2.1", or "" without a marker
	Initializer string `json:"initializer,omitempty"` // "_initialize" (reactor), "_start" (command) or ""
	Allocator   string `json:"allocator,omitempty"`   // "malloc" or "proxy_on_memory_allocate"
	// Callbacks are the Proxy-Wasm callbacks the module exports, sorted.
	Callbacks []string          `json:"callbacks"`
	Imports   []InspectedImport `json:"imports"`
	// Errors are the reasons the module cannot run here, in the order
	// LoadPlugin meets them (it reports the first). Empty: it can run.
	Errors []string `json:"errors"`
	// Warnings do not stop the module from loading but mean part of it
	// will not work as the author expects.
	Warnings []string `json:"warnings"`
}

// CanRun reports whether LoadPlugin accepts the module as far as its
// binary goes (on_vm_start and on_configure still run at load).
func (in *Inspection) CanRun() bool { return len(in.Errors) == 0 }

// InspectedImport is one imported function and what the host does for it.
type InspectedImport struct {
	Module    string `json:"module"`
	Name      string `json:"name"`
	Signature string `json:"signature"`
	// Status is "ok", "unimplemented" (linked to a stub that returns
	// UNIMPLEMENTED), "missing" (the host has no such function) or
	// "mismatch" (the host's signature differs).
	Status  string `json:"status"`
	Problem string `json:"problem,omitempty"`
}

// Import statuses.
const (
	importOK            = "ok"
	importUnimplemented = "unimplemented"
	importMissing       = "missing"
	importMismatch      = "mismatch"
)

// abiCallbacks are the names of every callback in ABI 0.1.0-0.2.1 and the
// Envoy extras (reference §1.3), to tell a callback the host does not call
// yet from an export that is not a callback at all (a misspelling, or a
// name an SDK invented, which no host calls).
var abiCallbacks = map[string]bool{
	"proxy_on_context_create": true, "proxy_on_vm_start": true,
	"proxy_validate_configuration": true, "proxy_on_configure": true,
	"proxy_on_tick": true, "proxy_on_new_connection": true,
	"proxy_on_downstream_data": true, "proxy_on_upstream_data": true,
	"proxy_on_downstream_connection_close": true, "proxy_on_upstream_connection_close": true,
	"proxy_on_request_headers": true, "proxy_on_request_body": true,
	"proxy_on_request_trailers": true, "proxy_on_request_metadata": true,
	"proxy_on_response_headers": true, "proxy_on_response_body": true,
	"proxy_on_response_trailers": true, "proxy_on_response_metadata": true,
	"proxy_on_http_call_response": true, "proxy_on_grpc_receive_initial_metadata": true,
	"proxy_on_grpc_receive": true, "proxy_on_grpc_receive_trailing_metadata": true,
	"proxy_on_grpc_close": true, "proxy_on_queue_ready": true,
	"proxy_on_foreign_function": true, "proxy_on_done": true,
	"proxy_on_log": true, "proxy_on_delete": true,
	"envoy_on_resolve_dns": true, "envoy_on_stats_update": true,
}

// neededCallbacks are the callbacks without which a module used as kind
// does nothing useful; each missing one is a warning, not an error, as
// Envoy too loads such a module and simply never calls it.
var neededCallbacks = map[FilterKind][]string{
	FilterHTTP:    {"proxy_on_context_create", "proxy_on_request_headers", "proxy_on_response_headers"},
	FilterNetwork: {"proxy_on_context_create", "proxy_on_new_connection", "proxy_on_downstream_data", "proxy_on_upstream_data"},
	FilterAny:     {"proxy_on_context_create"},
}

// Inspect reports what a module exports and imports and whether this host
// can run it, using the same check LoadPlugin runs (so a module Inspect
// passes, loads, and one it fails is refused with its first error). kind
// selects the callbacks a config would need ("" means FilterHTTP). The
// error is only for a host that cannot compile at all (closed); problems
// with the module are in the Inspection.
func (h *Host) Inspect(ctx context.Context, code []byte, kind FilterKind) (*Inspection, error) {
	if kind == "" {
		kind = FilterHTTP
	}
	needed, ok := neededCallbacks[kind]
	if !ok {
		return nil, fmt.Errorf("unknown filter kind %q (want http, network or any)", kind)
	}
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return nil, errors.New("host is closed")
	}
	in := &Inspection{Size: len(code), Callbacks: []string{}, Imports: []InspectedImport{}, Errors: []string{}, Warnings: []string{}}
	if err := checkBinaryHeader(code); err != nil {
		in.Errors = append(in.Errors, err.Error())
		return in, nil
	}
	// Only the module's imports and exports are needed, not machine code:
	// wazero's interpreter decodes and validates the module as the
	// compiler does, in a fraction of the time (seconds for a large Go or
	// Rust module).
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	mod, err := rt.CompileModule(ctx, code)
	if err != nil {
		in.Errors = append(in.Errors, "compiling: "+firstLine(err.Error()))
		return in, nil
	}

	info, problems := h.checkModule(mod)
	if info.abi != abiUnknown {
		in.ABIVersion = info.abi.String()
	}
	in.Initializer, in.Allocator = info.initializer, info.allocator
	byImport := map[string]*moduleProblem{}
	for _, p := range problems {
		in.Errors = append(in.Errors, p.msg)
		if p.importName != "" && byImport[p.importName] == nil {
			byImport[p.importName] = p
		}
	}

	for _, def := range mod.ImportedFunctions() {
		module, name, _ := def.Import()
		full := module + "." + name
		imp := InspectedImport{Module: module, Name: name, Signature: signature(def.ParamTypes(), def.ResultTypes()), Status: importOK}
		switch p := byImport[full]; {
		case p != nil && h.imports[full] != nil:
			imp.Status, imp.Problem = importMismatch, p.msg
		case p != nil:
			imp.Status, imp.Problem = importMissing, p.msg
		case isStub(full):
			imp.Status = importUnimplemented
			imp.Problem = "the host links it to a stub that returns UNIMPLEMENTED (12)"
			in.Warnings = append(in.Warnings, fmt.Sprintf("imports %s, which this host does not implement yet: every call returns UNIMPLEMENTED (12)", full))
		}
		in.Imports = append(in.Imports, imp)
	}

	called := map[string]bool{}
	for name := range info.callbacks {
		called[name] = true
	}
	for name := range mod.ExportedFunctions() {
		switch {
		case abiCallbacks[name]:
			in.Callbacks = append(in.Callbacks, name)
		case strings.HasPrefix(name, "proxy_on_") && name != "proxy_on_memory_allocate":
			in.Warnings = append(in.Warnings, fmt.Sprintf("exports %s, which is not a Proxy-Wasm callback: no host calls it", name))
		}
	}
	sort.Strings(in.Callbacks)
	for _, name := range in.Callbacks {
		if !called[name] && !(name == "proxy_on_foreign_function" && info.abi == abi010) && !uncalledEverywhere[name] {
			in.Warnings = append(in.Warnings, fmt.Sprintf("exports %s, which this host does not call yet", name))
		}
	}
	exported := map[string]bool{}
	for _, name := range in.Callbacks {
		exported[name] = true
	}
	for _, name := range needed {
		if !exported[name] {
			in.Warnings = append(in.Warnings, missingCallbackWarning(kind, name))
		}
	}
	return in, nil
}

// uncalledEverywhere are the callbacks for HTTP/2 METADATA frames, which
// this host does not call (it passes no METADATA frames to filters) and
// which SDKs export whatever the plugin does — ours and
// proxy-wasm-go-sdk always do. A warning about them pointed at SDK code
// the author did not write and cannot remove, in every Go plugin.
var uncalledEverywhere = map[string]bool{
	"proxy_on_request_metadata":  true,
	"proxy_on_response_metadata": true,
}

// missingCallbackWarning explains what a config loses without name.
func missingCallbackWarning(kind FilterKind, name string) string {
	if name == "proxy_on_context_create" {
		return "does not export proxy_on_context_create: no root or stream context is ever created, so the plugin is never configured and sees no traffic"
	}
	what := map[FilterKind]string{FilterHTTP: "an HTTP filter", FilterNetwork: "a network filter"}[kind]
	return fmt.Sprintf("does not export %s: used as %s, it is never called for that event", name, what)
}

// checkBinaryHeader is the first check of any module: the wasm magic and
// binary version 1, so that text or another format gets a clear error
// rather than a decoder message.
func checkBinaryHeader(code []byte) error {
	switch {
	case len(code) == 0:
		return errors.New("empty file")
	case len(code) < 8 || !bytes.Equal(code[:4], []byte("\x00asm")):
		return errors.New("not a WebAssembly module (bad magic)")
	case !bytes.Equal(code[4:8], []byte{1, 0, 0, 0}):
		return fmt.Errorf("unsupported WebAssembly binary version %d (want 1)", code[4])
	}
	return nil
}

// stubNames holds the names of the env functions made by unimplemented():
// linked so that modules load, but answering UNIMPLEMENTED. Inspect warns
// about importing them.
var stubNames sync.Map

func isStub(importName string) bool {
	name, ok := strings.CutPrefix(importName, "env.")
	if !ok {
		return false
	}
	_, stub := stubNames.Load(name)
	return stub
}
