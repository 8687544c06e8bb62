// Package wasmproxy is the proxy as a library: an HTTP and TCP proxy
// whose data path runs Proxy-Wasm plugins, configured with Envoy's v3
// bootstrap format. The command cmd/wasmproxy is a thin layer over it
// that turns flags into Options and signals into calls.
//
//	p, err := wasmproxy.New(ctx, wasmproxy.Options{ConfigPath: "envoy.yaml"})
//	if err != nil { ... }
//	if err := p.Start(); err != nil { ... }
//	...
//	st, err := p.Reload(ctx, "deploy") // the config and plugins on disk, again
//	...
//	err = p.Shutdown(ctx)               // drains in-flight requests
//
// New and every Reload, whatever triggers it (the file poller, the
// command's SIGHUP and --watch, POST /reload on the admin API), run one
// pipeline, described in docs/architecture.md ("A reload"): load the
// model (load.go), resolve each plugin's code once (internal/resolve),
// plan with the pure proxy.Diff, and apply (proxy.Server.Reload): build,
// commit or undo, release what was replaced through io.Closer.
package wasmproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wasmproxy/wasmproxy/admin"
	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/internal/filestamp"
	"github.com/wasmproxy/wasmproxy/internal/loader"
	"github.com/wasmproxy/wasmproxy/internal/resolve"
	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/proxy"
	"github.com/wasmproxy/wasmproxy/source"
	"github.com/wasmproxy/wasmproxy/stats"
	"github.com/wasmproxy/wasmproxy/stats/statsd"
	"github.com/wasmproxy/wasmproxy/wasm"

	// The native HTTP filters, configured beside Wasm filters.
	_ "github.com/wasmproxy/wasmproxy/filters/all"
)

// Options configure a Proxy. Exactly one of ConfigPath and Bootstrap is
// required; every other field may be left zero.
type Options struct {
	// ConfigPath is an Envoy v3 bootstrap file (YAML or JSON), read by
	// New and again by every Reload.
	ConfigPath string
	// Bootstrap is a model to run instead (config.Parse, or built in Go).
	// It is never changed: every Reload loads it again, re-reading the
	// plugin code files it names and fetching its remote code anew.
	Bootstrap *config.Bootstrap
	// IstioResources is a YAML/JSON file, or a directory of them, of
	// Istio WasmPlugin and EnvoyFilter resources: plugins are inserted
	// into the listeners they match, EnvoyFilter patches applied to the
	// bootstrap before it is built (read again by every Reload).
	// EnvoyFilters need ConfigPath: they patch the Envoy config, not a
	// built model.
	IstioResources string
	// WasmPlugins is the former name of IstioResources; either may be
	// set (both only to the same path).
	WasmPlugins string
	// IstioVersion is the Istio version EnvoyFilter patches'
	// match.proxy.proxyVersion is matched against; ""
	// is istio.DefaultIstioVersion.
	IstioVersion string

	// CacheDir holds compiled modules (wazero's compilation cache) and,
	// under modules/, fetched ones, so a warm start works offline; ""
	// keeps both in memory only.
	CacheDir string
	// CacheMaxBytes bounds the compiled modules under CacheDir (least
	// recently used go first): 0 is 512 MiB, negative is no bound.
	CacheMaxBytes int64
	// ModuleCacheDir is where fetched modules are kept, when not under
	// CacheDir.
	ModuleCacheDir string
	// ModuleCacheExpiry removes fetched modules unused for this long
	// (Istio's WASM_MODULE_EXPIRY), at start and then periodically; 0
	// keeps them.
	ModuleCacheExpiry time.Duration
	// DockerConfig is a docker config.json with registry credentials
	// ("": $DOCKER_CONFIG/config.json or ~/.docker/config.json).
	DockerConfig string
	// InsecureRegistries are registry hosts whose TLS is not verified
	// ("*": all).
	InsecureRegistries []string

	// Overrides are Envoy's command-line overrides of the ConfigPath
	// file (--config-yaml, --service-node/cluster/zone), applied at
	// start and at every reload.
	Overrides config.Overrides

	// PollInterval is how often the config, WasmPlugin and plugin code
	// files are checked for changes, each of which reloads the proxy; 0
	// disables polling. The files of xDS path config sources are
	// checked at this interval too, or every second when it is 0 (as
	// Envoy, which always watches them).
	PollInterval time.Duration
	// Concurrency sizes each plugin's instance pool, as Envoy's
	// --concurrency sizes its workers; 0 means GOMAXPROCS.
	Concurrency int
	// DrainTimeout bounds how long in-flight requests may finish on
	// Shutdown and on a listener a reload retires (default 10s).
	DrainTimeout time.Duration

	// Logs are the log registry (default logging.Default).
	Logs *logging.Registry
	// Stats is the stats store (default: a store of the proxy's own).
	Stats *stats.Store
	// Filters are native Go HTTP filters by name: an http_filters entry
	// that is neither a Wasm plugin nor the router is built by the
	// factory of its name. They are shared and never closed.
	Filters map[string]filter.Factory

	// Version is the build's version for /server_info ("dev" when "").
	Version string
	// CommandLine is what /server_info reports as the command-line
	// options; Concurrency, ConfigPath and DrainTime are filled in when
	// zero.
	CommandLine admin.CommandLineOptions
}

