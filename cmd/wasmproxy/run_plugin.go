package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/pluginbuild"
)

// pluginRunFlags are `wasmproxy run --plugin FILE.wasm --upstream URL`:
// one plugin in front of one upstream, no config file needed.
type pluginRunFlags struct {
	file        string
	config      string
	upstream    string
	listen      string
	admin       string
	name        string
	watch       bool
	source      string
	printConfig bool
}

func (f *pluginRunFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.file, "plugin", "", "run this plugin (.wasm) in front of --upstream, without a config file")
	fl.StringVar(&f.config, "plugin-config", "", "the plugin's configuration (usually JSON), as OnPluginStart reads it")
	fl.StringVar(&f.upstream, "upstream", "", "with --plugin: where requests go, http://HOST:PORT")
	fl.StringVar(&f.listen, "listen", "127.0.0.1:10000", "with --plugin: the listener's address")
	fl.StringVar(&f.admin, "admin", "127.0.0.1:9901", "with --plugin: the admin server's address (\"\" for none)")
	fl.StringVar(&f.name, "plugin-name", "", "with --plugin: the plugin's name (default: the file's base name)")
	fl.BoolVar(&f.watch, "watch", false, "with --plugin: rebuild the plugin from its Go sources when a .go file changes, and swap it in without dropping requests")
	fl.StringVar(&f.source, "source", "", "with --watch: the plugin's source folder (default: the folder of the .wasm file)")
	fl.BoolVar(&f.printConfig, "print-config", false, "with --plugin: print the Envoy config it runs and exit (a starting point for -c)")
}

// runPluginProxy writes the Envoy bootstrap for the flags to a temporary
// file and runs it with runProxy, so a one-plugin proxy is served,
// reloaded and administered by exactly the code that runs a config file.
// With --watch, a watcher rebuilds the plugin on source changes and asks
// the running proxy to reload (POST /reload), which swaps the plugin for
// new streams and closes the old one after its in-flight streams end.
func runPluginProxy(parent context.Context, cmd *cobra.Command, rf *runFlags, pf *pluginRunFlags) error {
	if rf.configPath != "" {
		return errors.New("run: --plugin and -c are exclusive: --plugin generates the config")
	}
	wasmFile, err := filepath.Abs(pf.file)
	if err != nil {
		return err
	}
	src := pf.source
	if pf.watch && src == "" {
		src = filepath.Dir(wasmFile)
	}
	if src != "" {
		if src, err = filepath.Abs(src); err != nil {
			return err
		}
		if !hasGoSources(src) {
			return fmt.Errorf("run --watch: no Go plugin sources (go.mod, *.go) in %s; set --source DIR", src)
		}
	}
	yamlText, err := pluginBootstrap(pf, wasmFile)
	if err != nil {
		return err
	}
	if pf.printConfig {
		_, err := io.WriteString(cmd.OutOrStdout(), yamlText)
		return err
	}
	if !pf.watch {
		if _, err := os.Stat(wasmFile); err != nil {
			return fmt.Errorf("run --plugin: %w (build it with `wasmproxy plugin build`, or add --watch to build it from its sources)", err)
		}
	}
	dir, err := os.MkdirTemp("", "wasmproxy-run-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	rf.configPath = filepath.Join(dir, "envoy.yaml")
	if err := os.WriteFile(rf.configPath, []byte(yamlText), 0o644); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	if pf.watch {
		level, err := logging.ParseLevel(rf.logLevel)
		if err != nil {
			return fmt.Errorf("-l: %w", err)
		}
		log := logging.NewRegistry(os.Stderr, level).Logger("main")
		w := &pluginWatcher{src: src, wasmFile: wasmFile, admin: pf.admin, log: log}
		// Build before serving, so the proxy starts with the current
		// sources; a failure here is fatal, later ones are only logged.
		log.Info("building plugin", "source", src)
		if err := w.build(ctx); err != nil {
			return err
		}
		// The watcher asks for reloads itself, right after a build.
		rf.sources.pollInterval = 0
		go w.run(ctx)
	}
	return runProxy(ctx, rf, os.Args)
}

// pluginBootstrap is the Envoy config of a one-plugin proxy: a listener
// with the plugin and the router, a cluster for the upstream, the admin
// server. It is checked by the config loader before use.
func pluginBootstrap(pf *pluginRunFlags, wasmFile string) (string, error) {
	if pf.upstream == "" {
		return "", errors.New("run --plugin: --upstream URL is required (where requests go, e.g. http://127.0.0.1:8080)")
	}
	u, err := url.Parse(pf.upstream)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("run --plugin: --upstream %q: want http://HOST:PORT", pf.upstream)
	}
	if u.Scheme != "http" {
		return "", fmt.Errorf("run --plugin: --upstream %q: only http:// upstreams are supported here (use -c with a TLS transport socket for https)", pf.upstream)
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		return "", fmt.Errorf("run --plugin: --upstream %q: a path or query is not supported; requests keep their own path", pf.upstream)
	}
	upHost, upPort := u.Hostname(), u.Port()
	if upPort == "" {
		upPort = "80"
	}
	listenHost, listenPort, err := splitAddress("--listen", pf.listen)
	if err != nil {
		return "", err
	}
	name := pf.name
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(wasmFile), filepath.Ext(wasmFile))
	}
	clusterType := "STRICT_DNS"
	if net.ParseIP(upHost) != nil {
		clusterType = "STATIC"
	}
	var b strings.Builder
	q := func(s string) string { j, _ := json.Marshal(s); return string(j) }
	fmt.Fprintf(&b, `# Generated by wasmproxy run --plugin: one plugin in front of one upstream.
static_resources:
  listeners:
  - name: main
    address:
      socket_address: {address: %s, port_value: %s}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          route_config:
            virtual_hosts:
            - name: upstream
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                route: {cluster: upstream}
          http_filters:
          - name: %s
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: %s
`, listenHost, listenPort, q(name), q(name))
	if pf.config != "" {
		fmt.Fprintf(&b, `                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: %s
`, q(pf.config))
	}
	fmt.Fprintf(&b, `                vm_config:
                  runtime: envoy.wasm.runtime.v8
                  code: {local: {filename: %s}}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: upstream
    type: %s
    connect_timeout: 5s
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {address: %s, port_value: %s}
`, q(wasmFile), clusterType, q(upHost), upPort)
	if pf.admin != "" {
		adminHost, adminPort, err := splitAddress("--admin", pf.admin)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, `admin:
  address:
    socket_address: {address: %s, port_value: %s}
`, adminHost, adminPort)
	}
	text := b.String()
	if _, err := config.Parse([]byte(text), "generated config"); err != nil {
		return "", fmt.Errorf("run --plugin: %w", err)
	}
	return text, nil
}

