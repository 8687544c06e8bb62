package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	wasmproxy "github.com/wasmproxy/wasmproxy"
	"github.com/wasmproxy/wasmproxy/admin"
	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/internal/sysmon"
	"github.com/wasmproxy/wasmproxy/istio"
	"github.com/wasmproxy/wasmproxy/logging"
)

// sourceFlags are the run flags for plugin code sources, Istio
// WasmPlugin files and reloading.
type sourceFlags struct {
	dockerConfig       string
	insecureRegistries string
	wasmPlugins        string
	istioVersion       string
	moduleCacheDir     string
	moduleExpiry       time.Duration
	cacheMaxMB         int64
	pollInterval       time.Duration
}

func (f *sourceFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.dockerConfig, "docker-config", "", "docker config.json with registry credentials (default $DOCKER_CONFIG/config.json or ~/.docker/config.json)")
	fl.StringVar(&f.insecureRegistries, "insecure-registries", os.Getenv("WASM_INSECURE_REGISTRIES"), "comma-separated registry hosts whose TLS is not verified (\"*\" = all); default $WASM_INSECURE_REGISTRIES")
	fl.StringVar(&f.wasmPlugins, "istio-resources", "", "Istio WasmPlugin and EnvoyFilter YAML/JSON: a file or a directory of them; plugins inserted into matching listeners, EnvoyFilter patches applied to the config")
	fl.StringVar(&f.wasmPlugins, "wasm-plugins", "", "alias of --istio-resources")
	fl.StringVar(&f.istioVersion, "istio-version", istio.DefaultIstioVersion, "the Istio version EnvoyFilter match.proxy.proxyVersion regexes are matched against")
	fl.StringVar(&f.moduleCacheDir, "module-cache-dir", "", "directory for fetched Wasm modules (default CACHE_DIR/modules)")
	fl.Int64Var(&f.cacheMaxMB, "cache-max-mb", 512, "bound on the compiled modules under --cache-dir, in MiB: the least recently used go first (0: no size bound; unused for 5 days: removed)")
	fl.DurationVar(&f.moduleExpiry, "module-cache-expiry", 24*time.Hour, "remove fetched modules not used for this long, as Istio's WASM_MODULE_EXPIRY (0 keeps them)")
	fl.DurationVar(&f.pollInterval, "reload-poll-interval", time.Second, "how often to check the config, WasmPlugin and plugin files for changes (0 disables; SIGHUP and POST /reload still reload)")
}

// newLogs is the log registry of -l and --component-log-level.
func newLogs(rf *runFlags) (*logging.Registry, error) {
	if err := rf.envoy.check(); err != nil {
		return nil, err
	}
	level, err := logging.ParseLevel(rf.logLevel)
	if err != nil {
		return nil, fmt.Errorf("-l: %w", err)
	}
	format, err := logging.ParseFormat(rf.envoy.logFormat)
	if err != nil {
		return nil, fmt.Errorf("--log-format: %w", err)
	}
	format.Escaped = rf.envoy.logFormatEscaped
	out, err := openLogOutput(rf.envoy.logPath)
	if err != nil {
		return nil, err
	}
	logs := logging.NewRegistryFormat(out, level, format)
	levels, err := parseComponentLevels(rf.componentLogLevels)
	if err != nil {
		return nil, err
	}
	for _, cl := range levels {
		lv, err := logging.ParseLevel(cl[1])
		if err != nil {
			return nil, fmt.Errorf("--component-log-level %s: %w", cl[0], err)
		}
		logs.Logger(cl[0])
		if err := logs.SetLevel(cl[0], lv); err != nil {
			return nil, fmt.Errorf("--component-log-level: %w", err)
		}
	}
	return logs, nil
}

// options turns the flags into the library's options.
func (rf *runFlags) options(logs *logging.Registry) wasmproxy.Options {
	var insecure []string
	for _, h := range strings.Split(rf.sources.insecureRegistries, ",") {
		if h = strings.TrimSpace(h); h != "" {
			insecure = append(insecure, h)
		}
	}
	return wasmproxy.Options{
		ConfigPath:         rf.configPath,
		IstioResources:     rf.sources.wasmPlugins,
		IstioVersion:       rf.sources.istioVersion,
		CacheDir:           rf.cacheDir,
		CacheMaxBytes:      cacheMaxBytes(rf.sources.cacheMaxMB),
		ModuleCacheDir:     rf.sources.moduleCacheDir,
		ModuleCacheExpiry:  rf.sources.moduleExpiry,
		DockerConfig:       rf.sources.dockerConfig,
		InsecureRegistries: insecure,
		PollInterval:       rf.sources.pollInterval,
		Overrides: config.Overrides{
			ConfigYAML:     rf.envoy.configYAML,
			ServiceNode:    rf.envoy.serviceNode,
			ServiceCluster: rf.envoy.serviceCluster,
			ServiceZone:    rf.envoy.serviceZone,
		},
		Concurrency:  rf.concurrency,
		DrainTimeout: time.Duration(rf.drainTime),
		Logs:         logs,
		Version:      version,
		CommandLine: admin.CommandLineOptions{
			BaseID:                uint64(rf.baseID),
			ConfigPath:            rf.configPath,
			LogLevel:              rf.logLevel,
			ComponentLogLevel:     rf.componentLogLevels,
			DrainTime:             time.Duration(rf.drainTime),
			LogFormat:             rf.envoy.logFormat,
			LogPath:               rf.envoy.logPath,
			Mode:                  map[string]string{"serve": "Serve", "validate": "Validate"}[rf.envoy.mode],
			LocalAddressIPVersion: rf.envoy.localAddressIP,
			DisableHotRestart:     rf.envoy.disableHotRestart,
		},
	}
}

