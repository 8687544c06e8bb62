package pluginbuild

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"text/template"
	"time"
)

// pluginTemplates are the files `plugin init` writes, rendered with
// scaffoldData.
//
//go:embed templates/plugin/*.tmpl
var pluginTemplates embed.FS

// TestStyles are the kinds of main_test.go Init writes, by the template
// of each; the first is the default, the one docs/guide.md recommends.
var TestStyles = []struct{ Name, template string }{
	{"wasmtest", "main_test.go.tmpl"},            // the compiled plugin on wasmproxy's real host
	{"proxytest", "main_test_proxytest.go.tmpl"}, // proxy-wasm-go-sdk's emulator, Go code and compiled
}

// scaffoldFiles maps each template to the file it becomes.
var scaffoldFiles = []struct{ template, file string }{
	{"go.mod.tmpl", "go.mod"},
	{"main.go.tmpl", "main.go"},
	{"main_test.go.tmpl", "main_test.go"},
	{"cases.yaml.tmpl", "cases.yaml"},
	{"envoy.yaml.tmpl", "envoy.yaml"},
	{"README.md.tmpl", "README.md"},
	{"Makefile.tmpl", "Makefile"},
	{"gitignore.tmpl", ".gitignore"},
}

type scaffoldData struct {
	Name   string // the plugin's name: the last element of the module path
	Module string // the Go module path
	Metric string // Name as a metric-name prefix
	Source string // the wasmproxy checkout the replace directives point at
	// TestStyle is the test style: "wasmtest" or "proxytest".
	TestStyle string
}

// modulePath accepts what `go mod init` would: letters, digits and
// ._~-/ , no empty or dot-only elements.
var modulePath = regexp.MustCompile(`^[A-Za-z0-9_~.-]+(/[A-Za-z0-9_~.-]+)*$`)

// Init creates the folder dir (default: the plugin's name) holding a
// working Go plugin whose test passes right away: code, a test on
// wasmtest, declarative cases, envoy.yaml, README, Makefile (what
// `wasmproxy plugin init` writes). module is the Go module path, whose
// last element names the plugin. The SDK and wasmtest are not published
// yet, so go.mod points at a local wasmproxy checkout: src, else the one
// this package was built from. With tidy, `go mod tidy` fills go.sum.
// Init refuses to write into a folder that already has files, and
// prints what it did and what to run next on out. testStyle names one
// of TestStyles ("" is the default).
func Init(ctx context.Context, out io.Writer, module, dir, src, testStyle string, tidy bool) error {
	if !modulePath.MatchString(module) || strings.Contains(module, "..") {
		return fmt.Errorf("plugin init: %q is not a valid Go module path (letters, digits, '.', '-', '_', '~', '/')", module)
	}
	if testStyle == "" {
		testStyle = TestStyles[0].Name
	}
	testTemplate := ""
	var styles []string
	for _, s := range TestStyles {
		styles = append(styles, s.Name)
		if s.Name == testStyle {
			testTemplate = s.template
		}
	}
	if testTemplate == "" {
		return fmt.Errorf("plugin init: --test-style %q: want %s", testStyle, strings.Join(styles, " or "))
	}
	name := path.Base(module)
	if dir == "" {
		dir = name
	}
	root, err := wasmproxySource(src)
	if err != nil {
		return fmt.Errorf("plugin init: %w", err)
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("plugin init: %s already exists and is not empty", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("plugin init: %w", err)
	}
	data := scaffoldData{Name: name, Module: module, Metric: metricPrefix(name), Source: filepath.ToSlash(root), TestStyle: testStyle}
	for _, f := range scaffoldFiles {
		if f.file == "main_test.go" {
			f.template = testTemplate
		}
		tmpl, err := template.ParseFS(pluginTemplates, "templates/plugin/"+f.template)
		if err != nil {
			return err
		}
		var b bytes.Buffer
		if err := tmpl.Execute(&b, data); err != nil {
			return fmt.Errorf("plugin init: rendering %s: %w", f.file, err)
		}
		if err := os.WriteFile(filepath.Join(dir, f.file), b.Bytes(), 0o644); err != nil {
			return fmt.Errorf("plugin init: %w", err)
		}
	}
	fmt.Fprintf(out, "created %s (module %s, SDK from %s)\n", dir, module, root)
	if tidy {
		tctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		c := exec.CommandContext(tctx, "go", "mod", "tidy")
		c.Dir = dir
		var msg bytes.Buffer
		c.Stdout, c.Stderr = &msg, &msg
		if err := c.Run(); err != nil {
			return fmt.Errorf("plugin init: the files are written, but `go mod tidy` failed in %s (run it again once the module proxy is reachable):\n%s",
				dir, strings.TrimSpace(msg.String()))
		}
	}
	what := "the compiled plugin, on the real host"
	if testStyle == "proxytest" {
		what = "the Go code and the compiled plugin, emulated host"
	}
	// The run line carries the configuration whose deny_prefix makes
	// the scaffold's 403, so the curl line shows the plugin at work.
	fmt.Fprintf(out, "next:\n  cd %s\n  go test ./...                      # %s\n  wasmproxy plugin build . -o main.wasm\n"+
		"  wasmproxy run --plugin main.wasm --plugin-config '{\"deny_prefix\": \"/private\"}' --upstream http://127.0.0.1:8080 --watch\n"+
		"  curl -i localhost:10000/private     # 403 from the plugin; other paths go to the upstream\n", dir, what)
	return nil
}

// wasmproxySource finds the wasmproxy checkout the new module's replace
// directives point at: the flag (or $WASMPROXY_SRC), else the checkout
// this package was compiled from, which the compiler records in file
// paths unless -trimpath was used.
func wasmproxySource(flag string) (string, error) {
	if flag != "" {
		abs, err := filepath.Abs(flag)
		if err != nil {
			return "", err
		}
		if !isWasmproxyRoot(abs) {
			return "", fmt.Errorf("--wasmproxy-src %s: not a wasmproxy checkout (want go.mod of github.com/wasmproxy/wasmproxy and sdk/)", flag)
		}
		return abs, nil
	}
	_, file, _, ok := runtime.Caller(0)
	if ok && filepath.IsAbs(file) {
		root := filepath.Dir(filepath.Dir(file)) // pluginbuild/scaffold.go
		if isWasmproxyRoot(root) {
			return root, nil
		}
	}
	return "", errors.New("cannot find a wasmproxy checkout for the SDK (it is not published yet): pass --wasmproxy-src DIR or set WASMPROXY_SRC")
}

func isWasmproxyRoot(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil || !bytes.HasPrefix(bytes.TrimSpace(b), []byte("module github.com/wasmproxy/wasmproxy\n")) {
		return false
	}
	_, err = os.Stat(filepath.Join(dir, "sdk", "go.mod"))
	return err == nil
}

// metricPrefix makes a name usable in a metric name: lower case, with
// anything outside [a-z0-9_] as '_'.
func metricPrefix(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// ModuleName is the last element of the module path in dir's go.mod
// ("demo" for example.com/filters/demo), or "" without one: the name
// `run --plugin` gives a plugin built as main.wasm from that module.
func ModuleName(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "module" {
			return path.Base(strings.Trim(f[1], `"`))
		}
	}
	return ""
}