func splitAddress(flag, addr string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(addr)
	if err != nil {
		return "", "", fmt.Errorf("run --plugin: %s %q: want HOST:PORT", flag, addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", "", fmt.Errorf("run --plugin: %s %q: bad port", flag, addr)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	j, _ := json.Marshal(host)
	return string(j), port, nil
}

// pluginWatcher rebuilds a plugin when its Go sources change and swaps
// the result into the running proxy.
type pluginWatcher struct {
	src      string
	wasmFile string
	admin    string
	log      *slog.Logger
	// interval between looks at the sources; small, because a look is a
	// few stat calls and the edit→serving time is what users feel.
	interval time.Duration
}

// run polls the sources until ctx ends. A change is acted on once the
// files have stopped changing for one interval (an editor writing in
// steps); a failed build or reload is logged and the running plugin keeps
// serving.
func (w *pluginWatcher) run(ctx context.Context) {
	if w.interval == 0 {
		w.interval = 150 * time.Millisecond
	}
	last := sourceStamp(w.src)
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := sourceStamp(w.src)
		if now == last {
			continue
		}
		// Settle: wait until two looks agree.
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(w.interval):
			}
			again := sourceStamp(w.src)
			if again == now {
				break
			}
			now = again
		}
		last = now
		start := time.Now()
		if err := w.build(ctx); err != nil {
			w.log.Error("plugin rebuild failed; the running plugin keeps serving", "err", err)
			continue
		}
		built := time.Since(start)
		if err := w.reload(ctx); err != nil {
			w.log.Error("plugin swap failed; the running plugin keeps serving", "err", err)
			continue
		}
		w.log.Info("plugin rebuilt and swapped in", "build", built.Round(time.Millisecond),
			"total", time.Since(start).Round(time.Millisecond))
	}
}

// build compiles the sources to a temporary file and renames it over the
// plugin, so a reader never sees half a module.
func (w *pluginWatcher) build(ctx context.Context) error {
	tmp := fmt.Sprintf("%s.%d.tmp", w.wasmFile, os.Getpid())
	if err := pluginbuild.Build(ctx, w.src, tmp); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, w.wasmFile)
}

// reload asks the running proxy to reload through its admin API; the
// reload swaps the plugin if its code changed.
func (w *pluginWatcher) reload(ctx context.Context) error {
	if w.admin == "" {
		return errors.New("--watch needs the admin server (--admin) to swap the plugin")
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+w.admin+"/reload", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		var st struct {
			LastError string `json:"last_error"`
		}
		if json.Unmarshal(body, &st) == nil && st.LastError != "" {
			return errors.New(st.LastError)
		}
		return fmt.Errorf("POST /reload: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
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

func hasGoSources(dir string) bool {
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
		return true
	}
	m, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	return len(m) > 0
}