// runProxy runs the proxy of the flags until SIGINT/SIGTERM or POST
// /quitquitquit, reloading it on SIGHUP; then it drains in-flight
// requests and returns nil (exit 0). started, when set, is called once
// the proxy serves (--watch).
func runProxy(parent context.Context, rf *runFlags, logs *logging.Registry, started func(context.Context, *wasmproxy.Proxy)) error {
	if rf.concurrency < 0 {
		return fmt.Errorf("--concurrency: must be at least 1, got %d", rf.concurrency)
	}
	if err := rf.checkMonitorSlack(); err != nil {
		return err
	}
	log := logs.Logger("main")
	applyMonitorSlack(log, rf.monitorSlack)
	ctx, cancel := signalContext(parent)
	defer cancel()
	// SIGUSR1 is caught from before the admin API answers: its default
	// action would end the process.
	reopen := make(chan os.Signal, 1)
	if len(reopenSignals) > 0 {
		signal.Notify(reopen, reopenSignals...)
		defer signal.Stop(reopen)
	}
	p, err := wasmproxy.New(ctx, rf.options(logs))
	if err != nil {
		return err
	}
	if err := p.Start(); err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	concurrency := rf.concurrency
	if concurrency == 0 {
		concurrency = runtime.GOMAXPROCS(0)
	}
	log.Info("wasmproxy started", "version", version, "config", rf.configPath, "concurrency", concurrency)
	if started != nil {
		started(ctx, p)
	}
	for running := true; running; {
		select {
		case <-ctx.Done():
			log.Info("shutting down on signal")
			running = false
		case <-p.QuitRequested():
			log.Info("shutting down on /quitquitquit")
			running = false
		case <-hup:
			_, _ = p.Reload(ctx, "sighup")
		case <-reopen:
			log.Info("reopening access logs on SIGUSR1")
			p.ReopenLogs()
		}
	}
	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), time.Duration(rf.drainTime)+5*time.Second)
	defer cancelShutdown()
	if err := p.Shutdown(shutdownCtx); err != nil {
		log.Warn("drain incomplete", "err", err)
	}
	log.Info("wasmproxy stopped")
	return nil
}

// signalContext is cancelled by SIGINT or SIGTERM.
func signalContext(parent context.Context) (context.Context, context.CancelFunc) {
	if parent == nil {
		parent = context.Background()
	}
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}

func parseComponentLevels(s string) ([][2]string, error) {
	var out [][2]string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, level, ok := strings.Cut(part, ":")
		if !ok || name == "" || level == "" {
			return nil, fmt.Errorf("--component-log-level: %q is not COMPONENT:LEVEL", part)
		}
		out = append(out, [2]string{name, level})
	}
	return out, nil
}

// cacheMaxBytes turns --cache-max-mb into the library's bound (0 there
// is the default, so "no bound" is negative).
func cacheMaxBytes(mb int64) int64 {
	if mb <= 0 {
		return -1
	}
	return mb << 20
}

func (f *runFlags) checkMonitorSlack() error {
	if f.monitorSlack < 0 {
		return fmt.Errorf("--runtime-monitor-slack: must be 0 (the kernel's default) or positive, got %v", f.monitorSlack)
	}
	return nil
}

// applyMonitorSlack sets the timer slack of the Go runtime's monitor
// thread (internal/sysmon, decisions §84): the proxy serves the same
// without it, so a failure — no CAP_SYS_NICE in a container, not Linux —
// is reported and the start goes on.
func applyMonitorSlack(log *slog.Logger, d time.Duration) {
	if d == 0 {
		return
	}
	tid, err := sysmon.SetTimerSlack(d)
	if err != nil {
		log.Info("the runtime's monitor thread keeps the kernel's timer slack", "error", err)
		return
	}
	log.Info("timer slack of the runtime's monitor thread set", "thread", tid, "slack", d)
}
