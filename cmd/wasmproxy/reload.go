package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wasmproxy/wasmproxy/admin"
	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/proxy"
	"github.com/wasmproxy/wasmproxy/stats"
	"github.com/wasmproxy/wasmproxy/wasm"
)

// track records a loaded filter: its plugin (nil for a fallback) and the
// code it runs, for reloads to tell what changed.
func (l *wasmLoader) track(f *config.HTTPFilter, p *wasm.Plugin, pc *config.WasmPlugin) {
	fp := "unavailable" // a fallback: any real code differs from it
	if pc != nil {
		fp = codeHash(pc)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fingerprints == nil {
		l.fingerprints = map[*config.HTTPFilter]string{}
	}
	l.fingerprints[f] = fp
	if p != nil {
		l.plugins = append(l.plugins, p)
	}
}

// codeHash hashes the code a resolved plugin config loads.
func codeHash(pc *config.WasmPlugin) string {
	code := pc.Code
	if pc.CodeFile != "" {
		b, err := os.ReadFile(pc.CodeFile)
		if err != nil {
			return "unreadable"
		}
		code = b
	}
	sum := sha256.Sum256(code)
	return hex.EncodeToString(sum[:])
}

// ReleaseFilter implements proxy.FilterReleaser: a swap retired f and
// its last stream has ended, so its plugin instances close now.
func (l *wasmLoader) ReleaseFilter(ctx context.Context, f filter.Factory) {
	p, ok := f.(*wasm.Plugin)
	if !ok {
		return
	}
	l.mu.Lock()
	for i, q := range l.plugins {
		if q == p {
			l.plugins = append(l.plugins[:i], l.plugins[i+1:]...)
			break
		}
	}
	l.mu.Unlock()
	_ = p.Close(ctx)
	l.log.Info("retired plugin closed", "plugin", p.Name())
}

func (l *wasmLoader) fingerprint(f *config.HTTPFilter) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fingerprints[f]
}

func (l *wasmLoader) forget(fs []*config.HTTPFilter) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range fs {
		delete(l.fingerprints, f)
	}
}

// reloader reloads the running proxy from its files: on a change of the
// config file, the WasmPlugin files or a plugin's code file (stat
// polling, so no inotify is needed), on SIGHUP, and on POST /reload.
// Only one reload runs at a time; a failed one leaves the running
// version serving and reports the error in the log, on the admin API
// (/reload_status) and in stats (reload.failure).
type reloader struct {
	rf     *runFlags
	srv    *proxy.Server
	loader *wasmLoader
	log    *slog.Logger

	success, failure *stats.Counter
	generation       *stats.Gauge
	// replaced counts poisoned plugin instances a reload replaced.
	replaced *stats.Counter

	mu     sync.Mutex // one reload at a time; guards status and files
	status admin.ReloadStatus
	files  map[string]fileStamp
	// applied is the configuration running: the one the proxy started
	// with, then the last one a reload applied (/config_dump, the
	// network filters' code files to watch).
	applied atomic.Pointer[config.Bootstrap]
}

// fileStamp is what polling compares; the hash catches a rewrite within
// the file system's mtime resolution.
type fileStamp struct {
	size    int64
	modTime time.Time
	sum     [sha256.Size]byte
}

func newReloader(rf *runFlags, cfg *config.Bootstrap, srv *proxy.Server, loader *wasmLoader, st *stats.Store, log *slog.Logger) *reloader {
	r := &reloader{
		rf: rf, srv: srv, loader: loader, log: log,
		success:    st.Counter("server.reload.success"),
		failure:    st.Counter("server.reload.failure"),
		generation: st.Gauge("server.reload.generation"),
		replaced:   st.Counter("server.reload.instances_replaced"),
	}
	r.applied.Store(cfg)
	r.files = r.stampFiles()
	loader.mu.Lock()
	loader.reloading = true
	loader.mu.Unlock()
	return r
}

// run polls and listens for SIGHUP until ctx ends.
func (r *reloader) run(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var tick <-chan time.Time
	if r.rf.sources.pollInterval > 0 {
		t := time.NewTicker(r.rf.sources.pollInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			_, _ = r.Reload(ctx, "sighup")
		case <-tick:
			if r.filesChanged() {
				_, _ = r.Reload(ctx, "file")
			}
		}
	}
}

// Reload implements admin.Reloader.
func (r *reloader) Reload(ctx context.Context, trigger string) (admin.ReloadStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	start := time.Now()
	r.status.Trigger = trigger
	r.status.LastAttempt = start
	files := r.stampFiles() // before reading, so a change during the reload is seen next time
	changed, err := r.reload(ctx)
	r.files = files
	// Whatever the config did, poisoned instances are replaced: the
	// operator's way out of FAIL_CLOSED, and of a backoff.
	r.status.Replaced = r.replacePoisoned(trigger)
	if err != nil {
		r.failure.Inc()
		r.status.Failures++
		r.status.LastError = err.Error()
		r.log.Error("reload failed; the running version keeps serving", "trigger", trigger, "err", err)
		return r.status, err
	}
	r.success.Inc()
	r.status.LastError = ""
	r.status.LastSuccess = time.Now()
	r.status.Changed = changed
	if len(changed) > 0 {
		r.status.Generation++
		r.generation.Set(int64(r.status.Generation))
		r.log.Info("reloaded", "trigger", trigger, "swapped", changed, "took", time.Since(start).Round(time.Millisecond))
	} else if len(r.status.Replaced) > 0 {
		r.log.Info("reload: config unchanged; poisoned plugin instances replaced", "trigger", trigger, "replaced", r.status.Replaced)
	} else {
		r.log.Info("reload: nothing changed", "trigger", trigger)
	}
	return r.status, nil
}

