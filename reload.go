package wasmproxy

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/wasmproxy/wasmproxy/admin"
	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/internal/filestamp"
	"github.com/wasmproxy/wasmproxy/internal/resolve"
	"github.com/wasmproxy/wasmproxy/proxy"
	"github.com/wasmproxy/wasmproxy/stats"
)

// reloadCounters are the server.reload.* stats.
type reloadCounters struct {
	success, failure *stats.Counter
	generation       *stats.Gauge
	// replaced counts poisoned plugin instances a reload replaced.
	replaced *stats.Counter
}

func newReloadCounters(st *stats.Store) reloadCounters {
	return reloadCounters{
		success:    st.Counter("server.reload.success"),
		failure:    st.Counter("server.reload.failure"),
		generation: st.Gauge("server.reload.generation"),
		replaced:   st.Counter("server.reload.instances_replaced"),
	}
}

// Reload loads the config, the WasmPlugins and the plugins' code again
// and turns the running proxy into them, all or nothing: a change of
// routes, clusters or plugins keeps the listeners' connections, a
// changed listener takes over its socket, and what was replaced is
// closed after its last stream. Every trigger calls it: the file poller
// ("file"), the admin API ("admin"), the command's SIGHUP ("sighup") and
// --watch ("watch"); reason says which, in the status and the log. One
// reload runs at a time.
//
// Whatever the config did, plugin instances that a trap, the call
// deadline or the memory cap poisoned are replaced (the operator's way
// out of FAIL_CLOSED and of a backoff). A failed reload leaves the
// running version serving and reports the error: returned, logged, in
// the status (/reload_status) and in stats (server.reload.failure).
func (p *Proxy) Reload(ctx context.Context, reason string) (admin.ReloadStatus, error) {
	p.reloadMu.Lock()
	defer p.reloadMu.Unlock()
	if p.closing.Load() {
		return p.status, errors.New("wasmproxy: the proxy is shut down")
	}
	start := time.Now()
	p.status.Trigger = reason
	p.status.LastAttempt = start
	files := filestamp.Take(p.watchedFiles(), p.files) // before reading, so a change during the reload is seen next time
	changed, err := p.reload(ctx)
	p.files = files
	p.status.Replaced = p.replacePoisoned(reason)
	rec := admin.ReloadRecord{Time: start, Trigger: reason, Replaced: p.status.Replaced}
	if err != nil && errors.Is(err, proxy.ErrShuttingDown) {
		// A reload that started as Shutdown began (a file poll, an admin
		// call): nothing failed, the proxy is going away.
		p.log.Info("reload abandoned: the proxy is shutting down", "trigger", reason)
		return p.status, err
	}
	if err != nil {
		p.counters.failure.Inc()
		p.status.Failures++
		p.status.LastError = err.Error()
		p.log.Error("reload failed; the running version keeps serving", "trigger", reason, "err", err)
		rec.Outcome, rec.Error = admin.ReloadFailed, err.Error()
		p.recordReload(rec)
		return p.status, err
	}
	p.counters.success.Inc()
	if p.applied.Load().ADS != nil {
		p.xdsGauges()
	}
	p.status.LastError = ""
	p.status.LastSuccess = time.Now()
	p.status.Changed = changed
	rec.Changed = changed
	switch {
	case len(changed) > 0:
		p.status.Generation++
		p.status.ConfigVersion = configVersion(p.applied.Load())
		p.counters.generation.Set(int64(p.status.Generation))
		p.log.Info("reloaded", "trigger", reason, "swapped", changed, "took", time.Since(start).Round(time.Millisecond))
		rec.Outcome = admin.ReloadChanged
	case len(p.status.Replaced) > 0:
		p.log.Info("reload: config unchanged; poisoned plugin instances replaced", "trigger", reason, "replaced", p.status.Replaced)
		rec.Outcome = admin.ReloadReplaced
	default:
		p.log.Info("reload: nothing changed", "trigger", reason)
		rec.Outcome = admin.ReloadUnchanged
	}
	p.recordReload(rec)
	return p.status, nil
}

// recordReload completes rec with the running version and how long the
// attempt took, and puts it in front of the bounded history. The caller
// holds reloadMu.
func (p *Proxy) recordReload(rec admin.ReloadRecord) {
	rec.TookMS = time.Since(rec.Time).Milliseconds()
	rec.Generation, rec.ConfigVersion = p.status.Generation, p.status.ConfigVersion
	p.status.History = admin.WithRecord(p.status.History, rec)
}