// Proxy is a running proxy: its listeners, clusters, plugins, admin API
// and reload pipeline. Its methods are safe for concurrent use.
type Proxy struct {
	opts    Options
	logs    *logging.Registry
	log     *slog.Logger
	stats   *stats.Store
	host    *wasm.Host
	fetcher *source.Fetcher
	loader  *loader.Loader
	srv     *proxy.Server
	admin   *admin.Server
	node    *config.Node // as started: plugins see it, a reload keeps it
	quit    chan struct{}

	// The reload pipeline's state (reload.go).
	reloadMu sync.Mutex // one load or reload at a time; guards the fields below
	status   admin.ReloadStatus
	files    filestamp.Set
	// closing is set by Shutdown: a reload asked for then fails at once.
	closing atomic.Bool
	// applied is the resolved model running: the one New loaded, then
	// the last one a reload applied.
	applied  atomic.Pointer[config.Bootstrap]
	counters reloadCounters
	// runtimeAdmin is the runtime's admin layer (runtime.go).
	runtimeAdmin runtimeAdmin

	// Background work Start begins and Shutdown ends.
	stopBackground context.CancelFunc
	stopPolling    context.CancelFunc
	background     sync.WaitGroup
	adminServing   bool
	// xds holds what a control plane delivered (xds.go);
	// xdsInitializing is true until its first responses.
	xds             xdsResources
	xdsInitializing atomic.Bool
	// xdsWarmingInit is true from the first responses until nothing
	// delivered warms any more (or the initial fetch timed out): the
	// rest of Envoy's initialization (xds.go).
	xdsWarmingInit atomic.Bool
	// xdsFiles are the path config sources; set before the poller
	// starts, then the poller's (xds_path.go).
	xdsFiles     []*xdsFile
	shutdownOnce sync.Once
	shutdownErr  error
}

