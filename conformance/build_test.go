package conformance

// Building the conformance plugins from source, once per test run (and,
// through a content-addressed cache in the temp dir, once per source
// version across runs). A missing toolchain skips that language locally
// with the packages to install, and fails under CI=true, where .ci/run
// installs every toolchain (package prereq decides).

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
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/internal/prereq"
	"github.com/wasmproxy/wasmproxy/pluginbuild"
)

// cacheDir holds built plugins, shared with the e2e suite's Go builds.
func cacheDir() string { return filepath.Join(os.TempDir(), "wasmproxy-test-plugins") }

// buildOnce runs one language's build once per test binary.
type buildOnce struct {
	once sync.Once
	path string
	err  error
	took time.Duration
}

func (b *buildOnce) get(t *testing.T, lang string, build func() (string, error)) string {
	t.Helper()
	b.once.Do(func() {
		start := time.Now()
		b.path, b.err = build()
		b.took = time.Since(start)
	})
	prereq.Skip(t, b.err)
	t.Logf("%s plugin: %s (built or found in cache in %v)", lang, b.path, b.took.Round(time.Millisecond))
	return b.path
}

// hashFiles digests the named files' contents with extra strings (tool
// versions, flags), for cache keys.
func hashFiles(files []string, extra ...string) (string, error) {
	h := sha256.New()
	for _, e := range extra {
		fmt.Fprintf(h, "%s\x00", e)
	}
	sort.Strings(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", filepath.Base(f), len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// cached returns the cached output for key, or builds it with build(tmp)
// and moves it into place atomically.
func cached(name, key string, build func(out string) error) (string, error) {
	out := filepath.Join(cacheDir(), name+"-"+key+".wasm")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if err := os.MkdirAll(cacheDir(), 0o755); err != nil {
		return "", err
	}
	tmp := fmt.Sprintf("%s.%d.tmp", out, os.Getpid())
	if err := build(tmp); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return out, os.Rename(tmp, out)
}

// run executes a build command with a time limit and returns its output
// in the error.
func run(dir string, env []string, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return nil
}

func output(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).Output()
	return strings.TrimSpace(string(out)), err
}

var cBuild, rustBuild, asBuild buildOnce

// buildC compiles c/conformance.c as a WASI reactor exporting malloc.
func buildC() (string, error) { return buildCFile("conformance") }

var cABI010Build buildOnce

// buildCABI010 compiles c/abi010.c, the ABI 0.1.0 module.
func buildCABI010() (string, error) { return buildCFile("abi010") }

func buildCFile(name string) (string, error) {
	clang, err := prereq.FindC()
	if err != nil {
		return "", err
	}
	version, _ := output(clang, "--version")
	src := filepath.Join("c", name+".c")
	args := []string{"--target=wasm32-wasi", "-mexec-model=reactor", "-O2", "-Wall", "-Wextra", "-Werror", "-Wl,--export=malloc"}
	key, err := hashFiles([]string{src}, append(args, version)...)
	if err != nil {
		return "", err
	}
	cacheName := "conformance-c"
	if name != "conformance" {
		cacheName += "-" + name
	}
	return cached(cacheName, key, func(out string) error {
		return run(".", nil, clang, append(args, "-o", out, src)...)
	})
}

// buildRust compiles rust/conformance.rs as a cdylib, without cargo.
func buildRust() (string, error) {
	rustc, target, err := prereq.FindRust()
	if err != nil {
		return "", err
	}
	version, _ := output(rustc, "--version")
	src := filepath.Join("rust", "conformance.rs")
	args := []string{"--edition", "2021", "--target", target, "--crate-type", "cdylib", "-O", "-C", "strip=debuginfo"}
	key, err := hashFiles([]string{src}, append(args, version)...)
	if err != nil {
		return "", err
	}
	return cached("conformance-rust", key, func(out string) error {
		// rustc writes intermediate files beside the output.
		return run(filepath.Dir(out), nil, rustc, append(args, "-o", out, mustAbs(src))...)
	})
}

func mustAbs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		panic(err)
	}
	return a
}

// buildAssemblyScript installs the pinned npm packages with `npm ci` into
// a work dir keyed by the lock file (so node_modules is installed once,
// not per source change), then compiles assembly/index.ts with asc.
func buildAssemblyScript() (string, error) {
	npm, node, err := prereq.FindNode()
	if err != nil {
		return "", err
	}
	dir := "assemblyscript"
	var sources []string
	err = filepath.WalkDir(filepath.Join(dir, "assembly"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			sources = append(sources, p)
		}
		return err
	})
	if err != nil {
		return "", err
	}
	lockFiles := []string{filepath.Join(dir, "package.json"), filepath.Join(dir, "package-lock.json")}
	lockKey, err := hashFiles(lockFiles)
	if err != nil {
		return "", err
	}
	key, err := hashFiles(append(sources, lockFiles...))
	if err != nil {
		return "", err
	}
	return cached("conformance-assemblyscript", key, func(out string) error {
		work := filepath.Join(cacheDir(), "assemblyscript-"+lockKey)
		if _, err := os.Stat(filepath.Join(work, "node_modules", "assemblyscript")); err != nil {
			if err := os.MkdirAll(work, 0o755); err != nil {
				return err
			}
			for _, f := range lockFiles {
				if err := copyFile(f, filepath.Join(work, filepath.Base(f))); err != nil {
					return err
				}
			}
			if err := run(work, nil, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"); err != nil {
				return err
			}
		}
		// Fresh sources for this build.
		if err := os.RemoveAll(filepath.Join(work, "assembly")); err != nil {
			return err
		}
		for _, s := range sources {
			rel, _ := filepath.Rel(dir, s)
			if err := copyFile(s, filepath.Join(work, rel)); err != nil {
				return err
			}
		}
		asc := filepath.Join(work, "node_modules", "assemblyscript", "bin", "asc")
		return run(work, nil, node, asc, "assembly/index.ts", "-b", out,
			"--use", "abort=abort_proc_exit", "-O3", "--noAssert")
	})
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

// goAreas are the Go SDK plugins, one per ABI area (folders under go/).
var goAreas = []string{"headers", "body", "localreply", "properties", "metrics", "shareddata", "queues", "timers", "callout", "foreign", "logs"}

var (
	goBuildMu sync.Mutex
	goBuilds  = map[string]*buildOnce{}
)

// buildGo compiles one Go SDK plugin with pluginbuild (the code `wasmproxy
// plugin build` runs).
func buildGo(t *testing.T, area string) string {
	t.Helper()
	goBuildMu.Lock()
	b := goBuilds[area]
	if b == nil {
		b = &buildOnce{}
		goBuilds[area] = b
	}
	goBuildMu.Unlock()
	return b.get(t, "go/"+area, func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		return pluginbuild.Cached(ctx, cacheDir(), mustAbs(filepath.Join("go", area)), mustAbs(filepath.Join("..", "sdk")))
	})
}
