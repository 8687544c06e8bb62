package wasm

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestHostTrimsCompilationCache: a host started on a cache directory
// bounds it first — a compiled module unused for weeks and the oldest
// over the size bound go, a recent one stays — so rebuilding plugins
// under --watch or go test no longer grows the directory without end.
func TestHostTrimsCompilationCache(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-30 * 24 * time.Hour)
	write := func(name string, size int, used time.Time) string {
		p := filepath.Join(dir, "wazero-test-amd64-linux", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, used, used); err != nil {
			t.Fatal(err)
		}
		return p
	}
	stale := write("stale", 10, old)
	lru := write("lru", 600, time.Now().Add(-3*time.Hour))
	recent := write("recent", 600, time.Now().Add(-2*time.Hour))

	h, err := NewHost(context.Background(), Options{CacheDir: dir, CacheMaxBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(context.Background())
	for _, p := range []string{stale, lru} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s is still in the cache (err %v)", filepath.Base(p), err)
		}
	}
	if _, err := os.Stat(recent); err != nil {
		t.Errorf("the most recently used module was removed: %v", err)
	}
}
