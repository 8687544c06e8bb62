package wasm

import (
	"context"
	"testing"

	"github.com/wasmproxy/wasmproxy/config"
)

// TestLoadServiceInstances checks how a Wasm service is placed: a
// singleton in a VM of one instance of its own, a per-worker service in
// the pool, sharing the VM with a filter whose VM key matches.
func TestLoadServiceInstances(t *testing.T) {
	h := newTestHost(t, 3)
	code := abiModule().bytes()
	cfg := func(name string) *config.WasmPlugin {
		return &config.WasmPlugin{Name: name, VMID: "svc", Code: code}
	}
	filterPlugin := h.load(t, cfg("filter"))

	tests := []struct {
		name          string
		singleton     bool
		wantInstances int
		wantSharedVM  bool
	}{
		{"singleton", true, 1, false},
		{"per worker", false, 3, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc, err := h.LoadService(context.Background(), cfg(tt.name), tt.singleton)
			if err != nil {
				t.Fatal(err)
			}
			defer svc.Close(context.Background())
			if got := svc.Instances(); got != tt.wantInstances {
				t.Errorf("instances = %d, want %d", got, tt.wantInstances)
			}
			if got := svc.vm == filterPlugin.vm; got != tt.wantSharedVM {
				t.Errorf("shares the filter's VM = %v, want %v", got, tt.wantSharedVM)
			}
		})
	}
	// Two singletons with the same VM key share their one instance.
	a, err := h.LoadService(context.Background(), cfg("a"), true)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	b, err := h.LoadService(context.Background(), cfg("b"), true)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	if a.vm != b.vm || len(a.rootContexts()) != 1 || a.rootContexts()[0] == b.rootContexts()[0] {
		t.Errorf("two singletons: same VM %v, roots %d, distinct root contexts %v", a.vm == b.vm, len(a.rootContexts()), a.rootContexts()[0] != b.rootContexts()[0])
	}
}
