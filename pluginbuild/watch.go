package pluginbuild

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Watcher rebuilds a plugin when its Go sources change and hands the
// result on (`wasmproxy run --plugin --watch`: the proxy reloads it).
type Watcher struct {
	// Src is the plugin's source folder; Out the .wasm file it builds.
	Src, Out string
	// Built is called after each rebuild Run makes; its error is
	// logged.
	Built func(ctx context.Context) error
	// Failed, when set, is called with each rebuild's build error, after
	// it is logged (the proxy records it in /reload_status).
	Failed func(err error)
	Log    *slog.Logger
	// Interval is between looks at the sources (default 150ms): small,
	// because a look is a few stat calls and the edit→serving time is
	// what users feel.
	Interval time.Duration

	// built is the sources' stamp as the last successful Build read
	// them (valid when hasBuilt).
	built    [sha256.Size]byte
	hasBuilt bool
}

// Run polls the sources until ctx ends. A change is acted on once the
// files have stopped changing for one interval (an editor writing in
// steps); a failed build or Built is logged and the running plugin keeps
// serving.
func (w *Watcher) Run(ctx context.Context) {
	if w.Interval == 0 {
		w.Interval = 150 * time.Millisecond
	}
	// Changes are counted from the sources the serving module was built
	// from, not from when this goroutine first runs: an edit made between
	// the first Build and then (a loaded machine can delay the goroutine
	// past the proxy's first requests) would otherwise never be built.
	last := w.built
	if !w.hasBuilt {
		last = sourceStamp(w.Src)
	}
	t := time.NewTicker(w.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := sourceStamp(w.Src)
		if now == last {
			continue
		}
		// Settle: wait until two looks agree.
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(w.Interval):
			}
			again := sourceStamp(w.Src)
			if again == now {
				break
			}
			now = again
		}
		last = now
		start := time.Now()
		if err := w.Build(ctx); err != nil {
			// The compiler's output in the message, where the log format
			// keeps its newlines (an attribute's value would be quoted).
			w.Log.Error("plugin rebuild failed; the running plugin keeps serving: "+err.Error(), "trigger", "watch")
			if w.Failed != nil {
				w.Failed(err)
			}
			continue
		}
		built := time.Since(start)
		if err := w.Built(ctx); err != nil {
			w.Log.Error("plugin swap failed; the running plugin keeps serving", "trigger", "watch", "err", err)
			continue
		}
		w.Log.Info("plugin rebuilt and swapped in", "trigger", "watch", "build", built.Round(time.Millisecond),
			"total", time.Since(start).Round(time.Millisecond))
	}
}

// Build compiles the sources to a temporary file and renames it over
// Out, so a reader never sees half a module. It is not safe to call
// while Run runs (Run calls it itself).
func (w *Watcher) Build(ctx context.Context) error {
	// Stamped before the compiler reads them: an edit during the build
	// shows as a change afterwards.
	stamp := sourceStamp(w.Src)
	tmp := fmt.Sprintf("%s.%d.tmp", w.Out, os.Getpid())
	if err := Build(ctx, w.Src, tmp); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, w.Out); err != nil {
		return err
	}
	w.built, w.hasBuilt = stamp, true
	return nil
}

// sourceStamp digests the names, sizes and modification times of the
// files that change a build (Go files other than tests, go.mod, go.sum).
func sourceStamp(dir string) [sha256.Size]byte {
	var lines []string
	_ = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if e.IsDir() {
			if p != dir && (e.Name() == "testdata" || strings.HasPrefix(e.Name(), ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		n := e.Name()
		if (strings.HasSuffix(n, ".go") && !strings.HasSuffix(n, "_test.go")) || n == "go.mod" || n == "go.sum" {
			if fi, err := e.Info(); err == nil {
				lines = append(lines, fmt.Sprintf("%s %d %d", p, fi.Size(), fi.ModTime().UnixNano()))
			}
		}
		return nil
	})
	sort.Strings(lines)
	return sha256.Sum256([]byte(strings.Join(lines, "\n")))
}

// HasGoSources reports whether dir holds a Go plugin's sources (go.mod
// or *.go).
func HasGoSources(dir string) bool {
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
		return true
	}
	m, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	return len(m) > 0
}
