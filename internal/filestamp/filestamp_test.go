package filestamp

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestTake: a change of size or content is seen; a touch without a
// change is not; a file whose size and (old) modification time are
// unchanged is not read again, which is why a rewrite that keeps both
// goes unseen once its time is old, and is seen while it is recent.
func TestTake(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "p.wasm")
	write := func(s string, mod time.Time) {
		t.Helper()
		if err := os.WriteFile(f, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if !mod.IsZero() {
			if err := os.Chtimes(f, mod, mod); err != nil {
				t.Fatal(err)
			}
		}
	}
	old := time.Now().Add(-time.Hour)
	write("aaaa", old)
	files := []string{f, filepath.Join(dir, "missing.wasm")}
	first := Take(files, nil)
	if first[f].Sum == "" || first[files[1]].Size != -1 {
		t.Fatalf("first look: %+v", first)
	}

	// The same size and the same old time: not read, so a rewrite that
	// keeps both is not seen (the price of not hashing every poll).
	write("bbbb", old)
	if !Same(first, Take(files, first)) {
		t.Fatal("a file with its old size and time was read again")
	}
	// A touch without a change is no change.
	write("aaaa", old.Add(time.Minute))
	if !Same(first, Take(files, first)) {
		t.Fatal("a touched file counts as changed")
	}
	// A rewrite of the same size within the racy window is hashed: seen.
	now := time.Now()
	write("aaaa", now)
	recent := Take(files, first)
	write("cccc", now)
	if Same(recent, Take(files, recent)) {
		t.Fatal("a same-size rewrite within the timestamp resolution went unseen")
	}
	// Another size is seen, as is a file appearing.
	write("dddddd", now)
	if Same(recent, Take(files, recent)) {
		t.Fatal("a size change went unseen")
	}
	if err := os.WriteFile(files[1], []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if Same(recent, Take(files, recent)) {
		t.Fatal("a new file went unseen")
	}
}