// New loads the config and the Istio WasmPlugins, resolves the plugins'
// code, starts every plugin and Wasm service and builds the clusters and
// listeners, without opening a socket (Start does). Errors name the
// file, listener, filter or plugin at fault; nothing is left running.
func New(ctx context.Context, opts Options) (*Proxy, error) {
	if (opts.ConfigPath == "") == (opts.Bootstrap == nil) {
		return nil, errors.New("wasmproxy: Options need exactly one of ConfigPath and Bootstrap")
	}
	switch {
	case opts.IstioResources == "":
		opts.IstioResources = opts.WasmPlugins
	case opts.WasmPlugins != "" && opts.WasmPlugins != opts.IstioResources:
		return nil, errors.New("wasmproxy: Options.WasmPlugins and Options.IstioResources name different paths; WasmPlugins is the old name of IstioResources")
	}
	opts.WasmPlugins = opts.IstioResources
	if opts.Logs == nil {
		opts.Logs = logging.Default
	}
	if opts.Stats == nil {
		opts.Stats = stats.New()
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 10 * time.Second
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = runtime.GOMAXPROCS(0)
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	p := &Proxy{opts: opts, logs: opts.Logs, log: opts.Logs.Logger("main"), stats: opts.Stats, quit: make(chan struct{}, 1)}
	p.counters = newReloadCounters(p.stats)
	// The Wasm host starts while the config is parsed: with a cache
	// directory it compiles the modules the last start used meanwhile
	// (wasm.Options.WarmStart), so that a warm start does not wait for
	// the parse (the first in a process pays protobuf's set-up) and
	// then for the compile. The node is set once the config says it.
	type hostResult struct {
		h   *wasm.Host
		err error
	}
	hostDone := make(chan hostResult, 1)
	go func() {
		h, err := wasm.NewHost(ctx, wasm.Options{
			CacheDir: opts.CacheDir, CacheMaxBytes: opts.CacheMaxBytes, PoolSize: opts.Concurrency, Logs: p.logs, Stats: p.stats,
			WarmStart: warmStartName(opts),
		})
		hostDone <- hostResult{h, err}
	}()
	cfg, err := p.load()
	hr := <-hostDone
	if err != nil {
		if hr.h != nil {
			_ = hr.h.Close(context.Background())
		}
		return nil, err
	}
	if hr.err != nil {
		return nil, hr.err
	}
	p.host = hr.h
	p.host.SetNode(cfg.Node)
	p.node = cfg.Node
	p.stats.SetTagConfig(statsTagConfig(cfg.StatsConfig))
	moduleDir := opts.ModuleCacheDir
	if moduleDir == "" && opts.CacheDir != "" {
		moduleDir = filepath.Join(opts.CacheDir, "modules")
	}
	if p.fetcher, err = source.New(source.Options{
		CacheDir: moduleDir, DockerConfig: opts.DockerConfig, InsecureRegistries: opts.InsecureRegistries,
		Logger: p.logs.Logger("wasm"), Stats: p.stats,
	}); err != nil {
		_ = p.host.Close(context.Background())
		return nil, err
	}
	resolved, err := resolve.Model(ctx, cfg, p.resolveOptions(true))
	if err != nil {
		_ = p.host.Close(context.Background())
		return nil, err
	}
	p.loader = loader.New(p.host, opts.Filters, p.stats, p.logs.Logger("wasm"))
	p.srv, err = proxy.New(ctx, resolved, proxy.Options{Logs: p.logs, Stats: p.stats, Loader: p.loader, DrainTimeout: opts.DrainTimeout})
	if err == nil {
		// Plugins reach the proxy's clusters for proxy_http_call and gRPC,
		// the services' on_configure included.
		p.host.SetUpstreams(p.srv)
		if err = p.loader.StartServices(ctx, resolved); err != nil {
			_ = p.srv.Shutdown(context.Background()) // closes the clusters
		}
	}
	if err != nil {
		p.loader.Close()
		_ = p.host.Close(context.Background())
		return nil, err
	}
	// The start's modules are recorded for the next start; compiles
	// started ahead that no plugin took are dropped.
	p.host.FinishWarmStart()
	p.applied.Store(resolved)
	p.status.ConfigVersion = configVersion(resolved)
	p.admin = admin.New(&adminProvider{p}, p.stats, p.logs)
	return p, nil
}

// warmStartName names a start's record of compiled modules in the cache
// directory (wasm.Options.WarmStart): the config file, or one name for
// every start from a built model.
func warmStartName(opts Options) string {
	if opts.ConfigPath == "" {
		return "bootstrap"
	}
	if abs, err := filepath.Abs(opts.ConfigPath); err == nil {
		return "config:" + abs
	}
	return "config:" + opts.ConfigPath
}

// Start binds every listener and the admin server (when the config
// names an admin address) and begins the background work: server
// stats, module cache pruning and, with Options.PollInterval, file
// polling. An address already in use is an error naming the listener;
// the proxy is then shut down.
func (p *Proxy) Start() error {
	if err := p.srv.Start(); err != nil {
		_ = p.Shutdown(context.Background())
		return explainAddrInUse(err, p.applied.Load(), p.opts.ConfigPath)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.stopBackground = cancel
	p.spawn(func() { serverStats(ctx, p.stats, p.opts.Concurrency, p.srv.Draining) })
	p.spawn(func() { p.pruneModules(ctx) })
	if err := p.startStatsSinks(ctx, p.applied.Load()); err != nil {
		_ = p.Shutdown(context.Background())
		return err
	}
	var xdsWake <-chan struct{}
	if cfg := p.applied.Load(); cfg.ADS != nil {
		var err error
		if xdsWake, err = p.startXDS(ctx, cfg.ADS, cfg.Node); err != nil {
			_ = p.Shutdown(context.Background())
			return err
		}
	}
	// The admin API (and /ready) answers before the watched files are
	// stamped: stamping reads and hashes every plugin file again, which
	// is no part of being ready. A reload meanwhile stamps them itself.
	if a := p.applied.Load().Admin; a != nil && a.Address != "" {
		ln, err := net.Listen(proxy.ListenNetwork(a.Address), a.Address)
		if err != nil {
			_ = p.Shutdown(context.Background())
			if errors.Is(err, syscall.EADDRINUSE) {
				return &AddrInUseError{What: "admin", Address: a.Address, Field: "admin.address.socket_address.port_value", ConfigPath: p.opts.ConfigPath, Err: err}
			}
			return fmt.Errorf("admin: %w", err)
		}
		p.adminServing = true
		go func() {
			if err := p.admin.Serve(ln); err != nil {
				p.log.Debug("admin server stopped", "err", err)
			}
		}()
		p.log.Info("admin server started", "address", ln.Addr().String())
	}
	p.reloadMu.Lock()
	p.files = filestamp.Take(p.watchedFiles(), nil)
	p.reloadMu.Unlock()
	if p.opts.PollInterval > 0 || p.applied.Load().ADS != nil {
		// Stopped first on Shutdown, so no poll reloads a draining proxy.
		// xDS files (dynamic_resources' and those delivered resources
		// name) are watched as Envoy watches them, even when polling the
		// config is off.
		every := p.opts.PollInterval
		if every <= 0 {
			every = time.Second
		}
		pollCtx, stop := context.WithCancel(ctx)
		p.stopPolling = stop
		p.spawn(func() { p.poll(pollCtx, every, xdsWake) })
	}
	return nil
}

// startStatsSinks starts the config's stats_sinks. Like stats_config,
// they are the bootstrap's: a reload keeps the ones the proxy started
// with, as Envoy needs a restart for them.
func (p *Proxy) startStatsSinks(ctx context.Context, cfg *config.Bootstrap) error {
	if len(cfg.StatsSinks) == 0 {
		return nil
	}
	var sinks []statsd.Config
	for _, s := range cfg.StatsSinks {
		sinks = append(sinks, statsd.Config{Address: s.Address, Prefix: s.Prefix, DogStatsD: s.DogStatsD, MaxBytesPerDatagram: int(s.MaxBytesPerDatagram)})
	}
	interval := cfg.StatsFlushInterval.D()
	if interval == 0 {
		interval = config.DefaultStatsFlushInterval
	}
	f, err := statsd.New(p.stats, interval, sinks)
	if err != nil {
		return fmt.Errorf("stats_sinks: %w", err)
	}
	p.spawn(func() { f.Run(ctx) })
	return nil
}

// spawn runs f in the background; Shutdown waits for it.
func (p *Proxy) spawn(f func()) {
	p.background.Add(1)
	go func() {
		defer p.background.Done()
		f()
	}()
}

// Shutdown stops the file poller, drains the proxy, bounded by ctx and
// Options.DrainTimeout (proxy.Server.Shutdown), stops the admin server
// and the background work, waits for a reload in progress, and closes
// every plugin and service. The Proxy cannot be used afterwards; calling Shutdown again
// returns the first call's result.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.shutdownOnce.Do(func() { p.shutdownErr = p.shutdown(ctx) })
	return p.shutdownErr
}

func (p *Proxy) shutdown(ctx context.Context) error {
	p.closing.Store(true) // no reload starts from here on
	if p.stopPolling != nil {
		p.stopPolling()
	}
	err := p.srv.Shutdown(ctx) // waits for a server reload in progress
	if p.stopBackground != nil {
		p.stopBackground()
	}
	if p.adminServing {
		_ = p.admin.Shutdown(ctx)
	}
	p.background.Wait()
	p.reloadMu.Lock() // a reload that was loading or resolving has ended
	p.reloadMu.Unlock()
	p.loader.Close()
	_ = p.host.Close(context.Background())
	return err
}

// ReopenLogs reopens every access log file, as Envoy does on SIGUSR1
// and admin POST /reopen_logs: after a rotation renamed them, new lines
// go to new files at the configured paths.
func (p *Proxy) ReopenLogs() { p.srv.ReopenAccessLogs() }

// AdminHandler is the admin API (Envoy's endpoints, POST /reload,
// /reload_status), for mounting in a server of the embedder's own; Start
// also serves it on the config's admin address, if any.
func (p *Proxy) AdminHandler() http.Handler { return p.admin.Handler() }

// Addr is the address the named listener is bound to ("" if there is
// none): useful when the config asked for port 0.
func (p *Proxy) Addr(listener string) string { return p.srv.Addr(listener) }

// QuitRequested receives when POST /quitquitquit asked the process to
// shut down; the embedder decides what that means (the command calls
// Shutdown and exits).
func (p *Proxy) QuitRequested() <-chan struct{} { return p.quit }

// resolveOptions are internal/resolve's options for New (startup) or a
// reload.
func (p *Proxy) resolveOptions(startup bool) resolve.Options {
	return resolve.Options{
		ConfigDir: p.configDir(), Fetcher: p.fetcher, Startup: startup, Services: startup, Log: p.logs.Logger("wasm"),
	}
}

// configDir is where relative code files are looked for when not found
// from the working directory: beside the config file.
func (p *Proxy) configDir() string {
	if p.opts.ConfigPath != "" {
		return filepath.Dir(p.opts.ConfigPath)
	}
	if p.opts.Bootstrap.Source != "" {
		return filepath.Dir(p.opts.Bootstrap.Source)
	}
	return "."
}

// pruneModules removes fetched modules unused for ModuleCacheExpiry, at
// start and then every expiry/4 (at most hourly) until ctx ends, so the
// cache does not grow with every version ever pulled. A module the
// running config uses is only read again on a reload, which fetches it
// anew if it was pruned.
func (p *Proxy) pruneModules(ctx context.Context) {
	expiry := p.opts.ModuleCacheExpiry
	if expiry <= 0 {
		return
	}
	log := p.logs.Logger("wasm")
	every := min(expiry/4, time.Hour)
	for {
		if n, err := p.fetcher.Prune(expiry); err != nil {
			log.Warn("pruning the module cache", "err", err)
		} else if n > 0 {
			log.Info("module cache pruned", "removed", n, "unused_for", expiry.String())
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}
