package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/istio"
	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/source"
	"github.com/wasmproxy/wasmproxy/stats"
)

// sourceFlags are the run flags for plugin code sources, Istio
// WasmPlugin files and reloading.
type sourceFlags struct {
	dockerConfig       string
	insecureRegistries string
	wasmPlugins        string
	moduleCacheDir     string
	moduleExpiry       time.Duration
	pollInterval       time.Duration
}

func (f *sourceFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.dockerConfig, "docker-config", "", "docker config.json with registry credentials (default $DOCKER_CONFIG/config.json or ~/.docker/config.json)")
	fl.StringVar(&f.insecureRegistries, "insecure-registries", os.Getenv("WASM_INSECURE_REGISTRIES"), "comma-separated registry hosts whose TLS is not verified (\"*\" = all); default $WASM_INSECURE_REGISTRIES")
	fl.StringVar(&f.wasmPlugins, "wasm-plugins", "", "Istio WasmPlugin YAML: a file or a directory of them, inserted into matching listeners")
	fl.StringVar(&f.moduleCacheDir, "module-cache-dir", "", "directory for fetched Wasm modules (default CACHE_DIR/modules)")
	fl.DurationVar(&f.moduleExpiry, "module-cache-expiry", 24*time.Hour, "remove fetched modules not used for this long, as Istio's WASM_MODULE_EXPIRY (0 keeps them)")
	fl.DurationVar(&f.pollInterval, "reload-poll-interval", time.Second, "how often to check the config, WasmPlugin and plugin files for changes (0 disables; SIGHUP and POST /reload still reload)")
}

// moduleCacheDir is where fetched modules live: beside wazero's
// compilation cache, so one --cache-dir keeps a warm start offline.
func moduleCacheDir(cacheDir string) string {
	if cacheDir == "" {
		return ""
	}
	return filepath.Join(cacheDir, "modules")
}

func newFetcher(rf *runFlags, logs *logging.Registry, st *stats.Store) (*source.Fetcher, error) {
	var insecure []string
	for _, h := range strings.Split(rf.sources.insecureRegistries, ",") {
		if h = strings.TrimSpace(h); h != "" {
			insecure = append(insecure, h)
		}
	}
	dir := rf.sources.moduleCacheDir
	if dir == "" {
		dir = moduleCacheDir(rf.cacheDir)
	}
	return source.New(source.Options{
		CacheDir:           dir,
		DockerConfig:       rf.sources.dockerConfig,
		InsecureRegistries: insecure,
		Logger:             logs.Logger("wasm"),
		Stats:              st,
	})
}

// digestNetworkCode sets the CodeDigest of every network filter with a
// local code file, for reloads to notice a rebuilt module. An unreadable
// file is left without one: loading it reports the error.
func digestNetworkCode(cfg *config.Bootstrap, configDir string) {
	for _, l := range cfg.Listeners {
		for _, c := range l.FilterChains {
			for _, f := range c.NetworkFilters {
				if w := f.Wasm; w != nil && w.CodeFile != "" {
					if b, err := os.ReadFile(resolveCodeFile(w.CodeFile, configDir)); err == nil {
						sum := sha256.Sum256(b)
						w.CodeDigest = hex.EncodeToString(sum[:])
					}
				}
			}
		}
	}
}

