package accesslog

import (
	"os"
	"path/filepath"
	"testing"
)

// TestWriterReopenAfterRename is log rotation: after the file is renamed
// and the writer told to reopen, new lines go to a fresh file at the path.
func TestWriterReopenAfterRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	var fs Files
	w, err := fs.Get(path)
	if err != nil {
		t.Fatal(err)
	}
	if w2, _ := fs.Get(path); w2 != w {
		t.Fatal("a second Get of the same path opened a second writer")
	}
	w.Write("one\n")
	// Wait for the line on disk (signal: the file's content), not a sleep.
	for w.Completed.Load() < 1 {
		w.Reopen() // harmless before the rename; also exercises an early reopen
		runtimeGosched()
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	fs.ReopenAll()
	w.Write("two\n")
	w.Close()
	if b, _ := os.ReadFile(path + ".1"); string(b) != "one\n" {
		t.Errorf("rotated file = %q, want %q", b, "one\n")
	}
	if b, _ := os.ReadFile(path); string(b) != "two\n" {
		t.Errorf("new file = %q, want %q", b, "two\n")
	}
	if w.Dropped.Load() != 0 || w.Failed.Load() != 0 {
		t.Errorf("dropped=%d failed=%d", w.Dropped.Load(), w.Failed.Load())
	}
}

func TestWriterOpenErrorNamesPath(t *testing.T) {
	_, err := OpenWriter(filepath.Join(t.TempDir(), "no/such/dir/a.log"))
	if err == nil || !contains(err.Error(), "no/such/dir/a.log") {
		t.Fatalf("err = %v", err)
	}
}
