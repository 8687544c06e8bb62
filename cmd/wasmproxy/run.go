package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/wasmproxy/wasmproxy/admin"
	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/config/redact"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/proxy"
	"github.com/wasmproxy/wasmproxy/source"
	"github.com/wasmproxy/wasmproxy/stats"
	"github.com/wasmproxy/wasmproxy/wasm"
)

// runProxy loads the config, starts plugins, listeners and the admin
// server, and blocks until SIGINT/SIGTERM or POST /quitquitquit; then it
// drains in-flight requests and returns nil (exit 0).
func runProxy(parent context.Context, rf *runFlags, argv []string) error {
	level, err := logging.ParseLevel(rf.logLevel)
	if err != nil {
		return fmt.Errorf("-l: %w", err)
	}
	logs := logging.NewRegistry(os.Stderr, level)
	levels, err := parseComponentLevels(rf.componentLogLevels)
	if err != nil {
		return err
	}
	for _, cl := range levels {
		lv, err := logging.ParseLevel(cl[1])
		if err != nil {
			return fmt.Errorf("--component-log-level %s: %w", cl[0], err)
		}
		logs.Logger(cl[0])
		if err := logs.SetLevel(cl[0], lv); err != nil {
			return fmt.Errorf("--component-log-level: %w", err)
		}
	}
	if rf.concurrency < 0 {
		return fmt.Errorf("--concurrency: must be at least 1, got %d", rf.concurrency)
	}
	log := logs.Logger("main")

	cfg, err := loadConfig(rf, log)
	if err != nil {
		return err
	}
	ctx, cancel := signalContext(parent)
	defer cancel()

	st := stats.New()
	st.SetTagConfig(statsTagConfig(cfg.StatsConfig)) // services.go
	host, err := wasm.NewHost(ctx, wasm.Options{
		CacheDir: rf.cacheDir,
		PoolSize: rf.concurrency,
		Logs:     logs,
		Stats:    st,
		Node:     cfg.Node,
	})
	if err != nil {
		return err
	}
	defer host.Close(context.Background())

	fetcher, err := newFetcher(rf, logs, st)
	if err != nil {
		return err
	}
	go pruneModules(ctx, fetcher, rf.sources.moduleExpiry, logs.Logger("wasm")) // sources.go
	loader := &wasmLoader{host: host, configDir: filepath.Dir(rf.configPath), fetcher: fetcher, log: logs.Logger("wasm")}
	srv, err := proxy.New(ctx, cfg, proxy.Options{Logs: logs, Stats: st, Loader: loader, DrainTimeout: rf.drainTime})
	if err != nil {
		loader.closeAll()
		return err
	}
	defer loader.closeAll()
	// Plugins reach the proxy's clusters for proxy_http_call and gRPC.
	host.SetUpstreams(srv)
	services, err := startServices(ctx, host, loader, cfg, logs.Logger("wasm")) // services.go
	if err != nil {
		return err
	}
	defer services.close()
	statsCtx, stopStats := context.WithCancel(context.Background())
	defer stopStats()
	go serverStats(statsCtx, st, poolSize(rf.concurrency), srv.Draining)
	if err := srv.Start(); err != nil {
		return err
	}
	reloads := newReloader(rf, cfg, srv, loader, st, logs.Logger("main")) // reload.go
	go reloads.run(ctx)

	quit := make(chan struct{}, 1)
	var adminSrv *admin.Server
	if cfg.Admin != nil && cfg.Admin.Address != "" {
		ln, err := net.Listen(proxy.ListenNetwork(cfg.Admin.Address), cfg.Admin.Address)
		if err != nil {
			_ = srv.Shutdown(context.Background())
			return fmt.Errorf("admin: %w", err)
		}
		adminSrv = admin.New(reloadingProvider{&adminProvider{srv: srv, cfg: cfg, flags: rf, quit: quit}, reloads}, st, logs)
		go func() {
			if err := adminSrv.Serve(ln); err != nil {
				log.Debug("admin server stopped", "err", err)
			}
		}()
		log.Info("admin server started", "address", ln.Addr().String())
	}
	log.Info("wasmproxy started", "version", version, "config", rf.configPath, "concurrency", poolSize(rf.concurrency))

	select {
	case <-ctx.Done():
		log.Info("shutting down on signal")
	case <-quit:
		log.Info("shutting down on /quitquitquit")
	}
	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), rf.drainTime+5*time.Second)
	defer cancelShutdown()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("drain incomplete", "err", err)
	}
	if adminSrv != nil {
		_ = adminSrv.Shutdown(shutdownCtx)
	}
	log.Info("wasmproxy stopped")
	return nil
}

func poolSize(n int) int {
	if n > 0 {
		return n
	}
	return runtime.GOMAXPROCS(0)
}

// wasmLoader builds HTTP filters from Wasm plugin configs.
type wasmLoader struct {
	host      *wasm.Host
	configDir string
	plugins   []*wasm.Plugin
	fetcher   *source.Fetcher // remote code (sources.go)
	log       *slog.Logger
	reloading bool // after start-up a failed fetch fails the reload

	mu           sync.Mutex
	fingerprints map[*config.HTTPFilter]string // code each loaded filter runs (reload.go)
}

func (l *wasmLoader) LoadHTTPFilter(ctx context.Context, listener string, f *config.HTTPFilter) (filter.Factory, error) {
	if f.Wasm == nil {
		return nil, fmt.Errorf("listener %q: http filter %q is not supported", listener, f.Name)
	}
	pc := *f.Wasm
	if pc.CodeFile != "" {
		pc.CodeFile = resolveCodeFile(pc.CodeFile, l.configDir)
	}
	remoteURL := ""
	if pc.Remote != nil {
		remoteURL = pc.Remote.URL
		if fallback, err := l.resolveRemote(ctx, listener, &pc); fallback != nil || err != nil {
			if fallback != nil {
				l.track(f, nil, nil)
			}
			return fallback, err
		}
	}
	p, err := l.host.LoadPlugin(ctx, &pc)
	if err != nil && remoteURL != "" {
		return nil, fmt.Errorf("listener %q: %s: %w", listener, redact.Text(remoteURL), err)
	}
	if err != nil {
		return nil, fmt.Errorf("listener %q: %w", listener, err)
	}
	l.track(f, p, &pc) // reload.go
	return p, nil
}

func (l *wasmLoader) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.plugins {
		_ = p.Close(context.Background())
	}
	l.plugins = nil
}

// resolveCodeFile applies Envoy's rule (relative to the working
// directory) and, when nothing is there, looks beside the config file, so
// `wasmproxy -c examples/x/envoy.yaml` with `filename: ./main.wasm` works
// from any directory.
func resolveCodeFile(name, configDir string) string {
	if filepath.IsAbs(name) {
		return name
	}
	if _, err := os.Stat(name); err == nil || !errors.Is(err, os.ErrNotExist) {
		return name
	}
	alt := filepath.Join(configDir, name)
	if _, err := os.Stat(alt); err == nil {
		return alt
	}
	return name
}