// pruneModules removes fetched modules unused for expiry, at start and
// then every expiry/4 (at most hourly) until ctx ends, so the cache does
// not grow with every version ever pulled. A module the running config
// uses is only read again on a reload, which fetches it anew if it was
// pruned.
func pruneModules(ctx context.Context, f *source.Fetcher, expiry time.Duration, log *slog.Logger) {
	if expiry <= 0 {
		return
	}
	every := min(expiry/4, time.Hour)
	for {
		if n, err := f.Prune(expiry); err != nil {
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

// loadConfig reads the bootstrap and inserts the WasmPlugin resources of
// --wasm-plugins into its listeners.
func loadConfig(rf *runFlags, log *slog.Logger) (*config.Bootstrap, error) {
	cfg, err := config.Load(rf.configPath)
	if err != nil {
		return nil, err
	}
	defer digestNetworkCode(cfg, filepath.Dir(rf.configPath))
	if rf.sources.wasmPlugins == "" {
		return cfg, nil
	}
	plugins, err := istio.Load(rf.sources.wasmPlugins)
	if err != nil {
		return nil, fmt.Errorf("--wasm-plugins: %w", err)
	}
	applied, err := istio.Apply(cfg, plugins)
	if err != nil {
		return nil, fmt.Errorf("--wasm-plugins: %w", err)
	}
	for _, p := range plugins {
		if ec, err := p.ExtensionConfig(); err == nil {
			cfg.ExtensionConfigs = append(cfg.ExtensionConfigs, ec)
		}
		if len(applied[p.FullName()]) == 0 {
			log.Warn("WasmPlugin goes into no listener: its ports match none, or (an HTTP plugin) only listeners that proxy TCP",
				"plugin", p.FullName(), "type", p.Spec.GetType().String(), "file", p.File)
		} else {
			log.Info("WasmPlugin inserted", "plugin", p.FullName(), "listeners", applied[p.FullName()], "phase", p.Spec.GetPhase().String())
		}
	}
	return cfg, nil
}

// resolveRemote fetches a plugin's remote code into pc.Code. When the
// fetch fails while the proxy starts (not on a reload, which keeps the
// running version instead), the plugin's failure policy decides, as
// Envoy does for a VM that could not be loaded: FAIL_OPEN skips the
// filter, otherwise every request gets 503. fallback is then non-nil.
func (l *wasmLoader) resolveRemote(ctx context.Context, listener string, pc *config.WasmPlugin) (fallback filter.Factory, err error) {
	r := pc.Remote
	m, err := l.fetcher.Fetch(ctx, source.Request{
		URL:         r.URL,
		SHA256:      r.SHA256,
		PullPolicy:  source.PullPolicy(r.PullPolicy),
		PullSecret:  r.PullSecret,
		Timeout:     r.Timeout.D(),
		Retries:     int(r.Retries),
		BackoffBase: r.BackoffBase.D(),
		BackoffMax:  r.BackoffMax.D(),
	})
	if err != nil {
		if l.reloading {
			return nil, fmt.Errorf("listener %q: plugin %q: %w", listener, pc.Name, err)
		}
		failOpen := pc.FailurePolicy == config.FailOpen
		l.log.Error("plugin code unavailable; serving without it", "listener", listener, "plugin", pc.Name, "fail_open", failOpen, "err", err)
		if failOpen {
			return passThrough{}, nil
		}
		return failClosed{}, nil
	}
	pc.Code = m.Code
	pc.Remote = nil
	return nil, nil
}

// codeFingerprint identifies the code a filter config loads: the hash of
// the file or inline bytes, or of the fetched module. Two configs with
// equal JSON and fingerprints build the same filter.
func (l *wasmLoader) codeFingerprint(ctx context.Context, f *config.HTTPFilter) (string, error) {
	if f.Wasm == nil {
		return "", nil
	}
	w := f.Wasm
	var code []byte
	switch {
	case w.Remote != nil:
		m, err := l.fetcher.Fetch(ctx, source.Request{
			URL: w.Remote.URL, SHA256: w.Remote.SHA256, PullPolicy: source.PullPolicy(w.Remote.PullPolicy),
			PullSecret: w.Remote.PullSecret, Timeout: w.Remote.Timeout.D(), Retries: int(w.Remote.Retries),
			BackoffBase: w.Remote.BackoffBase.D(), BackoffMax: w.Remote.BackoffMax.D(),
		})
		if err != nil {
			return "", err
		}
		return m.ModuleDigest, nil
	case w.CodeFile != "":
		var err error
		if code, err = os.ReadFile(resolveCodeFile(w.CodeFile, l.configDir)); err != nil {
			return "", fmt.Errorf("plugin %q: reading code: %w", w.Name, err)
		}
	default:
		code = w.Code
	}
	sum := sha256.Sum256(code)
	return hex.EncodeToString(sum[:]), nil
}

// passThrough is a FAIL_OPEN plugin whose code could not be had: the
// filter is skipped.
type passThrough struct{}

func (passThrough) NewStreamFilter(filter.Callbacks) filter.StreamFilter { return passThroughFilter{} }

type passThroughFilter struct{}

func (passThroughFilter) DecodeHeaders(*filter.HeaderMap, bool) filter.HeadersStatus {
	return filter.HeadersContinue
}
func (passThroughFilter) DecodeData(*filter.Buffer, bool) filter.DataStatus {
	return filter.DataContinue
}
func (passThroughFilter) DecodeTrailers(*filter.HeaderMap) filter.TrailersStatus {
	return filter.TrailersContinue
}
func (passThroughFilter) EncodeHeaders(*filter.HeaderMap, bool) filter.HeadersStatus {
	return filter.HeadersContinue
}
func (passThroughFilter) EncodeData(*filter.Buffer, bool) filter.DataStatus {
	return filter.DataContinue
}
func (passThroughFilter) EncodeTrailers(*filter.HeaderMap) filter.TrailersStatus {
	return filter.TrailersContinue
}
func (passThroughFilter) OnLog()     {}
func (passThroughFilter) OnDestroy() {}

// failClosed answers every request with Envoy's FAIL_CLOSED reply: 503,
// details wasm_fail_stream.
type failClosed struct{}

func (failClosed) NewStreamFilter(cb filter.Callbacks) filter.StreamFilter {
	return &failClosedFilter{cb: cb}
}

type failClosedFilter struct {
	passThroughFilter
	cb filter.Callbacks
}

func (f *failClosedFilter) DecodeHeaders(*filter.HeaderMap, bool) filter.HeadersStatus {
	f.cb.SendLocalReply(503, nil, nil, "wasm_fail_stream")
	return filter.HeadersStopIteration
}

var errNoFetcher = errors.New("remote code needs a fetcher")
