package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmproxy/wasmproxy/internal/testnet"
)

// TestAddrInUse: a listener or admin port another process holds stops
// the start with an error that names the address and what changes it —
// the config field and file with -c, the flag with run --plugin. The
// ports are really held (a socket of this test), not simulated.
func TestAddrInUse(t *testing.T) {
	root := repoRoot(t)
	code := buildPlugin(t, "examples/add-header")
	example, err := os.ReadFile(filepath.Join(root, "examples", "add-header", "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	config := func(listen, admin int) string {
		s := strings.NewReplacer(
			"address: 0.0.0.0\n          port_value: 18000", fmt.Sprintf("address: 127.0.0.1\n          port_value: %d", listen),
			"port_value: 8099", fmt.Sprintf("port_value: %d", testnet.FreePort(t)),
			"port_value: 8001", fmt.Sprintf("port_value: %d", admin),
			"./main.wasm", code,
		).Replace(string(example))
		path := filepath.Join(t.TempDir(), "envoy.yaml")
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}

	held := holdPort(t)
	cfg := config(held, testnet.FreePort(t))
	_, stderr, exit := runCLI(t, "-c", cfg)
	want := fmt.Sprintf(`listener "main": address 127.0.0.1:%d is already in use (another process, or another listener, is bound to it): stop that, or change static_resources.listeners[0].address.socket_address.port_value in %s`, held, cfg)
	if exit != 1 || !strings.Contains(stderr, want) {
		t.Errorf("listener port taken: exit %d, stderr:\n%s\nwant %q", exit, stderr, want)
	}

	held = holdPort(t)
	cfg = config(testnet.FreePort(t), held)
	_, stderr, exit = runCLI(t, "-c", cfg)
	want = fmt.Sprintf(`admin: address 127.0.0.1:%d is already in use (another process, or another listener, is bound to it): stop that, or change admin.address.socket_address.port_value in %s`, held, cfg)
	if exit != 1 || !strings.Contains(stderr, want) {
		t.Errorf("admin port taken: exit %d, stderr:\n%s\nwant %q", exit, stderr, want)
	}

	// run --plugin generates its config: the flags are what to change.
	upstream := fmt.Sprintf("http://127.0.0.1:%d", testnet.FreePort(t))
	held = holdPort(t)
	_, stderr, exit = runCLI(t, "run", "--plugin", code, "--upstream", upstream,
		"--listen", fmt.Sprintf("127.0.0.1:%d", held), "--admin", "")
	want = fmt.Sprintf(`listener "main": address 127.0.0.1:%d is already in use (another process, or another listener, is bound to it): stop that, or change --listen`, held)
	if exit != 1 || !strings.Contains(stderr, want) {
		t.Errorf("run --plugin, --listen taken: exit %d, stderr:\n%s\nwant %q", exit, stderr, want)
	}
	held = holdPort(t)
	_, stderr, exit = runCLI(t, "run", "--plugin", code, "--upstream", upstream,
		"--listen", fmt.Sprintf("127.0.0.1:%d", testnet.FreePort(t)), "--admin", fmt.Sprintf("127.0.0.1:%d", held))
	want = fmt.Sprintf(`admin: address 127.0.0.1:%d is already in use (another process, or another listener, is bound to it): stop that, or change --admin`, held)
	if exit != 1 || !strings.Contains(stderr, want) {
		t.Errorf("run --plugin, --admin taken: exit %d, stderr:\n%s\nwant %q", exit, stderr, want)
	}
}
