// Package filestamp tells whether watched files have changed, for the
// reload poller: it compares sizes and modification times first and
// reads a file to hash it only when those differ or are too recent to
// be trusted, so polling a large plugin every second costs a stat.
package filestamp

import (
	"os"
	"time"

	"github.com/wasmproxy/wasmproxy/source"
)

// racyWindow is how recent a modification time may be and still hide a
// rewrite: a file written again within the file system's timestamp
// resolution (up to 2 s on some) keeps its time, so one modified that
// close to the last look is hashed again (git's "racily clean" rule).
const racyWindow = 2 * time.Second

// Stamp is what a look at one file saw.
type Stamp struct {
	Size    int64 // -1: missing or unreadable
	ModTime time.Time
	// Sum is the content's digest (source.Digest); "" for a directory.
	Sum   string
	taken time.Time
}

// Set is a stamp per file name.
type Set map[string]Stamp

// Take stamps files. A file whose size and modification time are as in
// prev, and whose time was not within racyWindow of prev's look, keeps
// prev's digest without being read.
func Take(files []string, prev Set) Set {
	now := time.Now()
	out := make(Set, len(files))
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			out[f] = Stamp{Size: -1, taken: now}
			continue
		}
		st := Stamp{Size: fi.Size(), ModTime: fi.ModTime(), taken: now}
		if old, ok := prev[f]; ok && old.Size == st.Size && old.ModTime.Equal(st.ModTime) && old.Size >= 0 &&
			st.ModTime.Before(old.taken.Add(-racyWindow)) {
			st.Sum = old.Sum
		} else if !fi.IsDir() {
			if b, err := os.ReadFile(f); err == nil {
				st.Sum = source.Digest(b)
			}
		}
		out[f] = st
	}
	return out
}

// Same reports whether two sets saw the same files with the same sizes
// and contents. A file touched but not changed is the same.
func Same(a, b Set) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || v.Size != w.Size || v.Sum != w.Sum {
			return false
		}
	}
	return true
}
