// Package pluginbuild is a Go plugin author's loop: it compiles a Go
// Proxy-Wasm plugin with the standard toolchain (GOOS=wasip1 GOARCH=wasm
// -buildmode=c-shared), the way `wasmproxy plugin build` and the test
// suites do, scaffolds a new one (Init, `plugin init`) and rebuilds one
// whose sources change (Watcher, `run --plugin --watch`).
package pluginbuild

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// Build compiles the plugin whose main package is in dir into out. The
// error says whether Go is missing or quotes the compiler's output.
func Build(ctx context.Context, dir, out string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("building plugin %s: the Go toolchain is not installed or not on PATH (need Go 1.24 or newer): %w", dir, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		if _, err2 := os.Stat(dir); err2 != nil {
			return fmt.Errorf("building plugin %s: %w", dir, err2)
		}
	}
	absOut, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(absOut), 0o755); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-buildmode=c-shared", "-trimpath", "-o", absOut, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	var outBuf bytes.Buffer
	cmd.Stdout = &outBuf
	cmd.Stderr = &outBuf
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(outBuf.String())
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Errorf("building plugin %s failed:\n%s", dir, msg)
	}
	return nil
}

// SourceHash is a digest of every file under dir that affects the build
// (Go sources, go.mod, go.sum) plus the directories it replaces in from
// (the SDK), so a cached build is reused only while nothing changed.
func SourceHash(dir string, extraDirs ...string) (string, error) {
	h := sha256.New()
	for _, d := range append([]string{dir}, extraDirs...) {
		var files []string
		err := filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if e.IsDir() {
				if e.Name() == "testdata" && p != d {
					return filepath.SkipDir
				}
				return nil
			}
			n := e.Name()
			if strings.HasSuffix(n, ".go") || n == "go.mod" || n == "go.sum" {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			return "", err
		}
		sort.Strings(files)
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(h, "%s\x00%d\x00", f, len(b))
			h.Write(b)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

var (
	cacheMu sync.Mutex
	once    = map[string]*buildOnce{}
)

type buildOnce struct {
	sync.Once
	path string
	err  error
}

// Cached builds dir once per source hash into cacheDir and returns the
// .wasm path; concurrent and repeated callers share the result. Tests use
// it so that each plugin is compiled once per run.
func Cached(ctx context.Context, cacheDir, dir string, extraDirs ...string) (string, error) {
	sum, err := SourceHash(dir, extraDirs...)
	if err != nil {
		return "", fmt.Errorf("hashing plugin sources in %s: %w", dir, err)
	}
	out := filepath.Join(cacheDir, filepath.Base(dir)+"-"+sum[:16]+".wasm")
	cacheMu.Lock()
	b := once[out]
	if b == nil {
		b = &buildOnce{path: out}
		once[out] = b
	}
	cacheMu.Unlock()
	b.Do(func() {
		if _, err := os.Stat(out); err == nil {
			return
		}
		// Unique per process: test binaries of one `go test ./...` run
		// build the same plugins into the same directory concurrently.
		tmp := fmt.Sprintf("%s.%d.tmp", out, os.Getpid())
		if err := Build(ctx, dir, tmp); err != nil {
			b.err = err
			return
		}
		b.err = os.Rename(tmp, out)
	})
	if b.err != nil {
		return "", b.err
	}
	return out, nil
}