// replacePoisoned replaces every plugin instance a trap, the call
// deadline or the memory cap poisoned (wasm.Host.ReplacePoisoned), logs
// and counts it, and describes it for the reload status.
func (r *reloader) replacePoisoned(trigger string) []string {
	var out []string
	for _, rep := range r.loader.host.ReplacePoisoned() {
		plugins := strings.Join(rep.Plugins, ",")
		if rep.Replaced > 0 {
			r.replaced.Add(uint64(rep.Replaced))
			r.log.Info("reload replaced poisoned plugin instances", "trigger", trigger, "plugin", plugins, "instances", rep.Replaced)
			out = append(out, fmt.Sprintf("%s: %d replaced", plugins, rep.Replaced))
		}
		if rep.Failed > 0 {
			r.log.Error("reload could not replace poisoned plugin instances; they stay out of service", "trigger", trigger, "plugin", plugins, "instances", rep.Failed, "err", rep.Err)
			out = append(out, fmt.Sprintf("%s: %d not replaced: %v", plugins, rep.Failed, rep.Err))
		}
	}
	return out
}

// ReloadStatus implements admin.Reloader.
func (r *reloader) ReloadStatus() admin.ReloadStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

func (r *reloader) reload(ctx context.Context) ([]string, error) {
	cfg, err := loadConfig(r.rf, r.log)
	if err != nil {
		return nil, err
	}
	same := func(running, next *config.HTTPFilter) bool {
		a, errA := json.Marshal(running)
		b, errB := json.Marshal(next)
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			return false
		}
		fp, err := r.loader.codeFingerprint(ctx, next)
		return err == nil && fp == r.loader.fingerprint(running)
	}
	res, err := r.srv.Reload(ctx, cfg, same)
	if err != nil {
		return nil, err
	}
	r.applied.Store(cfg)
	if retired := res.RetiredFilters; len(retired) > 0 {
		go func() {
			<-res.Released
			r.loader.forget(retired)
		}()
	}
	return res.Plan.Summary(), nil
}

// watchedFiles are the config file, the WasmPlugin files and every
// local plugin code file in use.
func (r *reloader) watchedFiles() []string {
	files := []string{r.rf.configPath}
	if p := r.rf.sources.wasmPlugins; p != "" {
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			for _, ext := range []string{"*.yaml", "*.yml", "*.json"} {
				m, _ := filepath.Glob(filepath.Join(p, ext))
				files = append(files, m...)
			}
			files = append(files, p) // a file added or removed changes the directory
		} else {
			files = append(files, p)
		}
	}
	for _, set := range r.srv.HTTPFilterSets() {
		for _, f := range set.Filters {
			if f.Wasm != nil && f.Wasm.CodeFile != "" {
				files = append(files, resolveCodeFile(f.Wasm.CodeFile, r.loader.configDir))
			}
		}
	}
	for _, l := range r.applied.Load().Listeners {
		for _, c := range l.FilterChains {
			for _, f := range c.NetworkFilters {
				if f.Wasm != nil && f.Wasm.CodeFile != "" {
					files = append(files, resolveCodeFile(f.Wasm.CodeFile, r.loader.configDir))
				}
			}
		}
	}
	sort.Strings(files)
	return files
}

func (r *reloader) stampFiles() map[string]fileStamp {
	out := map[string]fileStamp{}
	for _, f := range r.watchedFiles() {
		fi, err := os.Stat(f)
		if err != nil {
			out[f] = fileStamp{size: -1}
			continue
		}
		st := fileStamp{size: fi.Size(), modTime: fi.ModTime()}
		if !fi.IsDir() {
			if b, err := os.ReadFile(f); err == nil {
				st.sum = sha256.Sum256(b)
			}
		}
		out[f] = st
	}
	return out
}

// filesChanged reports a change, once the files have stopped changing
// for a moment (a plugin being written by a build is not read half-way).
func (r *reloader) filesChanged() bool {
	r.mu.Lock()
	old := r.files
	r.mu.Unlock()
	now := r.stampFiles()
	if sameStamps(old, now) {
		return false
	}
	for range 20 {
		time.Sleep(50 * time.Millisecond)
		again := r.stampFiles()
		if sameStamps(now, again) {
			return true
		}
		now = again
	}
	return true
}

func sameStamps(a, b map[string]fileStamp) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || v.size != w.size || v.sum != w.sum {
			return false
		}
	}
	return true
}

// reloadingProvider adds reloading to the admin provider.
type reloadingProvider struct {
	*adminProvider
	r *reloader
}

func (p reloadingProvider) Reload(ctx context.Context, trigger string) (admin.ReloadStatus, error) {
	return p.r.Reload(ctx, trigger)
}

func (p reloadingProvider) ReloadStatus() admin.ReloadStatus { return p.r.ReloadStatus() }

// ConfigDump is the configuration running now: the last one a reload
// applied, else the one the proxy started with.
func (p reloadingProvider) ConfigDump() ([]byte, error) { return p.r.applied.Load().RawJSON, nil }

// ExtensionConfigs are the running configuration's WasmPlugins, as ECDS
// would have delivered them.
func (p reloadingProvider) ExtensionConfigs() ([]json.RawMessage, error) {
	return p.r.applied.Load().ExtensionConfigs, nil
}

var _ admin.ExtensionConfigDumper = reloadingProvider{}

var _ admin.Reloader = reloadingProvider{}
