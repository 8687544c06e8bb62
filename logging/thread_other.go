//go:build !linux

package logging

import "os"

// threadID has no portable OS thread id outside Linux: the process id.
func threadID() int { return os.Getpid() }
