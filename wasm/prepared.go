package wasm

import (
	"encoding/hex"
	"os"
	"path/filepath"
)

// preparedDir is where, under the cache directory, the host keeps the
// rewritten modules (prepare's output), one file per module and limits,
// so that a start with a warm cache skips the rewrite as wazero's own
// cache skips the compiler. internal/cachetrim bounds it with the rest.
const preparedDir = "prepared"

// preparedModule returns prepare(code, l), read from the cache directory
// when a previous run (or load) wrote it there under key, the digest of
// the code and the limits; cached reports that. A missing, unreadable or
// unwritable cache only costs the rewrite. The file is written to a
// temporary name and renamed, so a reader in another process sees it
// whole or not at all.
func (h *Host) preparedModule(code []byte, key [32]byte, l limits) (prepared []byte, cached bool, err error) {
	var path string
	if h.cacheDir != "" {
		path = h.preparedPath(key)
		if b, err := os.ReadFile(path); err == nil && len(b) >= 8 {
			h.prepareHits.Add(1)
			return b, true, nil
		}
	}
	h.prepareRuns.Add(1)
	prepared, _, err = prepare(code, l)
	if err != nil || path == "" {
		return prepared, false, err
	}
	if err := writeAtomic(path, prepared); err != nil {
		h.log.Debug("not caching the rewritten module", "path", path, "err", err)
	}
	return prepared, false, nil
}

// prepareVersion names the rewrite prepare does; a change to what it
// writes (here: data segments coalesced) changes it, so a rewrite cached
// by an older build is not taken for the new one (internal/cachetrim
// ages the old files out).
const prepareVersion = "2"

// preparedPath is where preparedModule keeps the rewrite under key.
func (h *Host) preparedPath(key [32]byte) string {
	return filepath.Join(h.cacheDir, preparedDir, hex.EncodeToString(key[:])+".v"+prepareVersion+".wasm")
}

// dropPrepared removes the cached rewrite under key, if any.
func (h *Host) dropPrepared(key [32]byte) {
	if h.cacheDir != "" {
		_ = os.Remove(h.preparedPath(key))
	}
}

func writeAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return err
	}
	return nil
}
