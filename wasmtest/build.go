package wasmtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/wasmproxy/wasmproxy/pluginbuild"
)

var (
	buildMu   sync.Mutex
	buildOnce = map[string]*builtPlugin{}
)

type builtPlugin struct {
	once sync.Once
	path string
	err  error
}

// Build compiles the Go plugin whose main package is in dir with the
// standard toolchain (GOOS=wasip1 GOARCH=wasm -buildmode=c-shared, as
// `wasmproxy plugin build` does) and returns the .wasm file. It builds
// each folder once per test process; Go's build cache keeps rebuilding
// an unchanged plugin cheap. A compile error fails t with the compiler's
// output.
//
// The file lives in the user's cache directory (one per plugin folder,
// replaced by every build), so nothing is written to dir.
func Build(t TB, dir string) string {
	t.Helper()
	path, err := build(dir)
	if err != nil {
		t.Fatalf("wasmtest: %v", err)
	}
	return path
}

func build(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	buildMu.Lock()
	b := buildOnce[abs]
	if b == nil {
		b = &builtPlugin{}
		buildOnce[abs] = b
	}
	buildMu.Unlock()
	b.once.Do(func() { b.path, b.err = buildNow(abs) })
	return b.path, b.err
}

func buildNow(abs string) (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	// One folder per plugin folder, so the file keeps the plugin's name
	// (the harness names plugins after their file).
	sum := sha256.Sum256([]byte(abs))
	outDir := filepath.Join(cache, "wasmproxy", "wasmtest", hex.EncodeToString(sum[:8]))
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(outDir, filepath.Base(abs)+".wasm")
	// Build beside the target and rename: another test process may be
	// reading the previous build.
	tmp := fmt.Sprintf("%s.%d.tmp", out, os.Getpid())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := pluginbuild.Build(ctx, abs, tmp); err != nil {
		os.Remove(tmp)
		return "", err
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", err
	}
	return out, nil
}
