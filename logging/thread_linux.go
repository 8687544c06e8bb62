package logging

import "syscall"

// threadID is the OS thread writing the line, as spdlog's %t.
func threadID() int { return syscall.Gettid() }
