package wasm

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/wasmproxy/wasmproxy/internal/cachetrim"
)

// Warm start (Options.WarmStart): the plugin's code file is known only
// once the config is parsed, and parsing it first in a process costs
// protobuf's lazy set-up; a start with a warm cache would then wait for
// both one after the other. So the host records, in the cache directory,
// which compiled modules its start used (FinishWarmStart), and the next
// host of that directory compiles them again from NewHost on, in the
// background, while the config is parsed. acquire takes such a compile
// when a load asks for the same key; anything else is dropped unused.
//
// The key of a compiled module is the sha256 of the code's digest and
// the limits that change the rewrite (acquire), the same key the
// rewrite is cached under (prepared/). A record is only a guess: the load
// still reads and hashes the file its config names, and takes a warm
// compile only when that file's key is the same. A changed file, other
// limits or another module give another key, so a stale record costs a
// compile nobody waits for, never the wrong code.
//
// Each start's name (Options.WarmStart: the proxy's config file) has its
// own record, so that processes of different configs sharing a cache
// directory do not compile each other's modules.
const (
	warmRecordDir    = "warmstart"
	warmRecordHeader = "wasmproxy warm start v1"
	// warmRecordMaxAge: writing a new record removes those older than
	// this (cachetrim's age bound).
	warmRecordMaxAge = cachetrim.DefaultMaxAge
	// warmMax bounds the modules recorded and compiled ahead: a start
	// with more plugins than that compiles the rest when it loads them.
	warmMax = 4
)

// warmModule is a compile started by NewHost from the record.
type warmModule struct {
	key    [sha256.Size]byte
	cancel context.CancelFunc
	ready  chan struct{} // closed once mod/err are set

	// Guarded by Host.mu until ready is closed.
	mod       wazero.CompiledModule
	err       error
	done      bool // the compile has returned
	abandoned bool // no load will take it: whoever sees both closes mod
}

// warmRecordPath is where the record of the starts named name is kept
// under the cache directory dir; "" when either is "".
func warmRecordPath(dir, name string) string {
	if dir == "" || name == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(name))
	return filepath.Join(dir, warmRecordDir, hex.EncodeToString(sum[:12])+".txt")
}

// warmKeys reads the record at path: none when there is no record or it
// is not one.
func warmKeys(path string) [][sha256.Size]byte {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	if !sc.Scan() || sc.Text() != warmRecordHeader {
		return nil
	}
	var keys [][sha256.Size]byte
	for sc.Scan() && len(keys) < warmMax {
		var k [sha256.Size]byte
		if n, err := hex.Decode(k[:], []byte(strings.TrimSpace(sc.Text()))); err != nil || n != len(k) {
			return nil
		}
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	return keys
}

// startWarm begins compiling the recorded modules, one goroutine each,
// from their rewrites under prepared/ (a module whose rewrite is gone
// is not compiled: its load rewrites it as without a record). It needs
// only the runtime: the load that takes a module checks it against the
// host's imports (analyze), registered meanwhile.
func (h *Host) startWarm(ctx context.Context) {
	h.warmKeys = warmKeys(h.warmRecord)
	if len(h.warmKeys) == 0 {
		return
	}
	h.warm = make(map[[sha256.Size]byte]*warmModule, len(h.warmKeys))
	for _, k := range h.warmKeys {
		wctx, cancel := context.WithCancel(experimental.WithCompilationWorkers(context.WithoutCancel(ctx), runtime.GOMAXPROCS(0)))
		w := &warmModule{key: k, cancel: cancel, ready: make(chan struct{})}
		h.warm[k] = w
		h.warmWG.Add(1)
		go h.compileWarm(wctx, w)
	}
}

func (h *Host) compileWarm(ctx context.Context, w *warmModule) {
	defer h.warmWG.Done()
	defer w.cancel()
	var mod wazero.CompiledModule
	start := time.Now()
	prepared, err := os.ReadFile(h.preparedPath(w.key))
	if err == nil {
		mod, err = h.runtime.CompileModule(ctx, prepared)
	}
	h.mu.Lock()
	w.mod, w.err, w.done = mod, err, true
	drop := w.abandoned
	h.mu.Unlock()
	close(w.ready)
	if err != nil {
		h.log.Debug("compiling a module of the last start ahead failed; its load compiles it", "key", hex.EncodeToString(w.key[:8]), "err", firstLine(err.Error()))
	} else {
		h.log.Debug("compiled a module of the last start ahead", "key", hex.EncodeToString(w.key[:8]), "took", time.Since(start).Round(time.Microsecond).String())
	}
	if drop && mod != nil {
		_ = mod.Close(context.Background())
	}
}

// takeWarm hands the warm compile under key to a load, if there is one.
// h.mu must be held.
func (h *Host) takeWarm(key [sha256.Size]byte) *warmModule {
	w := h.warm[key]
	if w != nil {
		delete(h.warm, key)
	}
	return w
}

// endWarm drops the warm compiles no load took: those still running are
// cancelled and close what they compiled themselves.
func (h *Host) endWarm() {
	h.mu.Lock()
	var unused []wazero.CompiledModule
	for k, w := range h.warm {
		delete(h.warm, k)
		h.log.Debug("a module compiled ahead from the last start's record is not used", "key", hex.EncodeToString(k[:8]), "compiled", w.done && w.err == nil)
		w.abandoned = true
		w.cancel()
		if w.done && w.mod != nil {
			unused = append(unused, w.mod)
		}
	}
	h.warmEnded = true
	h.mu.Unlock()
	for _, m := range unused {
		_ = m.Close(context.Background())
	}
}

// FinishWarmStart ends the host's start (Options.WarmStart): the
// modules the loads so far compiled (or shared), at most a few, are
// recorded in the cache directory for the next start of the same name,
// and the background compiles no load took are dropped. Later loads are
// not recorded. It does nothing without WarmStart and a cache directory,
// and only the first call counts.
func (h *Host) FinishWarmStart() {
	h.mu.Lock()
	ended := h.warmEnded
	keys := slices.Clone(h.startKeys)
	h.mu.Unlock()
	if h.warmRecord == "" || ended {
		return
	}
	h.endWarm()
	if len(keys) == 0 {
		return
	}
	if slices.Equal(keys, h.warmKeys) {
		// Unchanged: only marked as used, for pruneWarmRecords.
		now := time.Now()
		_ = os.Chtimes(h.warmRecord, now, now)
		return
	}
	var b strings.Builder
	b.WriteString(warmRecordHeader + "\n")
	for _, k := range keys {
		b.WriteString(hex.EncodeToString(k[:]) + "\n")
	}
	_, statErr := os.Stat(h.warmRecord)
	// Atomic: another process starting from the same directory reads
	// this record or the previous one whole.
	if err := writeAtomic(h.warmRecord, []byte(b.String())); err != nil {
		h.log.Debug("not recording the start's modules", "path", h.warmRecord, "err", err)
		return
	}
	if os.IsNotExist(statErr) {
		// A new name (a config not started from this directory before):
		// the records of names not started for a while go.
		pruneWarmRecords(filepath.Dir(h.warmRecord), time.Now().Add(-warmRecordMaxAge))
	}
}

// pruneWarmRecords removes the records in dir last written before
// cutoff (and temporary files a crash left).
func pruneWarmRecords(dir string, cutoff time.Time) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if info, err := e.Info(); err == nil && !info.IsDir() && info.ModTime().Before(cutoff) {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}
