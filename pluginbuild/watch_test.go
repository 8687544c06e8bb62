package pluginbuild

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWatcherCountsFromTheBuild: an edit made after Build but before Run
// first looks at the sources (a loaded machine can start Run's goroutine
// late) is still a change to build: here a broken edit, reported to Failed.
func TestWatcherCountsFromTheBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the Go toolchain")
	}
	src := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(src, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/watched\n\ngo 1.24\n")
	write("main.go", "package main\n\nfunc main() {}\n")
	var logs bytes.Buffer
	failed := make(chan error, 1)
	w := &Watcher{
		Src: src, Out: filepath.Join(t.TempDir(), "main.wasm"),
		Log:      slog.New(slog.NewTextHandler(&logs, nil)),
		Interval: 10 * time.Millisecond,
		Built:    func(context.Context) error { t.Error("a broken edit was built"); return nil },
		Failed:   func(err error) { failed <- err },
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := w.Build(ctx); err != nil {
		t.Fatal(err)
	}
	// A different size, so the stamp changes whatever the clock's
	// resolution.
	write("main.go", "package main\n\nfunc main() { undefinedName() }\n")
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	select {
	case err := <-failed:
		if !strings.Contains(err.Error(), "undefinedName") {
			t.Errorf("build error %q does not name the undefined identifier", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("the edit made before Run started was never built; log:\n%s", logs.String())
	}
	cancel()
	<-done
}
