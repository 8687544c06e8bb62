package cachetrim

import (
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// file writes size bytes at root/rel, last used at t.
func file(t *testing.T, root, rel string, size int, used time.Time) string {
	t.Helper()
	p := filepath.Join(root, rel)
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

// left lists the paths under root (files only, relative), sorted.
func left(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && filepath.Base(p) != stampFile {
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

func TestTrim(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	clock := func() time.Time { return now }
	tests := []struct {
		name     string
		files    map[string]time.Time // path → last use; every file is 100 bytes
		opts     Options
		wantLeft []string
		removed  int
	}{
		{
			name: "under the cap and young: nothing removed",
			files: map[string]time.Time{
				"wazero-v1-amd64-linux/a": ago(time.Hour),
				"wazero-v1-amd64-linux/b": ago(2 * time.Hour),
			},
			opts:     Options{MaxBytes: 1000},
			wantLeft: []string{"wazero-v1-amd64-linux/a", "wazero-v1-amd64-linux/b"},
		},
		{
			name: "over the cap: least recently used first, across wazero versions",
			files: map[string]time.Time{
				"wazero-v1-amd64-linux/old":  ago(3 * time.Hour),
				"wazero-dev-amd64-linux/mid": ago(2 * time.Hour),
				"wazero-v1-amd64-linux/new":  ago(time.Hour),
			},
			opts:     Options{MaxBytes: 150},
			wantLeft: []string{"wazero-v1-amd64-linux/new"},
			removed:  2,
		},
		{
			name: "the wasm host's rewritten modules count with the compiled ones",
			files: map[string]time.Time{
				"prepared/old.wasm":       ago(3 * time.Hour),
				"wazero-v1-amd64-linux/x": ago(2 * time.Hour),
				"prepared/stale.wasm":     ago(6 * 24 * time.Hour),
				"prepared/new.wasm":       ago(time.Hour),
			},
			opts:     Options{MaxBytes: 250},
			wantLeft: []string{"prepared/new.wasm", "wazero-v1-amd64-linux/x"},
			removed:  2,
		},
		{
			name: "unused longer than MaxAge: removed even under the cap",
			files: map[string]time.Time{
				"wazero-v1-amd64-linux/stale": ago(6 * 24 * time.Hour),
				"wazero-v1-amd64-linux/fresh": ago(time.Hour),
			},
			opts:     Options{},
			wantLeft: []string{"wazero-v1-amd64-linux/fresh"},
			removed:  1,
		},
		{
			name: "a wasmtest plugin folder goes whole, by its newest file, and only by age",
			files: map[string]time.Time{
				"wasmtest/aaaa/p.wasm":       ago(6 * 24 * time.Hour),
				"wasmtest/aaaa/p.wasm.1.tmp": ago(6 * 24 * time.Hour),
				"wasmtest/bbbb/q.wasm":       ago(7 * 24 * time.Hour),
				"wasmtest/bbbb/r.wasm":       ago(30 * time.Minute),
				"wasmtest/cccc/s.wasm":       ago(4 * time.Hour),
			},
			opts:     Options{MaxBytes: 100},
			wantLeft: []string{"wasmtest/bbbb/q.wasm", "wasmtest/bbbb/r.wasm", "wasmtest/cccc/s.wasm"},
			removed:  1,
		},
		{
			name: "entries younger than a minute stay, even over the cap",
			files: map[string]time.Time{
				"wazero-v1-amd64-linux/writing": ago(10 * time.Second),
				"wazero-v1-amd64-linux/older":   ago(time.Hour),
			},
			opts:     Options{MaxBytes: 50},
			wantLeft: []string{"wazero-v1-amd64-linux/writing"},
			removed:  1,
		},
		{
			name: "other folders (fetched modules) are not this package's",
			files: map[string]time.Time{
				"modules/sha256/x":          ago(30 * 24 * time.Hour),
				"wazero-v1-amd64-linux/old": ago(30 * 24 * time.Hour),
			},
			opts:     Options{},
			wantLeft: []string{"modules/sha256/x"},
			removed:  1,
		},
		{
			name: "bounds turned off",
			files: map[string]time.Time{
				"wazero-v1-amd64-linux/old": ago(30 * 24 * time.Hour),
			},
			opts:     Options{MaxBytes: -1, MaxAge: -1},
			wantLeft: []string{"wazero-v1-amd64-linux/old"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for rel, used := range tc.files {
				file(t, root, rel, 100, used)
			}
			// The folder times follow the files written into them.
			for _, d := range []string{"wasmtest/aaaa", "wasmtest/bbbb", "wasmtest/cccc"} {
				os.Chtimes(filepath.Join(root, d), now.Add(-10*24*time.Hour), now.Add(-10*24*time.Hour))
			}
			tc.opts.Now = clock
			res, err := Trim(root, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := left(t, root); !equal(got, tc.wantLeft) {
				t.Errorf("left %v, want %v", got, tc.wantLeft)
			}
			if res.Removed != tc.removed || res.Entries != entriesOf(tc.files) {
				t.Errorf("result %+v, want %d removed of %d entries", res, tc.removed, entriesOf(tc.files))
			}
		})
	}
}

// TestTrimInterval: a second trim within the interval does nothing (the
// stamp file is shared by every process using the directory); after it,
// the cache is trimmed again.
func TestTrimInterval(t *testing.T) {
	root := t.TempDir()
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	if res, err := Trim(root, Options{Now: clock}); err != nil || res.Skipped {
		t.Fatalf("first trim: %+v, %v", res, err)
	}
	stale := file(t, root, "wazero-v1-amd64-linux/stale", 10, now.Add(-30*24*time.Hour))
	now = now.Add(30 * time.Minute)
	if res, err := Trim(root, Options{Now: clock}); err != nil || !res.Skipped {
		t.Fatalf("trim 30 minutes later: %+v, %v (want skipped)", res, err)
	}
	if _, err := os.Stat(stale); err != nil {
		t.Fatalf("skipped trim removed %s", stale)
	}
	now = now.Add(time.Hour)
	if res, err := Trim(root, Options{Now: clock}); err != nil || res.Skipped || res.Removed != 1 {
		t.Fatalf("trim after the interval: %+v, %v (want 1 removed)", res, err)
	}
}

func TestTrimMissingDir(t *testing.T) {
	res, err := Trim(filepath.Join(t.TempDir(), "none"), Options{})
	if err != nil || res.Entries != 0 {
		t.Fatalf("missing directory: %+v, %v", res, err)
	}
}

func entriesOf(files map[string]time.Time) int {
	dirs := map[string]bool{}
	n := 0
	for rel := range files {
		if d := filepath.Dir(rel); filepath.Dir(d) == "wasmtest" {
			dirs[d] = true
		} else if filepath.Dir(d) == "." && d != "modules" {
			n++
		}
	}
	return n + len(dirs)
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
