package source

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// cache is the on-disk module store, laid out as Istio's agent does:
//
//	<dir>/<sha256(name)>/<checksum>.wasm   the module
//	<dir>/<sha256(name)>/<checksum>.sha256 the module's own digest
//	<dir>/<sha256(name)>/ref-<tag>         the checksum a tag last had
//
// name is the URL without tag or digest for oci://, the whole URL for
// http(s); checksum is Module.Digest. The ref files are what lets a
// restart with the registry down start from the cache for an
// IfNotPresent tag; Istio keeps that in memory only.
type cache struct {
	dir string
}

func openCache(dir string) (*cache, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("module cache %s: %w", dir, err)
	}
	return &cache{dir: dir}, nil
}

func (c *cache) folder(name string) string {
	return filepath.Join(c.dir, sha256Hex([]byte(name)))
}

// get returns the cached module for (name, checksum), verified against
// its recorded digest; a missing or damaged entry is a miss.
func (c *cache) get(name, checksum string) ([]byte, string, bool) {
	if c == nil || checksum == "" {
		return nil, "", false
	}
	path := filepath.Join(c.folder(name), checksum+".wasm")
	code, err := os.ReadFile(path)
	if err != nil {
		return nil, "", false
	}
	sum, err := os.ReadFile(filepath.Join(c.folder(name), checksum+".sha256"))
	if err != nil || strings.TrimSpace(string(sum)) != sha256Hex(code) {
		return nil, "", false
	}
	now := time.Now()
	_ = os.Chtimes(path, now, now) // last use, for pruning
	return code, path, true
}

// put stores a verified module and returns its path.
func (c *cache) put(name, checksum string, code []byte) (string, error) {
	if c == nil {
		return "", nil
	}
	dir := c.folder(name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, checksum+".wasm")
	if err := writeAtomic(path, code); err != nil {
		return "", err
	}
	if err := writeAtomic(filepath.Join(dir, checksum+".sha256"), []byte(sha256Hex(code)+"\n")); err != nil {
		return "", err
	}
	return path, nil
}

// ref returns the checksum recorded for a tag (or "url"), or "".
func (c *cache) ref(name, tag string) string {
	if c == nil {
		return ""
	}
	b, err := os.ReadFile(filepath.Join(c.folder(name), "ref-"+tag))
	if err != nil {
		return ""
	}
	s := strings.TrimSpace(string(b))
	if !isHexDigest(s) {
		return ""
	}
	return s
}

func (c *cache) setRef(name, tag, checksum string) error {
	if c == nil {
		return nil
	}
	dir := c.folder(name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, "ref-"+tag), []byte(checksum+"\n"))
}

// Prune removes cached modules not used for maxAge (Istio purges after
// 24h) and returns how many it removed.
func (f *Fetcher) Prune(maxAge time.Duration) (int, error) {
	if f.cache == nil {
		return 0, nil
	}
	modules, err := filepath.Glob(filepath.Join(f.cache.dir, "*", "*.wasm"))
	if err != nil {
		return 0, err
	}
	removed := 0
	var errs []error
	for _, m := range modules {
		fi, err := os.Stat(m)
		if err != nil || time.Since(fi.ModTime()) < maxAge {
			continue
		}
		if err := os.Remove(m); err != nil {
			errs = append(errs, err)
			continue
		}
		_ = os.Remove(strings.TrimSuffix(m, ".wasm") + ".sha256")
		removed++
	}
	return removed, errors.Join(errs...)
}

// writeAtomic writes through a temporary file and a rename, so readers
// never see half a module.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}
