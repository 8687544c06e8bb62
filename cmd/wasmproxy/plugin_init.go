package main

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

	"github.com/spf13/cobra"
)

// pluginTemplates are the files `plugin init` writes, rendered with
// scaffoldData.
//
//go:embed templates/plugin/*.tmpl
var pluginTemplates embed.FS

// testStyles are the kinds of main_test.go `plugin init --test-style`
// writes, by the template of each; the first is the default, the one
// docs/guide.md recommends.
var testStyles = []struct{ name, template string }{
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
	// TestStyle is the --test-style: "wasmtest" or "proxytest".
	TestStyle string
}

// modulePath accepts what `go mod init` would: letters, digits and
// ._~-/ , no empty or dot-only elements.
var modulePath = regexp.MustCompile(`^[A-Za-z0-9_~.-]+(/[A-Za-z0-9_~.-]+)*$`)

func newPluginInitCommand() *cobra.Command {
	var dir, src, testStyle string
	var noTidy bool
	cmd := &cobra.Command{
		Use:   "init NAME",
		Short: "Create a Go plugin: code, a Go test (wasmtest or proxytest), declarative cases, envoy.yaml, README, Makefile",
		Long: "Creates the folder NAME (or --dir) holding a working plugin whose test passes\n" +
			"right away (`go test ./...`). NAME is the Go module path; its last element names\n" +
			"the plugin. The SDK and wasmtest are not published yet, so go.mod points at a\n" +
			"local wasmproxy checkout: the one this binary was built from, or --wasmproxy-src.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return initPlugin(cmd.Context(), cmd.OutOrStdout(), args[0], dir, src, testStyle, !noTidy)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&dir, "dir", "", "folder to create (default: the plugin's name)")
	fl.StringVar(&src, "wasmproxy-src", os.Getenv("WASMPROXY_SRC"), "wasmproxy checkout providing the SDK and wasmtest (default $WASMPROXY_SRC, else the checkout this binary was built from)")
	fl.StringVar(&testStyle, "test-style", testStyles[0].name, "main_test.go on wasmtest (the compiled plugin on the real host) or proxytest (proxy-wasm-go-sdk's emulator API, on the Go code and the compiled plugin)")
	fl.BoolVar(&noTidy, "no-tidy", false, "do not run `go mod tidy` (which fills go.sum, and may download modules)")
	return cmd
}

// initPlugin writes the scaffold and fills go.sum. It refuses to write
// into a folder that already has files.
func initPlugin(ctx context.Context, out io.Writer, module, dir, src, testStyle string, tidy bool) error {
	if !modulePath.MatchString(module) || strings.Contains(module, "..") {
		return fmt.Errorf("plugin init: %q is not a valid Go module path (letters, digits, '.', '-', '_', '~', '/')", module)
	}
	testTemplate := ""
	var styles []string
	for _, s := range testStyles {
		styles = append(styles, s.name)
		if s.name == testStyle {
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
	fmt.Fprintf(out, "next:\n  cd %s\n  go test ./...                      # %s\n  wasmproxy plugin build . -o main.wasm\n  wasmproxy run --plugin main.wasm --upstream http://127.0.0.1:8080 --watch\n", dir, what)
	return nil
}

// wasmproxySource finds the wasmproxy checkout the new module's replace
// directives point at: the flag (or $WASMPROXY_SRC), else the checkout
// this binary was compiled from, which the compiler records in file
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
		root := filepath.Dir(filepath.Dir(filepath.Dir(file))) // cmd/wasmproxy/plugin_init.go
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
