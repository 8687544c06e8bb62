package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	wasmproxy "github.com/wasmproxy/wasmproxy"
	"github.com/wasmproxy/wasmproxy/internal/oneplugin"
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
	fl.StringVar(&f.name, "plugin-name", "", "with --plugin: the plugin's name (default: the file's base name; for main.wasm beside a go.mod, the module's last path element)")
	fl.BoolVar(&f.watch, "watch", false, "with --plugin: rebuild the plugin from its Go sources when a .go file changes, and swap it in without dropping requests")
	fl.StringVar(&f.source, "source", "", "with --watch: the plugin's source folder (default: the folder of the .wasm file)")
	fl.BoolVar(&f.printConfig, "print-config", false, "with --plugin: print the Envoy config it runs and exit (a starting point for -c)")
}

// runPluginProxy writes the Envoy bootstrap for the flags to a temporary
// file and runs it with runProxy, so a one-plugin proxy is served,
// reloaded and administered by exactly the code that runs a config file.
// With --watch, a watcher rebuilds the plugin on source changes and
// reloads the running proxy (Proxy.Reload), which swaps the plugin for
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
	if pf.watch && pf.admin == "" {
		// A rebuild that does not compile is reported in the log and on
		// the admin server (/reload_status, server.reload.failure); with
		// no admin server a script could not tell it from a good one.
		return errors.New(`run --watch: --admin "" turns off the admin server, where --watch reports each rebuild (/reload_status, server.reload.failure in /stats); keep --admin (default 127.0.0.1:9901) or give it another HOST:PORT`)
	}
	if src != "" {
		if src, err = filepath.Abs(src); err != nil {
			return err
		}
		if !pluginbuild.HasGoSources(src) {
			return fmt.Errorf("run --watch: no Go plugin sources (go.mod, *.go) in %s; set --source DIR", src)
		}
	}
	if pf.name == "" && filepath.Base(wasmFile) == "main.wasm" {
		// "main" says nothing (in logs, stats, /config_dump): a plugin
		// built as main.wasm from a module is named after the module.
		dir := src
		if dir == "" {
			dir = filepath.Dir(wasmFile)
		}
		pf.name = pluginbuild.ModuleName(dir)
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

	logs, err := newLogs(rf)
	if err != nil {
		return err
	}
	if !pf.watch {
		return addrFlags(runProxy(parent, rf, logs, nil))
	}
	log := logs.Logger("main")
	w := &pluginbuild.Watcher{Src: src, Out: wasmFile, Log: log}
	// Build before serving, so the proxy starts with the current
	// sources; a failure here is fatal, later ones are only logged.
	log.Info("building plugin", "source", src)
	if err := w.Build(parent); err != nil {
		return err
	}
	// The watcher reloads the proxy itself, right after a build.
	rf.sources.pollInterval = 0
	return addrFlags(runProxy(parent, rf, logs, func(ctx context.Context, p *wasmproxy.Proxy) {
		w.Built = func(ctx context.Context) error {
			_, err := p.Reload(ctx, "watch")
			return err
		}
		w.Failed = func(err error) { p.ReloadFailed("watch", err) }
		go w.Run(ctx)
	}))
}

// addrFlags names the flag that sets an address in use: with --plugin
// the config is generated, so its field and temporary file would not help.
func addrFlags(err error) error {
	var inUse *wasmproxy.AddrInUseError
	if errors.As(err, &inUse) {
		inUse.Flag = "--listen"
		if inUse.IsAdmin() {
			inUse.Flag = `--admin (or --admin "" for none)`
		}
	}
	return err
}

// pluginBootstrap is the Envoy config of the flags (internal/oneplugin).
func pluginBootstrap(pf *pluginRunFlags, wasmFile string) (string, error) {
	return oneplugin.Bootstrap(oneplugin.Spec{
		File: wasmFile, Config: pf.config, Upstream: pf.upstream, Listen: pf.listen, Admin: pf.admin, Name: pf.name,
	})
}
