// Package prereq finds the programs beyond Go that some tests need —
// toolchains for the C, Rust and AssemblyScript conformance plugins, the
// OCI registry, curl, Chromium — and is the one place that decides whether a test
// runs, is skipped, or fails for want of one.
//
// A test asks with Skip: without the program it is skipped locally (with
// the Debian packages to install) and fails under CI=true, where .ci/run
// installs everything. `go test` without -v prints no skips, so the
// README's test command ends with `go run ./internal/prereq/summary`,
// which runs the same checks and prints one line per group of tests that
// skipped: the checks are the tests' own, so the summary cannot disagree
// with what ran.
package prereq

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// ErrMissing marks a prerequisite that is not installed, as opposed to one
// that is there and fails.
var ErrMissing = errors.New("prerequisite missing")

// Prereq is one group of tests' requirement.
type Prereq struct {
	// Name says what is needed, e.g. "C toolchain".
	Name string
	// Packages are the Debian packages that provide it.
	Packages string
	// Skips names the tests that are skipped without it.
	Skips string
	// check reports nil when the prerequisite is there, else an error
	// wrapping ErrMissing.
	check func() error
}

// Check reports nil when p is installed, else an error wrapping
// ErrMissing that names what is missing and the packages to install.
func (p Prereq) Check() error { return p.check() }

// missing is the error for an absent piece of a prerequisite.
func missing(skips, what, packages string) error {
	return fmt.Errorf("%w: %s needs %s (Debian: apt-get install %s)", ErrMissing, skips, what, packages)
}

// All are the prerequisites, in the order the summary prints them.
var All = []Prereq{C, Rust, AssemblyScript, Registry, Curl, Chromium}

// Skip skips t (or, under CI=true, fails it) when err says a
// prerequisite is missing, and fails it on any other error. A nil err
// does nothing.
func Skip(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if errors.Is(err, ErrMissing) && os.Getenv("CI") != "true" {
		t.Skip(err)
	}
	t.Fatal(err)
}

// C is clang with wasm-ld, wasi-libc and clang's wasm32 compiler-rt.
var C = Prereq{
	Name:     "C toolchain",
	Packages: cPackages,
	Skips:    cSkips,
	check:    func() error { _, err := FindC(); return err },
}

const (
	cPackages = "clang lld wasi-libc libclang-rt-14-dev-wasm32"
	cSkips    = "the C conformance plugins"
)

// Rust is rustc with a WASI standard library (no cargo: the plugins are
// built with rustc alone).
var Rust = Prereq{
	Name:     "Rust toolchain",
	Packages: rustPackages,
	Skips:    rustSkips,
	check:    func() error { _, _, err := FindRust(); return err },
}

const (
	rustPackages = "rustc libstd-rust-dev-wasm32"
	rustSkips    = "the Rust conformance plugins"
)

// AssemblyScript is Node.js and npm (`npm ci` installs the pinned
// compiler).
var AssemblyScript = Prereq{
	Name:     "Node.js and npm",
	Packages: nodePackages,
	Skips:    nodeSkips,
	check:    func() error { _, _, err := FindNode(); return err },
}

const (
	nodePackages = "nodejs npm"
	nodeSkips    = "the AssemblyScript conformance plugins"
)

// Registry is Debian's docker-registry, the real OCI registry the OCI
// tests run as a child process.
var Registry = Prereq{
	Name:     "OCI registry",
	Packages: registryPackages,
	Skips:    registrySkips,
	check:    func() error { _, err := FindRegistry(); return err },
}

const (
	registryPackages = "docker-registry"
	registrySkips    = "the OCI registry tests (source/, e2e/, deploy/)"
)

// Curl is curl, which the seed transcript test runs.
var Curl = Prereq{
	Name:     "curl",
	Packages: curlPackages,
	Skips:    curlSkips,
	check:    func() error { _, err := FindCurl(); return err },
}

const (
	curlPackages = "curl"
	curlSkips    = "the seed's curl transcript (e2e TestSeedTranscript/curl)"
)

// FindC returns clang's path once clang, wasm-ld, wasi-libc and the wasm32
// builtins are all there.
func FindC() (clang string, err error) {
	clang, err = exec.LookPath("clang")
	if err != nil {
		return "", missing(cSkips, "clang", cPackages)
	}
	if _, err := exec.LookPath("wasm-ld"); err != nil {
		return "", missing(cSkips, "wasm-ld", cPackages)
	}
	for _, probe := range [][]string{
		{"--target=wasm32-wasi", "-print-file-name=libc.a"},
		{"--target=wasm32-wasi", "-rtlib=compiler-rt", "-print-libgcc-file-name"},
	} {
		p, err := output(clang, probe...)
		if err != nil || !filepath.IsAbs(p) {
			return "", missing(cSkips, "wasi-libc and wasm32 compiler-rt", cPackages)
		}
		if _, err := os.Stat(p); err != nil {
			return "", missing(cSkips, p, cPackages)
		}
	}
	return clang, nil
}

// FindRust finds a rustc whose sysroot has a WASI standard library:
// Debian's /usr/bin/rustc first (a rustup rustc earlier on PATH usually
// lacks the wasm target), then whatever rustc is on PATH. It returns the
// compiler and the target name the installed std uses.
func FindRust() (rustc, target string, err error) {
	candidates := []string{"/usr/bin/rustc"}
	if p, err := exec.LookPath("rustc"); err == nil {
		candidates = append(candidates, p)
	}
	for _, c := range candidates {
		sysroot, err := output(c, "--print", "sysroot")
		if err != nil {
			continue
		}
		for _, t := range []string{"wasm32-wasip1", "wasm32-wasi"} {
			if _, err := os.Stat(filepath.Join(sysroot, "lib", "rustlib", t, "lib")); err == nil {
				return c, t, nil
			}
		}
	}
	return "", "", missing(rustSkips, "rustc with the wasm32-wasi standard library", rustPackages)
}

// FindNode returns npm's and node's paths.
func FindNode() (npm, node string, err error) {
	if npm, err = exec.LookPath("npm"); err != nil {
		return "", "", missing(nodeSkips, "npm", nodePackages)
	}
	if node, err = exec.LookPath("node"); err != nil {
		return "", "", missing(nodeSkips, "node", nodePackages)
	}
	return npm, node, nil
}

// RegistryBinary is the registry program, found on PATH.
const RegistryBinary = "docker-registry"

// FindRegistry returns the registry program's path.
func FindRegistry() (string, error) {
	p, err := exec.LookPath(RegistryBinary)
	if err != nil {
		return "", missing(registrySkips, RegistryBinary, registryPackages)
	}
	return p, nil
}

// FindCurl returns curl's path.
func FindCurl() (string, error) {
	p, err := exec.LookPath("curl")
	if err != nil {
		return "", missing(curlSkips, "curl", curlPackages)
	}
	return p, nil
}

// Chromium is Debian's chromium, which renders the admin status page
// headless in the e2e test.
var Chromium = Prereq{
	Name:     "Chromium",
	Packages: chromiumPackages,
	Skips:    chromiumSkips,
	check:    func() error { _, err := FindChromium(); return err },
}

const (
	chromiumPackages = "chromium"
	chromiumSkips    = "the admin status page's browser test (e2e TestStatusPageInChromium)"
)

// FindChromium returns chromium's path.
func FindChromium() (string, error) {
	p, err := exec.LookPath("chromium")
	if err != nil {
		return "", missing(chromiumSkips, "chromium", chromiumPackages)
	}
	return p, nil
}

func output(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).Output()
	return strings.TrimSpace(string(out)), err
}
