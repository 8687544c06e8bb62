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
	w.Reopen() // harmless before the rename
	w.Flush()  // "one" is on disk before the rename
	if b, _ := os.ReadFile(path); string(b) != "one\n" {
		t.Fatalf("after Flush the file holds %q", b)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	fs.ReopenAll()
	w.Write("two\n")
	w.Flush() // the reopen pending ahead of "two" is applied first
	if b, _ := os.ReadFile(path); string(b) != "two\n" {
		t.Errorf("after Flush the new file holds %q", b)
	}
	fs.Close()
	w.Write("three\n") // after Close: dropped, no panic
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