// configVersion names a resolved configuration: the first 12 hex digits
// of a sha256 over its bootstrap JSON, its extension configs (Istio
// WasmPlugins) and the code digest of every plugin, so that new plugin
// code under an unchanged file name is a new version too.
func configVersion(cfg *config.Bootstrap) string {
	h := sha256.New()
	put := func(b []byte) {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	put(cfg.RawJSON)
	for _, ec := range cfg.ExtensionConfigs {
		put(ec)
	}
	for _, l := range cfg.Listeners {
		for _, c := range l.FilterChains {
			for _, f := range c.NetworkFilters {
				if f.Wasm != nil {
					put([]byte(f.Wasm.CodeDigest))
				}
			}
			if c.HTTP == nil {
				continue
			}
			for _, f := range c.HTTP.Filters {
				if f.Wasm != nil {
					put([]byte(f.Wasm.CodeDigest))
				}
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// reload is the pipeline: load, resolve, then plan and apply
// (proxy.Server.Reload runs proxy.Diff, then builds, commits or undoes).
func (p *Proxy) reload(ctx context.Context) ([]string, error) {
	cfg, err := p.load()
	if err != nil {
		return nil, err
	}
	resolved, err := resolve.Model(ctx, cfg, p.resolveOptions(false))
	if err != nil {
		return nil, err
	}
	res, err := p.srv.Reload(ctx, resolved)
	if err != nil {
		return nil, explainAddrInUse(err, resolved, p.opts.ConfigPath)
	}
	p.applied.Store(resolved)
	return res.Plan.Summary(), nil
}

// ReloadFailed records an attempt that failed before it could reach
// Reload, as Reload records its own failures: in the status
// (/reload_status, with reason as its trigger) and in stats
// (server.reload.failure). `run --watch` calls it for a rebuild that
// did not compile. The caller logs err (a compiler's output reads best
// as it was printed).
func (p *Proxy) ReloadFailed(reason string, err error) {
	p.reloadMu.Lock()
	defer p.reloadMu.Unlock()
	p.status.Trigger = reason
	p.status.LastAttempt = time.Now()
	p.counters.failure.Inc()
	p.status.Failures++
	p.status.LastError = err.Error()
	p.recordReload(admin.ReloadRecord{Time: p.status.LastAttempt, Trigger: reason, Outcome: admin.ReloadFailed, Error: err.Error()})
}

// ReloadStatus is the outcome of the last reload attempt.
func (p *Proxy) ReloadStatus() admin.ReloadStatus {
	p.reloadMu.Lock()
	defer p.reloadMu.Unlock()
	return p.status
}

// replacePoisoned replaces every plugin instance a trap, the call
// deadline or the memory cap poisoned (wasm.Host.ReplacePoisoned), logs
// and counts it, and describes it for the reload status.
func (p *Proxy) replacePoisoned(reason string) []string {
	var out []string
	for _, rep := range p.host.ReplacePoisoned() {
		plugins := strings.Join(rep.Plugins, ",")
		if rep.Replaced > 0 {
			p.counters.replaced.Add(uint64(rep.Replaced))
			p.log.Info("reload replaced poisoned plugin instances", "trigger", reason, "plugin", plugins, "instances", rep.Replaced)
			out = append(out, fmt.Sprintf("%s: %d replaced", plugins, rep.Replaced))
		}
		if rep.Failed > 0 {
			p.log.Error("reload could not replace poisoned plugin instances; they stay out of service", "trigger", reason, "plugin", plugins, "instances", rep.Failed, "err", rep.Err)
			out = append(out, fmt.Sprintf("%s: %d not replaced: %v", plugins, rep.Failed, rep.Err))
		}
	}
	return out
}

// poll watches files until ctx ends (stat polling, so no inotify is
// needed): with Options.PollInterval, it reloads when a watched file
// changes; it applies the xDS path config sources (p.xdsFiles) at once,
// when wake closes, and whenever one changes.
func (p *Proxy) poll(ctx context.Context, every time.Duration, wake <-chan struct{}) {
	t := time.NewTicker(every)
	defer t.Stop()
	p.pollXDSFiles(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-wake:
			wake = nil
			p.pollXDSFiles(ctx)
		case <-t.C:
			if p.opts.PollInterval > 0 && p.filesChanged(ctx) {
				_, _ = p.Reload(ctx, "file")
			}
			p.pollXDSFiles(ctx)
		}
	}
}

// filesChanged reports a change of the watched files, once they have
// stopped changing (see settled).
func (p *Proxy) filesChanged(ctx context.Context) bool {
	p.reloadMu.Lock()
	old := p.files
	files := p.watchedFiles()
	p.reloadMu.Unlock()
	_, changed := settled(ctx, files, old)
	return changed
}

// settled stamps files and reports whether they differ from old, once
// they have stopped changing for a moment (a plugin being written by a
// build is not read half-way); now is the last stamp taken.
func settled(ctx context.Context, files []string, old filestamp.Set) (now filestamp.Set, changed bool) {
	now = filestamp.Take(files, old)
	if filestamp.Same(old, now) {
		return now, false
	}
	for range 20 {
		select {
		case <-ctx.Done():
			return now, false
		case <-time.After(50 * time.Millisecond):
		}
		again := filestamp.Take(files, now)
		if filestamp.Same(now, again) {
			return again, true
		}
		now = again
	}
	return now, true
}

// watchedFiles are the config file, the Istio resource files and every local
// plugin code file the running config uses (resolved paths).
func (p *Proxy) watchedFiles() []string {
	var files []string
	if p.opts.ConfigPath != "" {
		files = append(files, p.opts.ConfigPath)
	}
	if wp := p.opts.IstioResources; wp != "" {
		if fi, err := os.Stat(wp); err == nil && fi.IsDir() {
			for _, ext := range []string{"*.yaml", "*.yml", "*.json"} {
				m, _ := filepath.Glob(filepath.Join(wp, ext))
				files = append(files, m...)
			}
		}
		files = append(files, wp) // for a directory: a file added or removed changes it
	}
	for _, l := range p.applied.Load().Listeners {
		for _, c := range l.FilterChains {
			for _, f := range c.NetworkFilters {
				if f.Wasm != nil && f.Wasm.CodeFile != "" {
					files = append(files, f.Wasm.CodeFile)
				}
			}
			if c.HTTP == nil {
				continue
			}
			for _, f := range c.HTTP.Filters {
				if f.Wasm != nil && f.Wasm.CodeFile != "" {
					files = append(files, f.Wasm.CodeFile)
				}
			}
		}
	}
	sort.Strings(files)
	return files
}
