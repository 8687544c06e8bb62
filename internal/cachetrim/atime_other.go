//go:build !linux

package cachetrim

import (
	"io/fs"
	"time"
)

// accessTime is not read elsewhere: the modification time alone decides.
func accessTime(fs.FileInfo) (time.Time, bool) { return time.Time{}, false }
