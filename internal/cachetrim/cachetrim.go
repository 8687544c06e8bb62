// Package cachetrim keeps wasmproxy's on-disk caches bounded: the
// compiled-module cache wazero writes under <cache>/wazero-<version>-…/
// (one file per compiled module, never removed by wazero), the modules
// the wasm host rewrote for its limits under <cache>/prepared/ (one file
// each, never removed by the host) and the plugin
// builds of wasmtest under <cache>/wasmtest/ (one folder per plugin
// folder). Every rebuild of a plugin adds a compiled module, so without
// trimming the directory only grows.
//
// Trimming works like Go's build cache trimming: at most once per
// Interval (recorded in <cache>/trim.txt, so several processes sharing
// the directory trim once between them), entries not used for MaxAge are
// removed, then the least recently used until the total is within
// MaxBytes. An entry's last use is the later of its modification and
// access times: wazero only reads a cached module, and Linux's default
// relatime mount option updates the access time of a file read more than
// a day after its last access, which is the resolution eviction needs.
// wasmtest's builds go only by age. Entries younger than a minute are
// never removed (another process may
// be writing or about to read them); a removed entry that another process
// was about to read is a cache miss there, not an error.
package cachetrim

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Defaults: a cap that holds some 40 Go-built plugins' compiled code,
// Go's build-cache age, and at most one trim per hour.
const (
	DefaultMaxBytes = 512 << 20
	DefaultMaxAge   = 5 * 24 * time.Hour
	DefaultInterval = time.Hour
	// minAge protects entries being written or just written.
	minAge = time.Minute
	// stampFile records the last trim.
	stampFile = "trim.txt"
)

// Options bound a cache directory. Zero fields take the defaults; a
// negative MaxBytes or MaxAge turns that bound off.
type Options struct {
	MaxBytes int64
	MaxAge   time.Duration
	// Interval is the least time between two trims of one directory
	// (negative: trim on every call).
	Interval time.Duration
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
}

// Result says what a trim did.
type Result struct {
	// Skipped: the directory was trimmed less than Interval ago.
	Skipped bool
	// Entries and Bytes were in the cache before; Removed and Freed are
	// what was taken out.
	Entries, Removed int
	Bytes, Freed     int64
}

// entry is one removable unit: a compiled module's file, or a wasmtest
// plugin folder.
type entry struct {
	path    string
	size    int64
	lastUse time.Time
	// ageOnly entries are removed only when stale: a wasmtest build is
	// read by its test process long after it was built, and a test must
	// not lose it to another process's size trim.
	ageOnly bool
}

// Trim bounds the cache directory root (the directory given to
// wasmproxy's --cache-dir). A missing root is an empty cache.
func Trim(root string, o Options) (Result, error) {
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MaxAge == 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.Interval == 0 {
		o.Interval = DefaultInterval
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	t := now()
	var res Result
	if o.Interval > 0 {
		if last, ok := readStamp(filepath.Join(root, stampFile)); ok && t.Sub(last) < o.Interval && !last.After(t) {
			res.Skipped = true
			return res, nil
		}
	}
	entries, err := scan(root)
	if err != nil {
		return res, err
	}
	res.Entries = len(entries)
	for _, e := range entries {
		res.Bytes += e.size
	}
	// Least recently used first.
	sort.Slice(entries, func(i, j int) bool { return entries[i].lastUse.Before(entries[j].lastUse) })
	total := res.Bytes
	var firstErr error
	for _, e := range entries {
		age := t.Sub(e.lastUse)
		if age < minAge {
			break // the rest are younger still
		}
		stale := o.MaxAge > 0 && age > o.MaxAge
		over := o.MaxBytes > 0 && total > o.MaxBytes && !e.ageOnly
		if !stale && !over {
			continue
		}
		if err := os.RemoveAll(e.path); err != nil && !os.IsNotExist(err) {
			if firstErr == nil {
				firstErr = fmt.Errorf("cachetrim: %w", err)
			}
			continue
		}
		total -= e.size
		res.Removed++
		res.Freed += e.size
	}
	if o.Interval > 0 {
		if err := writeStamp(filepath.Join(root, stampFile), t); err != nil && firstErr == nil && !os.IsNotExist(err) {
			firstErr = fmt.Errorf("cachetrim: %w", err)
		}
	}
	return res, firstErr
}

// scan lists the removable entries under root.
func scan(root string) ([]entry, error) {
	children, err := os.ReadDir(root)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cachetrim: %w", err)
	}
	var out []entry
	for _, c := range children {
		if !c.IsDir() {
			continue
		}
		dir := filepath.Join(root, c.Name())
		switch {
		case strings.HasPrefix(c.Name(), "wazero-"), c.Name() == "prepared":
			// One compiled module (wazero) or rewritten module (the
			// wasm package's prepared/) per file.
			files, err := os.ReadDir(dir)
			if err != nil {
				continue
			}
			for _, f := range files {
				if f.IsDir() {
					continue
				}
				if e, ok := fileEntry(filepath.Join(dir, f.Name())); ok {
					out = append(out, e)
				}
			}
		case c.Name() == "wasmtest":
			// One plugin's builds per folder.
			dirs, err := os.ReadDir(dir)
			if err != nil {
				continue
			}
			for _, d := range dirs {
				if d.IsDir() {
					e := dirEntry(filepath.Join(dir, d.Name()))
					e.ageOnly = true
					out = append(out, e)
				}
			}
		}
	}
	return out, nil
}

func fileEntry(path string) (entry, bool) {
	info, err := os.Stat(path)
	if err != nil {
		return entry{}, false
	}
	return entry{path: path, size: info.Size(), lastUse: lastUse(info)}, true
}

// dirEntry sums a folder; its last use is its newest file's (or the
// folder's own time when empty).
func dirEntry(path string) entry {
	e := entry{path: path}
	if info, err := os.Stat(path); err == nil {
		e.lastUse = info.ModTime()
	}
	_ = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		e.size += info.Size()
		if u := lastUse(info); u.After(e.lastUse) {
			e.lastUse = u
		}
		return nil
	})
	return e
}

// lastUse is the later of a file's modification and access times.
func lastUse(info fs.FileInfo) time.Time {
	t := info.ModTime()
	if a, ok := accessTime(info); ok && a.After(t) {
		t = a
	}
	return t
}

// Touch marks path (a file or a wasmtest plugin folder) as used now, for
// users that know what they used.
func Touch(path string) {
	now := time.Now()
	_ = os.Chtimes(path, now, now)
}

func readStamp(path string) (time.Time, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return time.Time{}, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(n, 0), true
}

// writeStamp records a trim; the rename makes it atomic for readers in
// other processes.
func writeStamp(path string, t time.Time) error {
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(t.Unix(), 10)+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
