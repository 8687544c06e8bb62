// Package e2e runs the real wasmproxy binary with real plugins built from
// source, real sockets and real HTTP clients.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/internal/testnet"
	"github.com/wasmproxy/wasmproxy/pluginbuild"
)

var (
	repoRoot   string
	binary     string
	pluginDir  string
	wazeroDir  string
	buildErr   error
	buildOnce  sync.Once
	scratchDir string
)

func TestMain(m *testing.M) {
	_, file, _, _ := runtime.Caller(0)
	repoRoot = filepath.Dir(filepath.Dir(file))
	var err error
	scratchDir, err = os.MkdirTemp("", "wasmproxy-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Plugin builds and compiled modules are cached across test binaries
	// of one run (and runs), keyed by source hash.
	pluginDir = filepath.Join(os.TempDir(), "wasmproxy-test-plugins")
	wazeroDir = filepath.Join(os.TempDir(), "wasmproxy-test-wazero-cache")
	code := m.Run()
	os.RemoveAll(scratchDir)
	os.Exit(code)
}

// wasmproxyBinary builds cmd/wasmproxy once per test binary.
func wasmproxyBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binary = filepath.Join(scratchDir, "wasmproxy")
		cmd := exec.Command("go", "build", "-o", binary, "./cmd/wasmproxy")
		cmd.Dir = repoRoot
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/wasmproxy: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

// plugin builds a Go plugin folder (relative to the repo root) once.
func plugin(t *testing.T, dir string) string {
	t.Helper()
	abs := filepath.Join(repoRoot, dir)
	var extra []string
	if _, err := os.Stat(filepath.Join(abs, "go.mod")); err == nil {
		if b, _ := os.ReadFile(filepath.Join(abs, "go.mod")); bytes.Contains(b, []byte("../../sdk")) {
			extra = append(extra, filepath.Join(repoRoot, "sdk"))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p, err := pluginbuild.Cached(ctx, pluginDir, abs, extra...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// freePort hands out a loopback port (testnet.FreePort).
func freePort(t *testing.T) int { return testnet.FreePort(t) }

// instance is one running wasmproxy process.
type instance struct {
	t      *testing.T
	cmd    *exec.Cmd
	dir    string
	listen string // main listener "127.0.0.1:port"
	admin  string // admin "127.0.0.1:port"
	mu     sync.Mutex
	logs   bytes.Buffer
	done   chan struct{}
	err    error
}

// setup prepares a work dir with the config (seed ports replaced by free
// ones: 18000 → listener, 8099 → upstream, 8001 → admin) and the plugin
// copied as ./main.wasm, as a user would lay it out.
func setup(t *testing.T, configFile string, wasmPath string, edit func(string) string) (dir, listen, admin string) {
	t.Helper()
	dir = t.TempDir()
	cfg, err := os.ReadFile(filepath.Join(repoRoot, configFile))
	if err != nil {
		t.Fatal(err)
	}
	lp, up, ap := freePort(t), freePort(t), freePort(t)
	s := string(cfg)
	s = strings.ReplaceAll(s, "port_value: 18000", fmt.Sprintf("port_value: %d", lp))
	s = strings.ReplaceAll(s, "port_value: 8099", fmt.Sprintf("port_value: %d", up))
	s = strings.ReplaceAll(s, "port_value: 8001", fmt.Sprintf("port_value: %d", ap))
	s = strings.ReplaceAll(s, "address: 0.0.0.0", "address: 127.0.0.1")
	if edit != nil {
		s = edit(s)
	}
	if err := os.WriteFile(filepath.Join(dir, "envoy.yaml"), []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	if wasmPath != "" {
		b, err := os.ReadFile(wasmPath)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "main.wasm"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, fmt.Sprintf("127.0.0.1:%d", lp), fmt.Sprintf("127.0.0.1:%d", ap)
}

// run starts wasmproxy in dir with args and waits until /ready says LIVE.
func run(t *testing.T, dir, listen, admin string, args ...string) *instance {
	t.Helper()
	in := start(t, dir, args...)
	in.listen, in.admin = listen, admin
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/ready")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && strings.TrimSpace(string(body)) == "LIVE" {
				break
			}
		}
		select {
		case <-in.done:
			t.Fatalf("wasmproxy exited before ready: %v\n%s", in.err, in.Logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("wasmproxy not ready after 60s\n%s", in.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() { in.stop() })
	return in
}

// start launches the binary without waiting for readiness.
func start(t *testing.T, dir string, args ...string) *instance {
	t.Helper()
	bin := wasmproxyBinary(t)
	in := &instance{t: t, dir: dir, done: make(chan struct{})}
	in.cmd = exec.Command(bin, append(args, "--cache-dir", wazeroDir)...)
	in.cmd.Dir = dir
	pr, pw := io.Pipe()
	in.cmd.Stdout = pw
	in.cmd.Stderr = pw
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			in.mu.Lock()
			in.logs.WriteString(sc.Text() + "\n")
			in.mu.Unlock()
		}
	}()
	go func() {
		in.err = in.cmd.Wait()
		pw.Close()
		// The process's last lines may still be in the scanner: done
		// promises Logs has everything (an exit's one error line).
		<-scanned
		close(in.done)
	}()
	return in
}

// Logs returns everything the process printed so far.
func (in *instance) Logs() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.logs.String()
}

// wait waits for the process to exit and returns its exit code.
func (in *instance) wait(d time.Duration) int {
	in.t.Helper()
	select {
	case <-in.done:
	case <-time.After(d):
		_ = in.cmd.Process.Kill()
		<-in.done
		in.t.Fatalf("wasmproxy did not exit within %v\n%s", d, in.Logs())
	}
	return in.cmd.ProcessState.ExitCode()
}

// stop sends SIGTERM and expects a clean exit 0.
func (in *instance) stop() {
	select {
	case <-in.done:
		return
	default:
	}
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
	if code := in.wait(30 * time.Second); code != 0 {
		in.t.Errorf("wasmproxy exited %d after SIGTERM\n%s", code, in.Logs())
	}
}
